"""KeyPool: a provider's keys, handed out round-robin over the healthy ones.

A key that gets 429 cools down until its Retry-After (or a backoff) has passed; one that gets
401/403 is set aside for the life of the process. Nothing here awaits, so on one event loop
every method is atomic: concurrent requests each get the next healthy key in turn.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

__all__ = ["KeyEntry", "KeyPool"]

log = logging.getLogger("mini_llm.keys")


class KeyEntry:
    """One key and the upstream auth headers built for it once, at start-up."""

    __slots__ = ("bad", "cool_until", "headers", "key")

    def __init__(self, key: str, headers: dict[str, str]) -> None:
        self.key = key
        self.headers = headers
        self.cool_until = 0.0
        self.bad = False

    @property
    def hint(self) -> str:
        """How a key may be shown: its last 4 characters."""
        return "…" + self.key[-4:]

    def __repr__(self) -> str:  # never show the key itself
        return f"KeyEntry({self.hint})"


class KeyPool:
    __slots__ = ("_entries", "_next", "provider")

    def __init__(
        self,
        keys: Sequence[str],
        auth_headers: Callable[[str], dict[str, str]],
        provider: str = "",
    ) -> None:
        self._entries = tuple(KeyEntry(k, auth_headers(k)) for k in keys)
        self._next = 0
        self.provider = provider

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(self, now: float | None = None, skip: Collection[KeyEntry] = ()) -> KeyEntry | None:
        """The next healthy key not in `skip`, or None when there are none (see `soonest`)."""
        entries = self._entries
        count = len(entries)
        if not count:
            return None
        i = self._next
        entry = entries[i]
        if not entry.bad and not entry.cool_until and not (skip and entry in skip):
            self._next = (i + 1) % count
            return entry
        now = time.monotonic() if now is None else now
        for step in range(count):
            entry = entries[(i + step) % count]
            if entry.bad or (skip and entry in skip):
                continue
            if entry.cool_until:
                if entry.cool_until > now:
                    continue
                entry.cool_until = 0.0
            self._next = (i + step + 1) % count
            return entry
        return None

    def has_healthy(self, now: float | None = None, skip: Collection[KeyEntry] = ()) -> bool:
        now = time.monotonic() if now is None else now
        return any(not e.bad and e.cool_until <= now and e not in skip for e in self._entries)

    def cool_down(self, entry: KeyEntry, seconds: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        entry.cool_until = max(entry.cool_until, now + max(seconds, 0.001))
        log.info("%s key %s cools down for %.2fs", self.provider, entry.hint, seconds)

    def set_aside(self, entry: KeyEntry, status: int) -> None:
        if not entry.bad:
            entry.bad = True
            log.warning(
                "%s key %s was refused with HTTP %d; it is set aside",
                self.provider,
                entry.hint,
                status,
            )

    def soonest(self, now: float | None = None, skip: Collection[KeyEntry] = ()) -> float | None:
        """Seconds until a cooling key is usable again; None when every key is set aside."""
        now = time.monotonic() if now is None else now
        waits = [max(0.0, e.cool_until - now) for e in self._entries if not e.bad and e not in skip]
        return min(waits) if waits else None

    def status(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        return {
            "keys": len(self._entries),
            "cooling": sum(1 for e in self._entries if not e.bad and e.cool_until > now),
            "set_aside": [e.hint for e in self._entries if e.bad],
        }
