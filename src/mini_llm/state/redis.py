"""The Redis state backend: state shared by every gateway instance (`MINI_LLM_REDIS_URL`).

    handles   a local view, as the seam wants (the hot path reads fields, never the network):
              `Deadline.set` writes through asynchronously — HSET into one hash and PUBLISH on
              one channel, in one round trip — and a listener task applies the other
              instances' changes as they are published. On (re)connecting the listener reads
              the whole hash, so what was missed during an outage is caught up. Deadlines
              travel as wall-clock times and are kept as this process's monotonic ones.
              `Counter` handles (requests in flight) stay per instance by design.
    incr      one Lua script: add, and give a new key its TTL (an existing key keeps its own)
    reserve   one Lua script: the atomic check-and-add exact limits need — admitted only if
              the sum stays within the limit; a settlement (negative amount) always applies,
              never below 0. Numbers travel as strings with 17 significant digits.
              `reserve_many`: the same over several keys in one script, all or nothing (a
              request's rpm, tpm, concurrency and budget in one round trip).
    get/set   GET / SET with PX; delete: DEL

Every key lives under `prefix` ("mini-llm:"). Outages never block a request: the client's
connect and read timeouts are short, and after a failure every call fails at once with
`StateUnavailableError` for `retry_after` seconds (a request at most meets one timeout per
window); the first failure of an outage is logged as a warning, the recovery once too.
Callers decide what an outage means (the response cache steps aside).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .base import Counter, Deadline, StateUnavailableError

__all__ = ["RedisState"]

log = logging.getLogger("mini_llm.state")

T = TypeVar("T")

_KEEP = """
local function keep(key, value, ttl_ms)
  if redis.call('PTTL', key) > 0 then
    redis.call('SET', key, value, 'KEEPTTL')
  elseif ttl_ms > 0 then
    redis.call('SET', key, value, 'PX', ttl_ms)
  else
    redis.call('SET', key, value)
  end
end
"""
"""Sets a counter, keeping a live key's expiry (else the given one)."""

_SET_KEEPING_TTL = (
    _KEEP
    + """
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
"""
)

_INCR = (
    _SET_KEEPING_TTL
    + """
local value = string.format('%.17g', current + tonumber(ARGV[1]))
keep(KEYS[1], value, tonumber(ARGV[2]))
return value
"""
)

_RESERVE = (
    _SET_KEEPING_TTL
    + """
local amount = tonumber(ARGV[1])
if amount > 0 and current + amount > tonumber(ARGV[2]) then
  return {0, string.format('%.17g', current)}
end
local value = current + amount
if value < 0 then value = 0 end
value = string.format('%.17g', value)
keep(KEYS[1], value, tonumber(ARGV[3]))
return {1, value}
"""
)

_RESERVE_MANY = (
    _KEEP
    + """
local current = {}
local ok = 1
for i = 1, #KEYS do
  current[i] = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  local amount = tonumber(ARGV[3 * i - 2])
  if amount > 0 and current[i] + amount > tonumber(ARGV[3 * i - 1]) then ok = 0 end
end
local out = {ok}
for i = 1, #KEYS do
  local value = current[i]
  if ok == 1 then
    value = value + tonumber(ARGV[3 * i - 2])
    if value < 0 then value = 0 end
    keep(KEYS[i], string.format('%.17g', value), tonumber(ARGV[3 * i]))
  end
  out[i + 1] = string.format('%.17g', value)
end
return out
"""
)

_SHARE_DEADLINE = """
if ARGV[2] == '0' then redis.call('HDEL', KEYS[1], ARGV[1])
else redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('PUBLISH', KEYS[1], ARGV[3] .. ' ' .. ARGV[2] .. ' ' .. ARGV[1])
return 1
"""


def _ms(ttl: float | None) -> int:
    return max(int(ttl * 1000), 1) if ttl else 0


class RedisState:
    """A `StateBackend` on Redis (redis-py's asyncio client, one connection pool)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "mini-llm:",
        timeout: float = 0.5,
        retry_after: float = 1.0,
        resync: float = 1.0,
    ) -> None:
        self.prefix = prefix
        self._redis: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),  # once more on a fresh connection: a restart
            client_name="mini-llm",
        )
        self._incr = self._redis.register_script(_INCR)
        self._reserve = self._redis.register_script(_RESERVE)
        self._reserve_many = self._redis.register_script(_RESERVE_MANY)
        self._share = self._redis.register_script(_SHARE_DEADLINE)
        self._channel = prefix + "deadlines"
        self._instance = os.urandom(6).hex()
        self._retry_after = retry_after
        self._resync = resync
        self._deadlines: dict[str, Deadline] = {}
        self._counters: dict[str, Counter] = {}
        self._shared: dict[str, float] = {}  # deadlines read before their handle was asked for
        self._down_until = 0.0
        self._down = False
        self._listener: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[Any]] = set()

    # handles -----------------------------------------------------------------------------

    def deadline(self, name: str) -> Deadline:
        handle = self._deadlines.get(name)
        if handle is None:
            handle = self._deadlines[name] = Deadline(name, self)
            wall = self._shared.pop(name, 0.0)
            if wall:
                handle.until = _local(wall)
        return handle

    def counter(self, name: str) -> Counter:
        handle = self._counters.get(name)
        if handle is None:
            handle = self._counters[name] = Counter(name)
        return handle

    def changed(self, handle: Deadline) -> None:
        wall = repr(_wall(handle.until)) if handle.until else "0"
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving (a test, start-up): nothing to share yet
        work = self._call(
            self._share(keys=[self._channel], args=[handle.name, wall, self._instance])
        )
        task = loop.create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[Any]) -> None:
        self._writes.discard(task)
        if not task.cancelled():
            task.exception()  # already logged by _call when it is an outage

    async def start(self) -> None:
        """Start following the other instances' changes (from the gateway's start-up)."""
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        """Apply the deadlines other instances publish; after each (re)connection read the
        whole hash first, so that nothing published meanwhile is missed."""
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self._channel)
                everything = await self._redis.hgetall(self._channel)
                self._recovered()
                for name, wall in everything.items():
                    self._apply(_text(name), float(wall))
                while True:
                    message = await pubsub.get_message(timeout=self._resync)
                    if message is not None and message.get("type") == "message":
                        instance, wall, name = _text(message["data"]).split(" ", 2)
                        if instance != self._instance:
                            self._apply(name, float(wall))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ValueError) as e:
                self._failed(e)
                await asyncio.sleep(self._resync)
            finally:
                if pubsub is not None:
                    await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]

    def _apply(self, name: str, wall: float) -> None:
        handle = self._deadlines.get(name)
        if handle is None:
            self._shared[name] = wall
        else:
            handle.until = _local(wall) if wall else 0.0  # not set(): no echo back

    # the async, exact operations ---------------------------------------------------------

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        value = await self._call(self._incr(keys=[self.prefix + key], args=[amount, _ms(ttl)]))
        return float(value)

    async def reserve(
        self, key: str, amount: float, limit: float, ttl: float
    ) -> tuple[bool, float]:
        admitted, value = await self._call(
            self._reserve(keys=[self.prefix + key], args=[amount, limit, _ms(ttl)])
        )
        return bool(admitted), float(value)

    async def reserve_many(
        self, items: Sequence[tuple[str, float, float, float]]
    ) -> tuple[bool, list[float]]:
        args: list[Any] = []
        for _, amount, limit, ttl in items:
            args += [amount, limit, _ms(ttl)]
        admitted, *values = await self._call(
            self._reserve_many(keys=[self.prefix + key for key, _, _, _ in items], args=args)
        )
        return bool(admitted), [float(v) for v in values]

    async def get(self, key: str) -> bytes | None:
        value = await self._call(self._redis.get(self.prefix + key))
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._call(self._redis.set(self.prefix + key, value, px=_ms(ttl) or None))

    async def delete(self, key: str) -> None:
        await self._call(self._redis.delete(self.prefix + key))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await _quietly(self._listener)
            self._listener = None
        if self._writes:
            await asyncio.wait(self._writes, timeout=1.0)
        await self._redis.aclose()

    # outages -----------------------------------------------------------------------------

    async def _call(self, work: Awaitable[T]) -> T:
        if self._down_until and time.monotonic() < self._down_until:
            if asyncio.iscoroutine(work):
                work.close()
            raise StateUnavailableError("Redis is unreachable")
        try:
            result = await work
        except (RedisError, OSError) as e:
            self._failed(e)
            raise StateUnavailableError(f"Redis is unreachable: {e}") from e
        self._recovered()
        return result

    def _failed(self, error: Exception) -> None:
        self._down_until = time.monotonic() + self._retry_after
        if not self._down:
            self._down = True
            log.warning("Redis unreachable (%s); shared state unavailable until it is back", error)

    def _recovered(self) -> None:
        self._down_until = 0.0
        if self._down:
            self._down = False
            log.warning("Redis reachable again")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _wall(monotonic: float) -> float:
    return monotonic - time.monotonic() + time.time()


def _local(wall: float) -> float:
    return wall - time.time() + time.monotonic()


async def _quietly(work: Awaitable[Any]) -> None:
    with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
        await work
