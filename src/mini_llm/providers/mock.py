"""`mock`: an offline provider that speaks the OpenAI wire format in process.

It lets a first request succeed with no key and no network, and gives tests a provider that
behaves by model name: `mock/echo`, `mock/tools`, `mock/json`, `mock/slow`, `mock/embed`
(embeddings, at `/embeddings`) and `mock/error-<status>` (what each answers is in
mock_models.py, as pure functions). This module only frames their answers as an HTTP
response and waits the delays they ask for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from ..resilience import Timeouts
from .base import UpstreamRequest, UpstreamResponse
from .mock_models import (
    MOCK_MODELS,
    MockFailure,
    count_tokens,
    mock_completion,
    mock_embeddings,
    mock_failure,
    mock_stream,
)

__all__ = ["MOCK_MODELS", "MockTransport", "count_tokens"]

_encode = msgspec.json.encode
_decode = msgspec.json.decode

_Steps = list[tuple[float, bytes]]


class _Content:
    __slots__ = ("_steps",)

    def __init__(self, steps: _Steps) -> None:
        self._steps = steps

    async def iter_any(self) -> AsyncIterator[bytes]:
        for delay, chunk in self._steps:
            if delay > 0:
                await asyncio.sleep(delay)
            yield chunk


class MockResponse:
    __slots__ = ("_steps", "headers", "status")

    def __init__(self, status: int, content_type: str, steps: _Steps) -> None:
        self.status = status
        self.headers: Mapping[str, str] = {"Content-Type": content_type}
        self._steps = steps

    @property
    def content(self) -> _Content:
        return _Content(self._steps)

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.content.iter_any()])

    def release(self) -> None:
        return None

    def close(self) -> None:
        return None


class MockTransport:
    """Answers `UpstreamRequest`s for the `mock` provider without any network I/O."""

    models = MOCK_MODELS
    """The models this transport answers, for `GET /v1/models`."""

    async def send(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> UpstreamResponse:
        body: dict[str, Any] = _decode(request.body)
        if request.url.endswith("/embeddings"):
            embedded = mock_embeddings(body)
            if isinstance(embedded, MockFailure):
                return MockResponse(
                    embedded.status, "application/json", [(0.0, _encode(embedded.body))]
                )
            return MockResponse(200, "application/json", [(0.0, _encode(embedded))])
        failure = mock_failure(body)
        if failure is not None:
            return MockResponse(failure.status, "application/json", [(0.0, _encode(failure.body))])
        ident = f"chatcmpl-mock{time.monotonic_ns():x}"
        created = int(time.time())
        if body.get("stream"):
            steps = [
                (delay, b"data: " + _encode(chunk) + b"\n\n")
                for delay, chunk in mock_stream(body, ident, created)
            ]
            steps.append((0.0, b"data: [DONE]\n\n"))
            return MockResponse(200, "text/event-stream", steps)
        delay, answer = mock_completion(body, ident, created)
        if delay > 0:
            await asyncio.sleep(delay)  # a slow upstream: the answer's headers come late too
        return MockResponse(200, "application/json", [(0.0, _encode(answer))])

    async def close(self) -> None:
        return None
