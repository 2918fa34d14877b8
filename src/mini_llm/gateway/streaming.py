"""Writing a stream to the client: nothing is sent before the first event is in hand.

So a failure before the first byte still becomes a proper error response (and could be
retried); a failure after it ends the stream with one error event in the client's dialect.
A client that goes away stops the stream and closes the upstream answer at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from aiohttp import web

from ..errors import GatewayError
from ..providers.base import WireFormat
from ..sse import SSEParser
from .responses import Dialect, error_body, internal_error

__all__ = ["SSE_HEADERS", "canonical_chunks", "write_stream"]

log = logging.getLogger("mini_llm.gateway")

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def error_event(error: GatewayError, dialect: Dialect) -> bytes:
    prefix = b"event: error\n" if dialect is Dialect.ANTHROPIC else b""
    return prefix + b"data: " + error_body(error, dialect) + b"\n\n"


async def write_stream(
    request: web.Request,
    events: AsyncIterator[bytes],
    dialect: Dialect,
    *,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Stream `events` to the client; a `GatewayError` before the first one propagates."""
    iterator = aiter(events)
    try:
        first = await anext(iterator, b"")
    except BaseException:
        await _close(iterator)
        raise
    out = web.StreamResponse(headers={**SSE_HEADERS, **headers} if headers else SSE_HEADERS)
    try:
        await out.prepare(request)
        if first:
            await out.write(first)
        async for chunk in iterator:
            await out.write(chunk)
    except GatewayError as e:
        try:
            await out.write(error_event(e, dialect))
        except ConnectionError:
            return out
    except ConnectionError:
        log.info("client went away during a stream")
        return out
    except Exception:
        # the headers are sent: a second response would corrupt the stream, so end it cleanly
        log.exception("unexpected failure in the middle of a stream")
        try:
            await out.write(error_event(internal_error(), dialect))
        except ConnectionError:
            return out
    finally:
        await _close(iterator)
    with contextlib.suppress(ConnectionError):
        await out.write_eof()
    return out


async def _close(iterator: AsyncIterator[bytes]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def canonical_chunks(
    stream: AsyncIterator[bytes], wire: WireFormat
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """Canonical chunks from an upstream stream's bytes, through the one SSE parser: one
    batch per upstream read, so the client gets one write for what came in one read."""
    translator = wire.stream_translator()
    parser = SSEParser()
    batch: list[dict[str, Any]] = []
    try:
        async for data in stream:
            try:
                for event in parser.feed(data):
                    batch += translator.feed(event)
            except GatewayError:
                if batch:  # what came before the error still reaches the client
                    yield batch
                raise
            if batch:
                yield batch
                batch = []
        for event in parser.flush():
            batch += translator.feed(event)
        batch += translator.finish()
        if batch:
            yield batch
    finally:
        await _close(stream)
