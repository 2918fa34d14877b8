"""The OpenAI API: `/v1/chat/completions`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec
from aiohttp import web

from ..errors import GatewayError
from ..routing.router import Router
from ..schema.openai import validate_chat_request
from ..sse import DONE
from .body import BodyReader
from .dispatch import Answer, ChatCall, Dispatcher
from .responses import Dialect, error_response, internal_error, request_id
from .streaming import canonical_chunks, write_stream

__all__ = ["OpenAIRoutes"]

log = logging.getLogger("mini_llm.gateway")

_encode = msgspec.json.encode
_JSON = "application/json"


class OpenAIRoutes:
    def __init__(self, router: Router, dispatcher: Dispatcher, body: BodyReader) -> None:
        self._router = router
        self._dispatcher = dispatcher
        self._body = body

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        rid = request_id(request)
        try:
            body = await self._body.read_object(request)
            chat = validate_chat_request(body)
            route = self._router.route(chat.model)
            stream = bool(chat.stream)
            call = ChatCall(body, native_wire="openai", stream=stream)
            answer = await self._dispatcher.run(route, call)
            headers = answer.headers()
            headers["x-request-id"] = rid
            if answer.stream is None:
                return self._whole(answer, headers)
            events = answer.stream if answer.native else self._sse(answer, body)
            return await write_stream(request, events, Dialect.OPENAI, headers=headers)
        except GatewayError as e:
            return error_response(e, Dialect.OPENAI, rid)
        except Exception:
            log.exception("unexpected failure in /v1/chat/completions")
            return error_response(internal_error(), Dialect.OPENAI, rid)

    def _whole(self, answer: Answer, headers: dict[str, str]) -> web.Response:
        data = answer.data or b""
        completion = answer.completion
        if completion is not None:
            completion["created"] = completion.get("created") or int(time.time())
            data = _encode(completion)
        headers["Content-Type"] = _JSON
        return web.Response(body=data, headers=headers)

    async def _sse(self, answer: Answer, body: dict[str, Any]) -> AsyncIterator[bytes]:
        assert answer.stream is not None
        # translators always end with a usage chunk (no choices); only sent when asked for
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        created = int(time.time())
        batches = canonical_chunks(answer.stream, answer.target.provider.wire)
        async with aclosing(batches):
            async for batch in batches:
                out = []
                for chunk in batch:
                    if not chunk.get("created"):
                        chunk["created"] = created
                    if "usage" in chunk and not include_usage:
                        if not chunk.get("choices"):
                            continue
                        del chunk["usage"]
                    out.append(b"data: " + _encode(chunk) + b"\n\n")
                if out:
                    yield b"".join(out)
        yield DONE
