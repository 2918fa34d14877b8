"""`mock`: an offline provider that speaks the OpenAI wire format in process.

It lets a first request succeed with no key and no network, and gives tests a provider that
behaves by model name:

- `mock/echo`: answers with the last user message (streaming and usage supported);
- `mock/error-<status>`: answers that HTTP status with an OpenAI-shaped error body;
- anything else: 404 `model_not_found`, as OpenAI would.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from ..canonical import estimate_tokens as count_tokens
from ..resilience import Timeouts
from .base import UpstreamRequest, UpstreamResponse

__all__ = ["MOCK_MODELS", "MockTransport", "count_tokens"]

MOCK_MODELS = ("echo",)

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


class _Content:
    __slots__ = ("_chunks",)

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class MockResponse:
    __slots__ = ("_chunks", "headers", "status")

    def __init__(self, status: int, content_type: str, chunks: list[bytes]) -> None:
        self.status = status
        self.headers: Mapping[str, str] = {"Content-Type": content_type}
        self._chunks = chunks

    @property
    def content(self) -> _Content:
        return _Content(self._chunks)

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    def release(self) -> None:
        return None

    def close(self) -> None:
        return None


def _error(status: int, message: str, type_: str, code: str | None) -> MockResponse:
    body = _encode({"error": {"message": message, "type": type_, "param": None, "code": code}})
    return MockResponse(status, "application/json", [body])


class MockTransport:
    """Answers `UpstreamRequest`s for the `mock` provider without any I/O."""

    async def send(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> UpstreamResponse:
        body: dict[str, Any] = _decode(request.body)
        model = str(body.get("model", ""))
        if model.startswith("error-") and model[6:].isdigit():
            status = int(model[6:])
            return _error(status, f"mock error {status}", "mock_error", f"mock_{status}")
        if model not in MOCK_MODELS:
            return _error(
                404,
                f"The model `{model}` does not exist in the mock provider "
                f"(it has: {', '.join(MOCK_MODELS)})",
                "invalid_request_error",
                "model_not_found",
            )
        messages = body.get("messages") or []
        text = next(
            (_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        prompt_tokens = sum(count_tokens(_text_of(m.get("content"))) for m in messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": count_tokens(text),
            "total_tokens": prompt_tokens + count_tokens(text),
        }
        ident = f"chatcmpl-mock{time.monotonic_ns():x}"
        created = int(time.time())
        if body.get("stream"):
            return MockResponse(
                200, "text/event-stream", _stream(ident, created, model, text, usage, body)
            )
        answer = {
            "id": ident,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
        return MockResponse(200, "application/json", [_encode(answer)])

    async def close(self) -> None:
        return None


def _stream(
    ident: str, created: int, model: str, text: str, usage: dict[str, int], body: dict[str, Any]
) -> list[bytes]:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
        payload: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            payload["usage"] = None
        return b"data: " + _encode(payload) + b"\n\n"

    pieces = [text[i : i + 8] for i in range(0, len(text), 8)]
    out = [chunk({"role": "assistant", "content": ""}, None)]
    out += [chunk({"content": piece}, None) for piece in pieces]
    out.append(chunk({}, "stop"))
    if include_usage:
        final = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        out.append(b"data: " + _encode(final) + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out
