"""Writing a stream to the client: nothing is sent before the first event is in hand.

So a failure before the first byte still becomes a proper error response (and could be
retried); a failure after it ends the stream with one error event in the client's dialect.
A client that goes away stops the stream and closes the upstream answer at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from aiohttp import web

from ..dialects.base import LastEvents
from ..errors import GatewayError
from .responses import internal_error

__all__ = ["SSE_HEADERS", "write_stream"]

log = logging.getLogger("mini_llm.gateway")

SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class EventErrors(Protocol):
    def error_event(self, error: GatewayError) -> bytes: ...


def _same(data: bytes) -> bytes:
    return data


async def write_stream(
    request: web.Request,
    events: AsyncIterator[bytes],
    dialect: EventErrors,
    *,
    headers: dict[str, str] | None = None,
    scrub: Callable[[bytes], bytes] = _same,
    stamp: Callable[[dict[str, str]], None] | None = None,
) -> web.StreamResponse:
    """Stream `events` to the client, each through `scrub` (the redactor); a `GatewayError`
    before the first one propagates. `stamp` may add to the headers once the first event is
    in hand (the time to first byte is known then)."""
    iterator = aiter(events)
    try:
        first = await anext(iterator, b"")
    except BaseException:
        await _close(iterator)
        raise
    if stamp is not None:
        headers = {} if headers is None else headers
        stamp(headers)
    out = web.StreamResponse(headers={**SSE_HEADERS, **headers} if headers else SSE_HEADERS)
    last = b""
    try:
        await out.prepare(request)
        # a stream's last events (`LastEvents`) go with the end of the answer, in one write;
        # the iterator is still run to its end (a dialect's work after its last event)
        if type(first) is LastEvents:
            last = scrub(first)
        elif first:
            await out.write(scrub(first))
        async for chunk in iterator:
            if last:  # not the last after all
                await out.write(last)
                last = b""
            if type(chunk) is LastEvents:
                last = scrub(chunk)
            else:
                await out.write(scrub(chunk))
    except GatewayError as e:
        if last:  # failed after its last events: the answer is whole, and goes out so
            log.warning("a stream failed after its last event: %s", e.message)
        else:
            try:
                await out.write(scrub(dialect.error_event(e)))
            except ConnectionError:
                return out
    except ConnectionError:
        log.info("client went away during a stream")
        return out
    except Exception:
        # the headers are sent: a second response would corrupt the stream, so end it cleanly
        log.exception("unexpected failure in the middle of a stream")
        if not last:
            try:
                await out.write(dialect.error_event(internal_error()))
            except ConnectionError:
                return out
    finally:
        await _close(iterator)
    with contextlib.suppress(ConnectionError):
        await out.write_eof(last)
    return out


async def _close(iterator: AsyncIterator[bytes]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
