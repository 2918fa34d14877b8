"""The state-backend seam: what the gateway keeps between requests, behind one interface.

Two kinds of state, two kinds of access:

- **Routing state read on every request** (key cooldowns and set-asides, in-flight counts,
  refusals) lives in *handles* — `Deadline` and `Counter` objects the backend hands out once
  per name at start-up (and the same object again after a hot reload, so that the state of a
  provider that did not change is kept). The hot path reads and writes their fields: no
  lookup, no await, no lock. A backend that shares state between instances keeps the handles
  as a local view and writes changes through asynchronously (`Deadline.set` calls
  `StateBackend.changed`), so a request never waits for the network to pick a key.
- **Counters and values that must be exact across instances** (rate-limit reservations,
  budgets, cached answers) go through the async methods: `incr`, `reserve` (an atomic
  check-and-add: the one multi-step update limits need; `reserve_many` for several at once,
  all or nothing), `get`, `set`, `delete`. The memory
  backend answers them at once; a Redis backend runs each as one atomic command or script.

Times in handles are seconds on the process's monotonic clock; a shared backend converts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Counter", "Deadline", "StateBackend", "StateUnavailableError"]


class StateUnavailableError(Exception):
    """A shared backend cannot be reached right now (raised at once while it is down); the
    caller decides what that means (the response cache steps aside)."""


class Deadline:
    """A named point in time before which something is unavailable (0: available)."""

    __slots__ = ("_owner", "name", "until")

    def __init__(self, name: str, owner: StateBackend | None = None) -> None:
        self.name = name
        self.until = 0.0
        self._owner = owner

    def set(self, until: float) -> None:
        self.until = until
        if self._owner is not None:
            self._owner.changed(self)

    def clear(self) -> None:
        if self.until:
            self.set(0.0)

    def __repr__(self) -> str:
        return f"Deadline({self.name}, {self.until:g})"


class Counter:
    """A named local count (requests in flight, strikes against a key)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str) -> None:
        self.name = name
        self.value = 0

    def __repr__(self) -> str:
        return f"Counter({self.name}, {self.value})"


class StateBackend(Protocol):
    """Where the gateway's state lives: memory by default; Redis/PostgreSQL to share it."""

    def deadline(self, name: str) -> Deadline:
        """The handle for `name`: the same object every time it is asked for."""
        ...

    def counter(self, name: str) -> Counter:
        """The handle for `name`: the same object every time it is asked for."""
        ...

    def changed(self, handle: Deadline) -> None:
        """A handle changed locally: share it (memory: nothing to do)."""
        ...

    async def incr(self, key: str, amount: float = 1.0, ttl: float | None = None) -> float:
        """Add `amount` to the number at `key` (0 when absent) and return the new value; a
        new key expires after `ttl` seconds."""
        ...

    async def reserve(
        self, key: str, amount: float, limit: float, ttl: float
    ) -> tuple[bool, float]:
        """Atomically add `amount` to `key` only if the result stays within `limit`:
        `(admitted, value after)`. A negative amount (a settlement) is always applied."""
        ...

    async def reserve_many(
        self, items: Sequence[tuple[str, float, float, float]]
    ) -> tuple[bool, list[float]]:
        """`reserve` for several `(key, amount, limit, ttl)` at once, all or nothing:
        `(True, values after)` when every positive amount fits its limit (all applied), else
        `(False, values as they are)` and nothing applied. One step: one round trip."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def start(self) -> None:
        """Called once the event loop runs (a shared backend starts following changes)."""
        ...

    async def close(self) -> None: ...
