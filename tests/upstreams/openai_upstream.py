"""A mock OpenAI-compatible upstream speaking the real wire format (JSON, SSE, errors).

By default it answers every chat completion by echoing the last user message, as JSON or as
an SSE stream (with a usage chunk when `stream_options.include_usage` asks for one). Tests
script other answers with `push(reply, ...)`: each request takes the next scripted reply.
A model named `agent-reader...` is a scripted coding agent (`agent_script`). Every request is
recorded (path, headers, decoded body).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .agent_script import is_agent, openai_agent
from .scenario import openai_reply_body, openai_reply_chunks

Reply = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def completion_json(body: dict[str, Any], text: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-upstream1",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "unknown"),
        "system_fingerprint": "fp_mock",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        **extra,
    }


def chunk_json(body: dict[str, Any], delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-upstream1",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body.get("model", "unknown"),
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def sse(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def stream_events(body: dict[str, Any], pieces: list[str]) -> list[bytes]:
    events = [sse(chunk_json(body, {"role": "assistant", "content": ""}, None))]
    events += [sse(chunk_json(body, {"content": p}, None)) for p in pieces]
    events.append(sse(chunk_json(body, {}, "stop")))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = chunk_json(body, {}, None)
        usage["choices"] = []
        usage["usage"] = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        events.append(sse(usage))
    events.append(b"data: [DONE]\n\n")
    return events


async def send_stream(
    request: web.Request, events: list[bytes], delay: float = 0.0
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(event)
        if delay:
            await asyncio.sleep(delay)
    await response.write_eof()
    return response


# Scripted replies -------------------------------------------------------------------------


def echo() -> Reply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        text = last_user_text(body)
        if body.get("stream"):
            pieces = [text[i : i + 4] for i in range(0, len(text), 4)] or [""]
            return await send_stream(request, stream_events(body, pieces))
        return web.json_response(completion_json(body, text))

    return reply


def stream(pieces: list[str], delay: float = 0.0) -> Reply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return await send_stream(request, stream_events(body, pieces), delay)

    return reply


def error(
    status: int,
    message: str = "upstream error",
    type_: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Reply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        payload = {"error": {"message": message, "type": type_, "param": None, "code": code}}
        payload.update(extra or {})
        return web.json_response(payload, status=status, headers=headers)

    return reply


def raw(status: int, data: bytes, content_type: str = "text/plain") -> Reply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.Response(status=status, body=data, headers={"Content-Type": content_type})

    return reply


def gzipped(text: str) -> Reply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        data = gzip.compress(json.dumps(completion_json(body, text)).encode())
        return web.Response(
            body=data, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )

    return reply


def drop() -> Reply:
    """Close the connection without answering."""

    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError

    return reply


def stall(seconds: float, then: Reply | None = None) -> Reply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return await (then or echo())(request, body)

    return reply


def reset_after_headers() -> Reply:
    """Send a stream's headers, then abort the connection before its first event."""

    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError

    return reply


def reset_mid_stream(pieces: list[str]) -> Reply:
    """Send a few chunks, then abort the connection."""

    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in stream_events(body, pieces)[: 1 + len(pieces)]:
            await response.write(event)
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        raise asyncio.CancelledError

    return reply


def by_key(replies: dict[str, Reply], default: Reply | None = None) -> Reply:
    """Answer by the key in the Authorization header (keys not listed get `default`)."""

    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        key = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return await replies.get(key, default or echo())(request, body)

    return reply


def stall_mid_stream(pieces: list[str], after: int, seconds: float) -> Reply:
    """Send `after` content chunks, go silent for `seconds`, then finish the stream."""

    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        events = stream_events(body, pieces)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, event in enumerate(events):
            if i == after + 1:
                await asyncio.sleep(seconds)
            await response.write(event)
        await response.write_eof()
        return response

    return reply


def truncated_stream(pieces: list[str]) -> Reply:
    """A stream that ends cleanly at the HTTP level but without its finish chunk or [DONE]."""

    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        events = stream_events(body, pieces)[: 1 + len(pieces)]
        return await send_stream(request, events)

    return reply


def agent() -> Reply:
    """The scripted coding agent (`agent_script`), as JSON or as a stream."""

    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        answer = openai_agent(body)
        if body.get("stream"):
            events = [sse(c) for c in openai_reply_chunks(body, answer)] + [b"data: [DONE]\n\n"]
            return await send_stream(request, events)
        return web.json_response(openai_reply_body(body, answer))

    return reply


def malformed_json() -> Reply:
    return raw(200, b'{"id": "chatcmpl-1", "choices": [', "application/json")


def embeddings() -> Reply:
    """OpenAI's `/embeddings`: the mock provider's vectors (same text, same vector), token
    arrays taken, `encoding_format: base64` honoured."""
    from mini_llm.providers.mock_models import mock_embeddings

    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        answer = mock_embeddings({**body, "model": "embed"})
        if not isinstance(answer, dict):
            return web.json_response(answer.body, status=answer.status)
        return web.json_response({**answer, "model": body.get("model")})

    return reply


class OpenAIUpstream:
    def __init__(self) -> None:
        from .responses_upstream import ResponsesAPI

        self.requests: list[Recorded] = []
        self.active = 0  # handlers running right now
        self._script: deque[Reply] = deque()
        self.default: Reply = echo()
        self.responses = ResponsesAPI()
        """`/v1/responses`, as OpenAI serves it (the script answers first)."""

    def push(self, *replies: Reply) -> None:
        self._script.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self._script.clear()
        self.default = echo()
        self.responses.reset()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._chat)
        app.router.add_post("/v1/embeddings", self._chat)
        app.router.add_get("/v1/responses/{id}", self.responses.retrieve)
        app.router.add_delete("/v1/responses/{id}", self.responses.retrieve)
        app.router.add_get("/v1/responses/{id}/input_items", self.responses.input_items)
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        raw_body = await request.read()
        try:
            body = json.loads(raw_body)
        except ValueError:
            body = {"_raw": raw_body.decode("utf-8", "replace")}
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), body))
        if self._script:
            reply = self._script.popleft()
        elif request.path.endswith("/responses"):
            reply = self.responses.create
        elif request.path.endswith("/embeddings"):
            reply = embeddings()
        elif is_agent(str(body.get("model", ""))):
            reply = agent()
        else:
            reply = self.default
        self.active += 1
        try:
            return await reply(request, body)
        finally:
            self.active -= 1
