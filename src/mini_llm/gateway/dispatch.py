"""Dispatcher: one request's attempts over its route, until one answer begins.

For each target of the route in turn (the balancer's pick first, then the rest of its group,
then the fallbacks), it tries up to the target's `attempts`:

- a healthy key is taken from the provider's pool; 401 sets that key aside for a while
  (403: for this target only) and the next key is tried at once; 429 cools the key down for
  Retry-After (or a backoff) and, when the pool has another healthy key, tries it at once;
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
from collections.abc import Callable, Iterator

from ..call import Answer, Call
from ..errors import (
    AuthenticationError,
    GatewayError,
    RateLimitError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeoutError,
)
from ..resilience import backoff_delay
from ..routing.provider import Provider
from ..routing.router import Route, Target
from .attempt import AttemptHook, Attempts

__all__ = ["RETRYABLE", "Dispatcher", "missing_key_error"]

log = logging.getLogger("mini_llm.dispatch")

RETRYABLE = frozenset({408, 429, 500, 502, 503, 504, 529})


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
        hook: AttemptHook | None = None,
    ) -> None:
        self._attempts = Attempts(redact, hook)
        self._clock = clock
        self._rng = rng or random.Random()

    async def run(self, route: Route, call: Call) -> Answer:
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
        self, route: Route, call: Call, deadline: float, state: _RunState
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
                    answer = await self._attempts.attempt(target, key, call)
                except UpstreamStatusError as e:
                    last_error = e
                    status = e.upstream_status
                    if key is not None and status == 401:
                        pool.set_aside(key, status, clock())
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
                    if key is not None and key.aside.until:
                        pool.recovered(key)  # a key set aside earlier works again
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


def _min(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _targets_in_order(route: Route) -> Iterator[Target]:
    for group in route.groups:
        yield from group.order()


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
