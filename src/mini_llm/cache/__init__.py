"""The response cache's parts: the key of a request (`keys.py`) and where answers are kept
(`store.py`: an LRU in memory bounded by bytes, or any shared `StateBackend`). The policy
that uses them is `policies/cache.py`."""

from .keys import cache_key, request_material
from .settings import CACHE_MODES, CacheSettings
from .store import CachedAnswer, CacheStore, MemoryCache, SharedCache

__all__ = [
    "CACHE_MODES",
    "CacheSettings",
    "CacheStore",
    "CachedAnswer",
    "MemoryCache",
    "SharedCache",
    "cache_key",
    "request_material",
]
