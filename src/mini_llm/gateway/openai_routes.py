"""The OpenAI API: `/v1/chat/completions`."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web

from ..errors import GatewayError
from ..routing.router import Router, Target
from ..schema.openai import validate_chat_request
from ..sse import DONE
from .body import read_json_object
from .proxy import Proxy
from .responses import Dialect, error_response, internal_error
from .streaming import write_stream

__all__ = ["OpenAIRoutes"]

log = logging.getLogger("mini_llm.gateway")

_encode = msgspec.json.encode
_JSON = "application/json"


class OpenAIRoutes:
    def __init__(self, router: Router, proxy: Proxy, max_body_bytes: int) -> None:
        self._router = router
        self._proxy = proxy
        self._limit = max_body_bytes

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await read_json_object(request, self._limit)
            chat = validate_chat_request(body)
            target = self._router.resolve(chat.model)
            stream = bool(chat.stream)
            if target.provider.wire.name == "openai":
                return await self._pass_through(request, target, body, stream)
            return await self._translated(request, target, body, stream)
        except GatewayError as e:
            return error_response(e, Dialect.OPENAI)
        except Exception:
            log.exception("unexpected failure in /v1/chat/completions")
            return error_response(internal_error(), Dialect.OPENAI)

    async def _pass_through(
        self, request: web.Request, target: Target, body: dict[str, Any], stream: bool
    ) -> web.StreamResponse:
        proxy = self._proxy
        provider = target.provider
        response = await proxy.open(target, body, native=True, stream=stream)
        content_type = response.headers.get("Content-Type", _JSON)
        if stream and content_type.startswith("text/event-stream"):
            return await write_stream(request, proxy.relay(response, provider), Dialect.OPENAI)
        data = await proxy.read(response, provider)
        return web.Response(body=data, headers={"Content-Type": content_type})

    async def _translated(
        self, request: web.Request, target: Target, body: dict[str, Any], stream: bool
    ) -> web.StreamResponse:
        if not stream:
            answer = await self._proxy.complete(target, body)
            answer["created"] = answer.get("created") or int(time.time())
            return web.Response(body=_encode(answer), content_type=_JSON)
        return await write_stream(request, self._sse(target, body), Dialect.OPENAI)

    async def _sse(self, target: Target, body: dict[str, Any]) -> AsyncIterator[bytes]:
        # translators always end with a usage chunk (no choices); only sent when asked for
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        created = int(time.time())
        async for chunk in self._proxy.chunks(target, body):
            if not chunk.get("created"):
                chunk["created"] = created
            if "usage" in chunk and not include_usage:
                if not chunk.get("choices"):
                    continue
                del chunk["usage"]
            yield b"data: " + _encode(chunk) + b"\n\n"
        yield DONE
