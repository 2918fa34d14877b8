"""The in-memory state backend: the embedded default, exact within one process."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .base import Counter, Deadline

__all__ = ["MemoryState"]


class MemoryState:
    """Handles in dicts; values with expiry in a dict swept lazily. Nothing here awaits, so on
    one event loop every operation is atomic."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadlines: dict[str, Deadline] = {}
        self._counters: dict[str, Counter] = {}
        self._values: dict[str, tuple[float | bytes, float]] = {}  # key -> (value, expires)
        self._sweep_at = 0.0

    def deadline(self, name: str) -> Deadline:
        handle = self._deadlines.get(name)
        if handle is None:
            handle = self._deadlines[name] = Deadline(name)
        return handle

    def counter(self, name: str) -> Counter:
        handle = self._counters.get(name)
        if handle is None:
            handle = self._counters[name] = Counter(name)
        return handle

    def changed(self, handle: Deadline) -> None:
        return None

    def _live(self, key: str) -> float | bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires and expires <= self._clock():
            del self._values[key]
            return None
        return value

    def _store(self, key: str, value: float | bytes, ttl: float | None) -> None:
        now = self._clock()
        self._values[key] = (value, now + ttl if ttl else 0.0)
        if now >= self._sweep_at:  # at most once a minute, drop what expired
            self._sweep_at = now + 60.0
            for stale in [k for k, (_, exp) in self._values.items() if exp and exp <= now]:
                del self._values[stale]

    def _number(self, key: str) -> float:
        value = self._live(key)
        return value if isinstance(value, float) else 0.0

    def _keep(self, key: str, value: float, ttl: float | None) -> None:
        entry = self._values.get(key)
        if entry is not None and entry[1]:  # an existing key keeps its expiry
            self._values[key] = (value, entry[1])
        else:
            self._store(key, value, ttl)

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        value = self._number(key) + amount
        self._keep(key, value, ttl)
        return value

    async def reserve(
        self, key: str, amount: float, limit: float, ttl: float
    ) -> tuple[bool, float]:
        value = self._number(key)
        if amount > 0 and value + amount > limit:
            return False, value
        value = max(value + amount, 0.0)
        self._keep(key, value, ttl)
        return True, value

    async def reserve_many(
        self, items: Sequence[tuple[str, float, float, float]]
    ) -> tuple[bool, list[float]]:
        return self.reserve_now(items)

    def reserve_now(
        self, items: Sequence[tuple[str, float, float, float]]
    ) -> tuple[bool, list[float]]:
        """`reserve_many`, without a coroutine: the limiter calls it on every request."""
        held = self._values
        now = self._clock()
        values: list[float] = []
        expiries: list[float] = []  # a live key's expiry (0: none, or not live)
        fits = True
        for key, amount, limit, _ in items:
            entry = held.get(key)
            value = expires = 0.0
            if entry is not None:
                found, expires = entry
                if expires and expires <= now:
                    expires = 0.0
                elif found.__class__ is float:
                    value = found
            values.append(value)
            expiries.append(expires)
            if amount > 0 and value + amount > limit:
                fits = False
        if not fits:
            return False, values
        for i, (key, amount, _, ttl) in enumerate(items):
            value = values[i] + amount
            if value < 0.0:
                value = 0.0
            values[i] = value
            expires = expiries[i]
            if expires > now:  # a live key keeps its expiry
                held[key] = (value, expires)
            else:
                self._store(key, value, ttl)
        return True, values

    def add_now(self, key: str, amount: float, ttl: float) -> None:
        """`reserve_now` of one settlement (never refused, never below 0)."""
        entry = self._values.get(key)
        if entry is not None:
            found, expires = entry
            if expires > self._clock():  # a live key keeps its expiry
                value = found + amount if found.__class__ is float else amount
                self._values[key] = (value if value > 0.0 else 0.0, expires)
                return
            if expires or found.__class__ is not float:
                found = 0.0  # gone, or not a number
            amount += found
        self._store(key, float(amount) if amount > 0.0 else 0.0, ttl)

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._store(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
