"""One attempt at one target: build, sign, send, and hand back the answer that began.

The request is built by the target's wire format for the call's operation (pure), signed with
the key's credential (on every attempt, so a retry is signed afresh; a wire whose credential
must first become a short-lived token awaits its `source` for it), and sent through the
provider's transport. A whole answer is read (and, translated, parsed: a malformed answer is a
failure like any other); a stream counts as begun once its first bytes are in hand, and is then
relayed: in pass-through only whole events (the format's framing) are handed on, and a watchdog
bounds the wait for the first event and every silence after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import msgspec

from ..call import Answer, Call
from ..errors import GatewayError, UpstreamError, UpstreamStatusError, UpstreamTimeoutError
from ..providers.base import (
    Framing,
    UpstreamRequest,
    UpstreamResponse,
    native_format,
)
from ..resilience import parse_retry_after
from ..routing.keys import KeyEntry
from ..routing.provider import Provider
from ..routing.router import Target
from ..upstream import upstream_failure

__all__ = ["AttemptHook", "Attempts"]

log = logging.getLogger("mini_llm.dispatch")


class _JSONObject(msgspec.Struct):
    """Decoding into a Struct with no fields checks a whole JSON object, keeping nothing."""


_probe = msgspec.json.Decoder(_JSONObject)


class AttemptHook(Protocol):
    """Told of every upstream attempt (metrics, traces). `started` returns a handle given back
    to `ended`, and headers to add to the upstream request (a trace's `traceparent`)."""

    def started(self, target: Target, call: Call) -> tuple[Any, Mapping[str, str] | None]: ...

    def ended(self, handle: Any, target: Target, error: BaseException | None) -> None: ...


class Attempts:
    """Makes single attempts; errors come back redacted, as `GatewayError`s. With a `hook`,
    each attempt is reported to it; without one, nothing is added to an attempt."""

    def __init__(self, redact: Callable[[str], str], hook: AttemptHook | None = None) -> None:
        self._redact = redact
        self._hook = hook
        if hook is not None:
            self.attempt = self._hooked  # type: ignore[method-assign]

    async def _hooked(self, target: Target, key: KeyEntry | None, call: Call) -> Answer:
        hook = self._hook
        assert hook is not None
        handle, extra = hook.started(target, call)
        try:
            answer = await self.attempt_with(target, key, call, extra)
        except BaseException as e:
            hook.ended(handle, target, e)
            raise
        hook.ended(handle, target, None)
        return answer

    async def attempt(self, target: Target, key: KeyEntry | None, call: Call) -> Answer:
        return await self.attempt_with(target, key, call, None)

    async def attempt_with(
        self,
        target: Target,
        key: KeyEntry | None,
        call: Call,
        extra: Mapping[str, str] | None,
    ) -> Answer:
        provider = target.provider
        wire = target.wire
        endpoint = wire.endpoints[call.operation]
        body, native = call.body_for(native_format(wire, endpoint))
        request = endpoint.request(target.upstream, body, native, call.stream)
        if native and call.forward:
            headers = {**request.headers, **call.forward}
            request = UpstreamRequest(request.method, request.url, headers, request.body)
        if extra:
            headers = {**request.headers, **extra}
            request = UpstreamRequest(
                request.method, request.url, headers, request.body, request.dropped
            )
        credential = key.credential if key is not None else None
        timeouts = target.timeouts
        target.busy.value += 1
        handed_over = False
        started = asyncio.get_running_loop().time()
        sent = time.monotonic()
        try:
            source = wire.source
            if source is not None and credential is not None:
                credential = await source.prepare(credential, provider.transport)
            request = wire.sign(request, credential)
            # aiohttp bounds the wait for the headers (sock_read = first_byte), the connect and
            # the total; the relay's watchdog bounds a stream's first event and its silences.
            response = await provider.transport.send(request, timeouts)
            if response.status >= 400:
                raw = await _read(response)
                raise self.status_error(target, call, response, raw)
            framing = endpoint.framing
            content_type = response.headers.get("Content-Type", "")
            if call.stream and content_type.startswith(framing.content_type):
                stream = self._relay(response, target, call, framing if native else None, started)
                handed_over = True
                first = await anext(stream, b"")
                answer = Answer(target, native, stream=prepend(first, stream), endpoint=endpoint)
                answer.dropped = request.dropped
                answer.sent, answer.waited = sent, time.monotonic() - sent
                return answer
            data = await _read(response)
            waited = time.monotonic() - sent
        except GatewayError:
            raise
        except Exception as e:
            raise self.failure(e, target, call) from None
        finally:
            if not handed_over:
                target.busy.value -= 1
        if not native:
            try:
                answer = Answer(target, False, completion=endpoint.parse(data), endpoint=endpoint)
                answer.dropped = request.dropped
            except GatewayError as e:
                raise self.failure(e, target, call) from None
            answer.sent, answer.waited = sent, waited
            return answer
        try:
            _probe.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise self.failure(
                UpstreamError(f"upstream {provider.name} answered with malformed JSON"),
                target,
                call,
            ) from None
        answer = Answer(target, True, data, endpoint=endpoint)
        answer.sent, answer.waited = sent, waited
        return answer

    async def _relay(
        self,
        response: UpstreamResponse,
        target: Target,
        call: Call,
        framing: Framing | None,
        started: float,
    ) -> AsyncIterator[bytes]:
        """The stream's bytes as they come, watched for a late start and for silences.

        In pass-through (`framing` set) only whole events are handed on: the bytes after the
        last whole event wait for the next read, so an error event can never be glued onto half
        an event, and a stream that ends mid-event or without its proper end is an error.

        The watchdog is one timer re-armed lazily: a read only stamps the time, and the timer,
        when it fires early, sleeps again until the newest deadline: `first_byte` after the
        attempt began until the first bytes, then `idle` after the latest read. Time the
        client takes to accept a chunk is not upstream silence.
        """
        provider = target.provider
        loop = asyncio.get_running_loop()
        idle = target.timeouts.idle
        first_byte = target.timeouts.first_byte
        last = 0.0  # time of the latest read; 0 until the first one
        reading = True  # False while the client holds a chunk
        silent = False
        handle: asyncio.TimerHandle

        def watch() -> None:
            nonlocal handle, silent
            due = last + idle if last else started + first_byte
            now = loop.time()
            if not reading:
                handle = loop.call_at(now + idle, watch)
            elif now >= due:
                silent = True
                response.close()
            else:
                handle = loop.call_at(due, watch)

        handle = loop.call_at(started + min(first_byte, idle), watch)
        complete = False
        pending = b""
        tail = b""
        try:
            async for chunk in response.content.iter_any():
                last = loop.time()
                if framing is not None:
                    if pending:
                        chunk = pending + chunk
                    cut = framing.cut(chunk)
                    if cut < 2:
                        pending = chunk
                        continue
                    pending = chunk[cut:]
                    chunk = chunk[:cut]
                    tail = chunk[-64:]
                reading = False
                yield chunk
                reading = True
                last = loop.time()
            if silent:
                raise self._silence(provider, last, idle, first_byte)
            if framing is not None and (pending.strip() or not framing.complete(tail)):
                raise UpstreamError(
                    f"upstream {provider.name} ended the stream before the answer was complete"
                )
            complete = True
        except GatewayError as e:
            raise self.failure(e, target, call) from None
        except Exception as e:
            if silent:
                raise self.failure(
                    self._silence(provider, last, idle, first_byte), target, call
                ) from None
            raise self.failure(e, target, call) from None
        finally:
            handle.cancel()
            target.busy.value -= 1
            # an answer not read to its end must not go back to the pool
            if complete:
                response.release()
            else:
                response.close()

    @staticmethod
    def _silence(
        provider: Provider, last: float, idle: float, first_byte: float
    ) -> UpstreamTimeoutError:
        if last:
            return UpstreamTimeoutError(
                f"upstream {provider.name} sent nothing for {idle:g}s in the middle of a stream"
            )
        return UpstreamTimeoutError(
            f"upstream {provider.name} did not start its stream within {first_byte:g}s"
        )

    def failure(self, exc: BaseException, target: Target, call: Call) -> GatewayError:
        provider = target.provider
        error = upstream_failure(exc, provider.name)
        # an upstream's words (an error event's message, code or param) pass the redactor
        error.message = self._redact(error.message)
        if error.code:
            error.code = self._redact(error.code)
        if error.param:
            error.param = self._redact(error.param)
        log.warning(
            "request %s (model %s): upstream %s failed: %s",
            call.request_id,
            call.model,
            target.label,
            self._redact(f"{type(exc).__name__}: {exc}"),
        )
        return error

    def status_error(
        self, target: Target, call: Call, response: UpstreamResponse, raw: bytes
    ) -> UpstreamStatusError:
        provider = target.provider
        status = response.status
        info = target.wire.error_info(status, raw)
        log.warning(
            "request %s (model %s): upstream %s answered HTTP %d: %s",
            call.request_id,
            call.model,
            target.label,
            status,
            self._redact(raw[:4000].decode("utf-8", "replace")),
        )
        redact = self._redact
        error = UpstreamStatusError(
            redact(info.message),
            provider=provider.name,
            upstream_status=status,
            raw=raw,
            param=redact(info.param) if info.param else None,
            code=redact(info.code) if info.code else None,
            upstream_type=redact(info.type) if info.type else None,
        )
        if status in (429, 503, 529):
            error.retry_after = parse_retry_after(response.headers)
        return error


async def _read(response: UpstreamResponse) -> bytes:
    try:
        return await response.read()
    finally:
        response.release()


async def prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()
