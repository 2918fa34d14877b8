"""The in-memory state backend: the embedded default, exact within one process."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .base import Counter, Deadline

__all__ = ["MemoryState"]


class MemoryState:
    """Handles in dicts; values with expiry in a dict swept lazily. Nothing here awaits, so on
    one event loop every operation is atomic."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._deadlines: dict[str, Deadline] = {}
        self._counters: dict[str, Counter] = {}
        self._values: dict[str, list[Any]] = {}
        """key -> [value, expires] (a float or bytes; 0: no expiry). A number's pair is
        changed in place, so a `cell` handed out stays the key's own while it lives."""
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
        return value  # type: ignore[no-any-return]

    def _store(self, key: str, value: float | bytes, ttl: float | None) -> list[Any]:
        now = self._clock()
        entry = self._values[key] = [value, now + ttl if ttl else 0.0]
        if now >= self._sweep_at:  # at most once a minute, drop what expired
            self._sweep_at = now + 60.0
            for stale in [k for k, (_, exp) in self._values.items() if exp and exp <= now]:
                del self._values[stale]
        return entry

    def _number(self, key: str) -> float:
        value = self._live(key)
        return value if isinstance(value, float) else 0.0

    def _keep(self, key: str, value: float, ttl: float | None) -> None:
        entry = self._values.get(key)
        if entry is not None and entry[1]:  # an existing key keeps its expiry
            entry[0] = value
        else:
            self._store(key, value, ttl)

    def now(self) -> float:
        """The clock expiries are read on (a `cell`'s `expires`)."""
        return self._clock()

    def cell(self, key: str, ttl: float) -> list[Any]:
        """The number under `key` as its live `[value, expires]` pair, made at 0 with `ttl`
        when there is none: the limiter checks and changes it in place (`incr`, `reserve`
        and the rest see the same pair). Once `expires` has passed it is no longer the key's:
        ask again."""
        entry = self._values.get(key)
        if entry is not None and entry[0].__class__ is float:
            expires = entry[1]
            if not expires or expires > self._clock():
                return entry
        return self._store(key, 0.0, ttl)

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
        """`reserve_many`, without a coroutine (the limiter's memory path)."""
        held = self._values
        now = self._clock()
        values: list[float] = []
        entries: list[list[Any] | None] = []  # each key's live pair, if any
        fits = True
        for key, amount, limit, _ in items:
            entry = held.get(key)
            value = 0.0
            if entry is not None:
                if entry[1] and entry[1] <= now:
                    entry = None
                elif entry[0].__class__ is float:
                    value = entry[0]
            values.append(value)
            entries.append(entry)
            if amount > 0 and value + amount > limit:
                fits = False
        if not fits:
            return False, values
        for i, (key, amount, _, ttl) in enumerate(items):
            value = values[i] + amount
            if value < 0.0:
                value = 0.0
            values[i] = value
            entry = entries[i]
            if entry is not None and entry[1]:  # a live key keeps its expiry
                entry[0] = value
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
                entry[0] = value if value > 0.0 else 0.0
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
