"""The Anthropic API: `/v1/messages` and `/v1/messages/count_tokens`, for any provider.

To an Anthropic provider the request passes through (only `model` rewritten; the answer's
bytes, streams included, come back untouched). To any other provider it is translated to
canonical form and the answer back into an Anthropic message or Anthropic stream events.
The client's `x-api-key` or bearer token is accepted and never forwarded: the gateway's own
keys are used upstream. Errors have Anthropic's shape.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import msgspec
from aiohttp import web

from ..errors import GatewayError
from ..providers.base import Provider, UpstreamRequest
from ..providers.mock import count_tokens
from ..routing.keys import KeyEntry
from ..routing.router import Group, Route, Router, Target
from ..schema.anthropic import (
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    ToolResultBlock,
    validate_messages_envelope,
    validate_messages_request,
)
from ..translate.anthropic_request import to_canonical_request
from ..translate.anthropic_response import AnthropicEventWriter, to_anthropic_message
from .body import BodyReader
from .dispatch import Answer, ChatCall, Dispatcher
from .responses import Dialect, error_response, internal_error, request_id
from .streaming import canonical_chunks, write_stream

__all__ = ["AnthropicRoutes"]

log = logging.getLogger("mini_llm.gateway")

_encode = msgspec.json.encode
_JSON = "application/json"
_ESTIMATE_HEADER = {"x-mini-llm-token-count": "estimate"}
_ANTHROPIC_ONLY = frozenset({"anthropic"})


class AnthropicRoutes:
    def __init__(self, router: Router, dispatcher: Dispatcher, body: BodyReader) -> None:
        self._router = router
        self._dispatcher = dispatcher
        self._body = body

    async def messages(self, request: web.Request) -> web.StreamResponse:
        rid = request_id(request)
        try:
            body = await self._body.read_object(request)
            envelope = validate_messages_envelope(body)
            route = self._router.route(envelope.model)
            # a request that may be translated is checked in full now, so that a bad block is
            # a 400 before anything is sent; one only Anthropic sees is checked by Anthropic
            translates = route.wires != _ANTHROPIC_ONLY
            parsed = validate_messages_request(body) if translates else None
            call = ChatCall(
                body,
                native_wire="anthropic",
                stream=bool(envelope.stream),
                to_canonical=lambda b: to_canonical_request(parsed or validate_messages_request(b)),
                native_headers=_forwarded(request),
            )
            answer = await self._dispatcher.run(route, call)
            headers = answer.headers()
            headers["x-request-id"] = rid
            if answer.stream is None:
                return self._whole(answer, envelope.model, headers)
            events = answer.stream if answer.native else self._events(answer, envelope.model)
            return await write_stream(request, events, Dialect.ANTHROPIC, headers=headers)
        except GatewayError as e:
            return error_response(e, Dialect.ANTHROPIC, rid)
        except Exception:
            log.exception("unexpected failure in /v1/messages")
            return error_response(internal_error(), Dialect.ANTHROPIC, rid)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        rid = request_id(request)
        try:
            body = await self._body.read_object(request)
            envelope = validate_messages_envelope(body, count_only=True)
            target = self._router.route(envelope.model).primary
            if target.provider.wire.name == "anthropic":
                return await self._count_upstream(request, target, body, rid)
            parsed = validate_messages_request(body, count_only=True)
            estimate = {"input_tokens": _estimate(parsed), "estimated": True}
            headers = {**_ESTIMATE_HEADER, "x-request-id": rid}
            return web.Response(body=_encode(estimate), content_type=_JSON, headers=headers)
        except GatewayError as e:
            return error_response(e, Dialect.ANTHROPIC, rid)
        except Exception:
            log.exception("unexpected failure in /v1/messages/count_tokens")
            return error_response(internal_error(), Dialect.ANTHROPIC, rid)

    def _whole(self, answer: Answer, model: str, headers: dict[str, str]) -> web.Response:
        data = answer.data or b""
        if answer.completion is not None:
            data = _encode(to_anthropic_message(answer.completion, model))
        headers["Content-Type"] = _JSON
        return web.Response(body=data, headers=headers)

    async def _events(self, answer: Answer, model: str) -> AsyncIterator[bytes]:
        assert answer.stream is not None
        writer = AnthropicEventWriter(model)
        batches = canonical_chunks(answer.stream, answer.target.provider.wire)
        async with aclosing(batches):
            async for batch in batches:
                events = [event for chunk in batch for event in writer.feed(chunk)]
                if events:
                    yield b"".join(events)
        yield b"".join(writer.finish())

    async def _count_upstream(
        self, request: web.Request, target: Target, body: dict[str, Any], rid: str
    ) -> web.Response:
        """Anthropic counts the tokens itself: through the dispatcher, so keys rotate, cool
        down and are set aside as for any request, and failures are retried."""
        body = {k: v for k, v in body.items() if k in _COUNT_TOKENS_FIELDS}
        route = Route(target.label, (Group((target,), (1.0,), "round-robin"),))
        call = ChatCall(
            body,
            native_wire="anthropic",
            stream=False,
            build=_count_tokens_request,
            native_headers=_forwarded(request),
        )
        answer = await self._dispatcher.run(route, call)
        headers = answer.headers()
        headers["x-request-id"] = rid
        headers["Content-Type"] = _JSON
        return web.Response(body=answer.data or b"", headers=headers)


# What Anthropic's count_tokens endpoint takes; sampling and stream settings are refused there.
_COUNT_TOKENS_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}
)

# Client headers an Anthropic upstream should see: opt-in betas, and the API version the
# client's request is written for (else the gateway's own).
_FORWARDED = ("anthropic-beta", "anthropic-version")


def _forwarded(request: web.Request) -> dict[str, str] | None:
    headers = request.headers
    found = {name: headers[name] for name in _FORWARDED if name in headers}
    return found or None


def _count_tokens_request(
    provider: Provider, body: dict[str, Any], key: KeyEntry | None, stream: bool
) -> UpstreamRequest:
    headers = provider.headers_for(key)
    url = provider.config.base_url + "/messages/count_tokens"
    return UpstreamRequest("POST", url, headers, _encode(body))


# An image or a PDF page costs Anthropic about width × height / 750 tokens: some 1,600 for a
# picture of about 1.2 megapixels. Their base64 text says nothing about that.
_PICTURE_TOKENS = 1600


def _estimate(request: MessagesRequest) -> int:
    """About 4 characters a token over the request's text, tools included, and a flat
    amount per image or document: an estimate."""
    total = 0
    if request.system:
        total += count_tokens(_encode(request.system).decode())
    for message in request.messages:
        total += 4 + _content_tokens(message.content)
    if request.tools:
        total += count_tokens(_encode(request.tools).decode())
    return total


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    total = 0
    for block in content or ():
        if isinstance(block, (ImageBlock, DocumentBlock)):
            total += _PICTURE_TOKENS
        elif isinstance(block, ToolResultBlock):
            total += 4 + _content_tokens(block.content)
        else:
            total += count_tokens(_encode(block).decode())
    return total
