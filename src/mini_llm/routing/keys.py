"""KeyPool: a provider's keys, handed out round-robin over the healthy ones.

A key that gets 429 cools down until its Retry-After (or a backoff) has passed. One that gets
401 is set aside for a bounded, growing time: 1 minute after the first refusal, doubling with
each refusal in a row up to 1 hour; then it is tried again, and a successful answer brings it
back for good (`recovered`). `reset` brings every key back at once (the
`mini-llm providers reset` command). Health lives in state-backend handles (see
`state.base`), so it outlives a hot reload and can be shared; nothing here awaits, so on one
event loop every method is atomic.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from ..providers.base import Credential
from ..state import MemoryState, StateBackend

__all__ = ["SET_ASIDE_FIRST", "SET_ASIDE_MAX", "KeyEntry", "KeyPool"]

log = logging.getLogger("mini_llm.keys")

SET_ASIDE_FIRST = 60.0
SET_ASIDE_MAX = 3600.0


class KeyEntry:
    """One key: its credential and its health handles."""

    __slots__ = ("aside", "cool", "credential", "ident", "strikes")

    def __init__(self, key: str | Credential, provider: str, state: StateBackend) -> None:
        self.credential = key if isinstance(key, Credential) else Credential(key)
        self.ident = hashlib.sha256(self.credential.secret.encode()).hexdigest()[:12]
        prefix = f"key/{provider}/{self.ident}/"
        self.cool = state.deadline(prefix + "cool")
        self.aside = state.deadline(prefix + "aside")
        self.strikes = state.counter(prefix + "strikes")

    @property
    def key(self) -> str:
        return self.credential.secret

    @property
    def hint(self) -> str:
        """How a key may be shown: its last 4 characters."""
        return self.credential.hint

    def __repr__(self) -> str:  # never show the key itself
        return f"KeyEntry({self.hint})"


class KeyPool:
    __slots__ = ("_entries", "_next", "provider")

    def __init__(
        self,
        keys: Sequence[str | Credential],
        provider: str = "",
        state: StateBackend | None = None,
    ) -> None:
        state = state if state is not None else MemoryState()
        self._entries = tuple(KeyEntry(k, provider, state) for k in keys)
        self._next = 0
        self.provider = provider

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[KeyEntry]:
        return iter(self._entries)

    def acquire(self, now: float | None = None, skip: Collection[KeyEntry] = ()) -> KeyEntry | None:
        """The next healthy key not in `skip`, or None when there are none (see `soonest`)."""
        entries = self._entries
        count = len(entries)
        if not count:
            return None
        i = self._next
        entry = entries[i]
        if not entry.cool.until and not entry.aside.until and not (skip and entry in skip):
            self._next = (i + 1) % count
            return entry
        now = time.monotonic() if now is None else now
        for step in range(count):
            entry = entries[(i + step) % count]
            if (skip and entry in skip) or entry.aside.until > now:
                continue
            if entry.cool.until:
                if entry.cool.until > now:
                    continue
                entry.cool.clear()
            self._next = (i + step + 1) % count
            return entry
        return None

    def has_healthy(self, now: float | None = None, skip: Collection[KeyEntry] = ()) -> bool:
        now = time.monotonic() if now is None else now
        return any(
            e.aside.until <= now and e.cool.until <= now and e not in skip for e in self._entries
        )

    def cool_down(self, entry: KeyEntry, seconds: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        entry.cool.set(max(entry.cool.until, now + max(seconds, 0.001)))
        log.info("%s key %s cools down for %.2fs", self.provider, entry.hint, seconds)

    def set_aside(self, entry: KeyEntry, status: int, now: float | None = None) -> None:
        """Refused (401): out of rotation for 1 min, doubling per refusal in a row, at most 1 h."""
        now = time.monotonic() if now is None else now
        if entry.aside.until > now:
            return  # already set aside (a concurrent request saw the same refusal)
        entry.strikes.value += 1
        pause = min(SET_ASIDE_FIRST * 2 ** (entry.strikes.value - 1), SET_ASIDE_MAX)
        entry.aside.set(now + pause)
        log.warning(
            "%s key %s was refused with HTTP %d; set aside for %gs (refusal %d in a row)",
            self.provider,
            entry.hint,
            status,
            pause,
            entry.strikes.value,
        )

    def recovered(self, entry: KeyEntry) -> None:
        """A key that was set aside worked again: back in rotation for good."""
        if entry.aside.until:
            entry.aside.clear()
            entry.strikes.value = 0
            log.info("%s key %s works again", self.provider, entry.hint)

    def reset(self) -> int:
        """Bring every key back at once; how many were out of rotation."""
        count = 0
        for entry in self._entries:
            if entry.aside.until or entry.cool.until:
                count += 1
            entry.aside.clear()
            entry.cool.clear()
            entry.strikes.value = 0
        return count

    def soonest(self, now: float | None = None, skip: Collection[KeyEntry] = ()) -> float | None:
        """Seconds until a cooling key is usable again; None when every key is set aside."""
        now = time.monotonic() if now is None else now
        waits = [
            max(0.0, e.cool.until - now)
            for e in self._entries
            if e.aside.until <= now and e not in skip
        ]
        return min(waits) if waits else None

    def status(self, now: float | None = None) -> dict[str, Any]:
        now = time.monotonic() if now is None else now
        entries = self._entries
        return {
            "keys": len(entries),
            "cooling": sum(1 for e in entries if e.aside.until <= now and e.cool.until > now),
            "set_aside": [e.hint for e in entries if e.aside.until > now],
            "retry_in_s": {
                e.hint: round(e.aside.until - now, 1) for e in entries if e.aside.until > now
            },
        }
