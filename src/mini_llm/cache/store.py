"""Where cached answers are kept: in this process (an LRU bounded by bytes, with a TTL), or
in a shared `StateBackend` (Redis: every instance sees every answer, Redis keeps the TTL,
values compressed).

An answer is stored once, in canonical form, as JSON with the wall-clock time it was stored
(so that any instance can say its age). A store raises what its backend raises; the cache
policy decides what an outage means (a bypass).
"""

from __future__ import annotations

import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from ..state.base import StateBackend

__all__ = ["ENTRY_OVERHEAD", "CacheStore", "CachedAnswer", "MemoryCache", "SharedCache"]

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode
_STAMP = struct.Struct("<d")

ENTRY_OVERHEAD = 480
"""Bytes a memory entry costs beyond its key and value (the ordered dict's slot and link, the
tuple, the floats, the objects' headers: measured with tracemalloc, bench/run.py), counted
against `max_bytes` so that many small answers stay bounded too."""


class CachedAnswer:
    """A stored answer: its canonical JSON as stored, decoded only when asked (a hit served
    to a client of the canonical format is these bytes as they are)."""

    __slots__ = ("_completion", "data", "stored_at")

    def __init__(
        self, data: bytes, stored_at: float, completion: dict[str, Any] | None = None
    ) -> None:
        self.data = data
        self.stored_at = stored_at
        """Wall-clock seconds (time.time) when it was stored."""
        self._completion = completion

    @property
    def completion(self) -> dict[str, Any]:
        """The canonical answer, this object's own (decoded once)."""
        if self._completion is None:
            self._completion = _decode(self.data)
        return self._completion


class CacheStore(Protocol):
    shared: bool
    """Whether other instances see what this one stores (then single flight takes a lock)."""

    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, completion: dict[str, Any], ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def lock(self, key: str, ttl: float) -> bool:
        """Take the single-flight lock of `key` for `ttl` seconds: False if another has it."""
        ...

    async def unlock(self, key: str) -> None: ...


class MemoryCache:
    """Least recently used answers dropped first once `max_bytes` would be passed; expired
    ones dropped when met. Nothing here awaits: on one event loop every call is atomic."""

    shared = False

    def __init__(self, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CachedAnswer | None:
        return self.get_now(key)

    def get_now(self, key: str) -> CachedAnswer | None:
        """`get` without a coroutine: nothing here awaits."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        data, stored_at, expires = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return CachedAnswer(data, stored_at)

    async def put(self, key: str, completion: dict[str, Any], ttl: float) -> None:
        data = _encode(completion)
        cost = len(key) + len(data) + ENTRY_OVERHEAD
        if cost > self.max_bytes:
            return
        self._drop(key)
        now = self._clock()
        self._entries[key] = (data, now, now + ttl)
        self.size += cost
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def delete(self, key: str) -> None:
        self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= len(key) + len(entry[0]) + ENTRY_OVERHEAD

    async def lock(self, key: str, ttl: float) -> bool:
        return True  # one process: the policy's own single flight is enough

    async def unlock(self, key: str) -> None:
        return None


class SharedCache:
    """Answers in a shared `StateBackend` under `prefix`, compressed; the backend keeps the
    TTL. The single-flight lock is an atomic `reserve` of 1 within a limit of 1."""

    shared = True

    def __init__(
        self,
        backend: StateBackend,
        prefix: str = "cache:",
        clock: Callable[[], float] = time.time,
        level: int = 1,
    ) -> None:
        self._backend = backend
        self._prefix = prefix
        self._clock = clock
        self._level = level

    async def get(self, key: str) -> CachedAnswer | None:
        value = await self._backend.get(self._prefix + key)
        if value is None or len(value) <= _STAMP.size:
            return None
        (stored_at,) = _STAMP.unpack_from(value)
        try:
            data = zlib.decompress(value[_STAMP.size :])
            completion = _decode(data)
        except (zlib.error, msgspec.DecodeError):
            return None  # not ours, or damaged: a miss
        return CachedAnswer(data, stored_at, completion)

    async def put(self, key: str, completion: dict[str, Any], ttl: float) -> None:
        value = _STAMP.pack(self._clock()) + zlib.compress(_encode(completion), self._level)
        await self._backend.set(self._prefix + key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._backend.delete(self._prefix + key)

    async def lock(self, key: str, ttl: float) -> bool:
        admitted, _ = await self._backend.reserve(self._prefix + "lock:" + key, 1, 1, ttl)
        return admitted

    async def unlock(self, key: str) -> None:
        await self._backend.delete(self._prefix + "lock:" + key)
