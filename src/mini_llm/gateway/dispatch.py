"""Dispatcher: one chat request's attempts over its route, until one answer begins.

For each target of the route in turn (the balancer's pick first, then the rest of its group,
then the fallbacks), it tries up to the target's `attempts`:

- a healthy key is taken from the provider's pool; 401 sets that key aside (403: for this
  target only) and the next key is tried at once; 429 cools the key down for Retry-After (or
  a backoff) and, when the pool has another healthy key, tries it at once;
- 408, 429, 500, 502, 503, 504, 529, connect errors, timeouts, dropped connections and malformed
  answers are retried after an exponential backoff with full jitter (Retry-After and
  retry-after-ms honoured); `context_length_exceeded` moves on to the next target; any
  other 4xx (400, 404, 422...) is the client's answer at once;
- a stream counts as answered only once its first bytes are in hand, so a stream that fails
  before then falls back like any request; after that, nothing is retried;
- the whole request may spend the route's `budget` seconds waiting on retries.

When every target failed and some only lacked a key that cools down within `backoff_max`,
the walk is repeated once that key is back (at most three walks, within the budget); else the
client gets the last error, 429 with the soonest Retry-After when keys were cooling down.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec

from ..errors import (
    AuthenticationError,
    GatewayError,
    RateLimitError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from ..providers.base import Provider, UpstreamRequest, UpstreamResponse
from ..routing.keys import KeyEntry
from ..routing.policies import backoff_delay, parse_retry_after
from ..routing.router import Route, Target
from ..upstream import upstream_failure

__all__ = ["Answer", "ChatCall", "Dispatcher", "missing_key_error"]

log = logging.getLogger("mini_llm.dispatch")

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504, 529})
# what the last bytes of a complete stream contain, by wire format (pass-through check)
STREAM_END = {"openai": b"[DONE]", "anthropic": b"message_stop"}


class _JSONObject(msgspec.Struct):
    """Decoding into a Struct with no fields checks a whole JSON object, keeping nothing."""


_probe = msgspec.json.Decoder(_JSONObject)


RequestBuilder = Callable[[Provider, dict[str, Any], KeyEntry | None, bool], UpstreamRequest]


class ChatCall:
    """One client request: its body in the client's dialect and, made on demand, canonical."""

    __slots__ = (
        "_canonical",
        "_to_canonical",
        "body",
        "build",
        "native_headers",
        "native_wire",
        "stream",
    )

    def __init__(
        self,
        body: dict[str, Any],
        *,
        native_wire: str,
        stream: bool,
        to_canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        build: RequestBuilder | None = None,
        native_headers: dict[str, str] | None = None,
    ) -> None:
        self.body = body
        self.native_wire = native_wire
        self.stream = stream
        self.build = build
        self.native_headers = native_headers
        """Client headers that go upstream when the provider speaks the client's format
        (`anthropic-beta`, for one); a translated request does not carry them."""
        """Builds the upstream request instead of the wire format (another endpoint)."""
        self._to_canonical = to_canonical
        self._canonical: dict[str, Any] | None = None

    def body_for(self, wire: str) -> tuple[dict[str, Any], bool]:
        """The body to send to a provider of this wire format, and whether it is native."""
        if wire == self.native_wire:
            return self.body, True
        if self._canonical is None:
            convert = self._to_canonical
            self._canonical = convert(self.body) if convert is not None else self.body
        return self._canonical, False


class Answer:
    """The answer that began: a whole body, or a stream whose first bytes have arrived.

    A whole answer in the client's own format is `data` (checked to be a JSON object); a
    translated one is `completion`, already canonical (parsed during the attempt, so a
    malformed answer is retried like any failure).
    """

    __slots__ = ("attempts", "completion", "data", "native", "stream", "target")

    def __init__(
        self,
        target: Target,
        native: bool,
        data: bytes | None = None,
        stream: AsyncIterator[bytes] | None = None,
        completion: dict[str, Any] | None = None,
    ) -> None:
        self.target = target
        self.native = native
        self.data = data
        self.stream = stream
        self.completion = completion
        self.attempts = 1

    def headers(self) -> dict[str, str]:
        return {
            "x-mini-llm-provider": self.target.provider.name,
            "x-mini-llm-model": self.target.model,
            "x-mini-llm-attempts": str(self.attempts),
        }


def missing_key_error(provider: Provider) -> AuthenticationError:
    env = provider.config.key_env or f"{provider.name.upper()}_API_KEY"
    return AuthenticationError(
        f"No API key is configured for provider '{provider.name}'. Set {env} in the gateway's "
        f"environment (several keys: comma-separated in {env.removesuffix('S')}S), or add keys "
        f"under [providers.{provider.name}] in mini-llm.toml.",
        code="missing_api_key",
    )


_ROUNDS = 3


class _RunState:
    __slots__ = ("attempts", "cooled", "last_error", "soonest")

    def __init__(self) -> None:
        self.attempts = 0
        self.last_error: GatewayError | None = None
        self.soonest: float | None = None
        self.cooled = False


class Dispatcher:
    def __init__(
        self,
        redact: Callable[[str], str],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._redact = redact
        self._clock = clock
        self._rng = rng or random.Random()

    async def run(self, route: Route, call: ChatCall) -> Answer:
        clock = self._clock
        deadline = clock() + route.budget
        state = _RunState()
        for _ in range(_ROUNDS):
            answer = await self._walk(route, call, deadline, state)
            if answer is not None:
                return answer
            # Every target failed. When some of them only lacked a key that cools down for a
            # moment, waiting for the first one beats failing the request.
            wait = state.soonest
            if wait is None or not state.cooled:
                break
            if wait > route.primary.retries.backoff_max or clock() + wait > deadline:
                break
            await asyncio.sleep(wait)
            state.soonest = None
        raise _final_error(state.last_error, state.soonest, state.attempts)

    async def _walk(
        self, route: Route, call: ChatCall, deadline: float, state: _RunState
    ) -> Answer | None:
        """One pass over the route's targets; None when none of them answered."""
        clock = self._clock
        state.cooled = False
        attempts = state.attempts
        last_error = state.last_error
        soonest = state.soonest
        for target in _targets_in_order(route):
            if attempts and clock() >= deadline:
                break
            provider = target.provider
            pool = provider.keys
            policy = target.retries
            tries = 0
            cooling = False  # this target ended because all its keys cool down
            while tries < policy.attempts:
                now = clock()
                key = pool.acquire(now, target.refused)
                if key is None and len(pool):
                    wait = pool.soonest(now, target.refused)
                    if wait is None:
                        last_error = last_error or _all_refused(provider)
                    else:
                        soonest = _min(soonest, wait)
                        last_error = last_error or _all_cooling(provider, wait)
                        cooling = True
                    break
                if key is None and provider.config.key_required:
                    last_error = last_error or missing_key_error(provider)
                    break
                attempts += 1
                tries += 1
                delay: float | None = None
                try:
                    answer = await self._attempt(target, key, call)
                except UpstreamStatusError as e:
                    last_error = e
                    status = e.upstream_status
                    if key is not None and status == 401:
                        pool.set_aside(key, status)
                        tries -= 1  # the key failed, not the target: the next key, at once
                        continue
                    if key is not None and status == 403:
                        # forbidden for this model (or region), not necessarily for others
                        target.refuse(key)
                        tries -= 1
                        continue
                    if key is not None and status == 429:
                        pause = e.retry_after
                        if pause is None:
                            pause = backoff_delay(policy, tries - 1, self._rng)
                        pool.cool_down(key, pause, clock())
                        if not pool.has_healthy(clock(), target.refused):
                            # every key cools down: fall back now, or answer 429
                            soonest = _min(soonest, pool.soonest(clock(), target.refused))
                            cooling = True
                            break
                        tries -= 1
                        continue
                    elif e.code == "context_length_exceeded":
                        break
                    elif status not in RETRYABLE:
                        raise _with_attempts(e, attempts) from None
                    delay = e.retry_after
                except (UpstreamError, UpstreamTimeoutError) as e:
                    last_error = e
                else:
                    answer.attempts = attempts
                    return answer
                if tries >= policy.attempts:
                    break
                if delay is None:
                    delay = backoff_delay(policy, tries - 1, self._rng)
                if clock() + delay > deadline:
                    break
                await asyncio.sleep(delay)
            if cooling:
                state.cooled = True
        state.attempts, state.last_error, state.soonest = attempts, last_error, soonest
        return None

    async def _attempt(self, target: Target, key: KeyEntry | None, call: ChatCall) -> Answer:
        provider = target.provider
        wire = provider.wire
        body, native = call.body_for(wire.name)
        body["model"] = target.model
        build = call.build or (wire.native_request if native else wire.chat_request)
        request = build(provider, body, key, call.stream)
        if native and call.native_headers:
            headers = {**request.headers, **call.native_headers}
            request = UpstreamRequest(request.method, request.url, headers, request.body)
        timeouts = target.timeouts
        target.in_flight += 1
        handed_over = False
        started = asyncio.get_running_loop().time()
        try:
            # aiohttp bounds the wait for the headers (sock_read = first_byte), the connect and
            # the total; the relay's watchdog bounds a stream's first event and its silences.
            response = await provider.transport.send(request, timeouts)
            if response.status >= 400:
                raw = await self._read(response)
                raise self.status_error(provider, response, raw)
            content_type = response.headers.get("Content-Type", "")
            if call.stream and content_type.startswith("text/event-stream"):
                marker = STREAM_END.get(wire.name, b"") if native else b""
                stream = self._relay(response, target, marker, started)
                handed_over = True
                first = await anext(stream, b"")
                return Answer(target, native, stream=_prepend(first, stream))
            data = await self._read(response)
        except GatewayError:
            raise
        except Exception as e:
            raise self.failure(e, provider) from None
        finally:
            if not handed_over:
                target.in_flight -= 1
        if not native:
            try:
                return Answer(target, False, completion=wire.parse_chat_response(data))
            except GatewayError as e:
                raise self.failure(e, provider) from None
        try:
            _probe.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise self.failure(
                UpstreamError(f"upstream {provider.name} answered with malformed JSON"),
                provider,
            ) from None
        return Answer(target, True, data)

    async def _read(self, response: UpstreamResponse) -> bytes:
        try:
            return await response.read()
        finally:
            response.release()

    async def _relay(
        self, response: UpstreamResponse, target: Target, end_marker: bytes, started: float
    ) -> AsyncIterator[bytes]:
        """The stream's bytes as they come, watched for a late start and for silences.

        In pass-through (`end_marker` set) only whole events are handed on: the bytes after the
        last blank line wait for the next read, so an error event can never be glued onto half
        an event, and a stream that ends mid-event or without its end marker is an error.

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
                if end_marker:
                    if pending:
                        chunk = pending + chunk
                    cut = max(chunk.rfind(b"\n\n"), chunk.rfind(b"\r\n\r\n") + 2) + 2
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
            if end_marker and (pending.strip() or end_marker not in tail):
                raise UpstreamError(
                    f"upstream {provider.name} ended the stream before the answer was complete"
                )
            complete = True
        except GatewayError as e:
            raise self.failure(e, provider) from None
        except Exception as e:
            if silent:
                raise self.failure(
                    self._silence(provider, last, idle, first_byte), provider
                ) from None
            raise self.failure(e, provider) from None
        finally:
            handle.cancel()
            target.in_flight -= 1
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

    def failure(self, exc: BaseException, provider: Provider) -> GatewayError:
        error = upstream_failure(exc, provider.name)
        log.warning(
            "upstream %s failed: %s", provider.name, self._redact(f"{type(exc).__name__}: {exc}")
        )
        return error

    def status_error(
        self, provider: Provider, response: UpstreamResponse, raw: bytes
    ) -> UpstreamStatusError:
        status = response.status
        info = provider.wire.error_info(status, raw)
        log.warning(
            "upstream %s answered HTTP %d: %s",
            provider.name,
            status,
            self._redact(raw[:4000].decode("utf-8", "replace")),
        )
        error = UpstreamStatusError(
            self._redact(info.message),
            provider=provider.name,
            upstream_status=status,
            raw=raw,
            param=info.param,
            code=info.code,
            upstream_type=info.type,
        )
        if status in (429, 503, 529):
            error.retry_after = parse_retry_after(response.headers)
        return error


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _targets_in_order(route: Route) -> Iterator[Target]:
    for group in route.groups:
        yield from group.order()


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        aclose = getattr(rest, "aclose", None)
        if aclose is not None:
            await aclose()


def _all_cooling(provider: Provider, wait: float) -> RateLimitError:
    return RateLimitError(
        f"Every key of provider '{provider.name}' is rate limited; retry in {math.ceil(wait)}s."
    )


def _all_refused(provider: Provider) -> AuthenticationError:
    return AuthenticationError(
        f"Every key configured for provider '{provider.name}' was refused by the upstream; "
        "check them (the gateway's log names them by their last 4 characters).",
        code="invalid_api_key",
    )


def _with_attempts(error: GatewayError, attempts: int) -> GatewayError:
    error.headers = {**(error.headers or {}), "x-mini-llm-attempts": str(attempts)}
    return error


def _final_error(last: GatewayError | None, soonest: float | None, attempts: int) -> GatewayError:
    error = last or UpstreamError("no target could be tried for this model")
    retry_after = soonest
    if isinstance(error, UpstreamStatusError) and error.retry_after is not None:
        retry_after = (
            error.retry_after if retry_after is None else min(retry_after, error.retry_after)
        )
    error = _with_attempts(error, attempts)
    if error.http_status == 429 and retry_after is not None:
        assert error.headers is not None
        error.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return error
