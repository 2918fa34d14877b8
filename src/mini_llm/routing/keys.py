"""KeyPool: a provider's keys, handed out round-robin."""

from __future__ import annotations

from collections.abc import Callable, Sequence

__all__ = ["KeyEntry", "KeyPool"]


class KeyEntry:
    """One key and the upstream auth headers built for it once, at start-up."""

    __slots__ = ("headers", "key")

    def __init__(self, key: str, headers: dict[str, str]) -> None:
        self.key = key
        self.headers = headers

    def __repr__(self) -> str:  # never show the key itself
        return f"KeyEntry(…{self.key[-4:]})"


class KeyPool:
    """Round-robin over a provider's keys.

    `acquire` does no awaiting, so on one event loop it is atomic: concurrent requests each get
    the next key in turn.
    """

    __slots__ = ("_entries", "_next")

    def __init__(self, keys: Sequence[str], auth_headers: Callable[[str], dict[str, str]]) -> None:
        self._entries = tuple(KeyEntry(k, auth_headers(k)) for k in keys)
        self._next = 0

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(self) -> KeyEntry | None:
        entries = self._entries
        if not entries:
            return None
        i = self._next
        self._next = (i + 1) % len(entries)
        return entries[i]
