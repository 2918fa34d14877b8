"""The response cache's settings (the `[cache]` rows of `settings_table.py`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CACHE_MODES", "CacheSettings"]

CACHE_MODES = ("off", "on", "memory", "redis")
"""`on` (`enabled = true`): Redis when `MINI_LLM_REDIS_URL` is set, else memory."""


@dataclass(frozen=True, slots=True)
class CacheSettings:
    enabled: str = "off"
    """One of `CACHE_MODES`."""
    max_bytes: int = 256 * 1024 * 1024
    """Memory: answers kept at most, in bytes (least recently used dropped first)."""
    ttl: float = 3600.0
    """Seconds an answer is kept (a request may ask for another with x-mini-llm-cache-ttl)."""
    share: bool = False
    """Share answers between gateway keys (by default each owner has its own)."""
    exclude: tuple[str, ...] = ()
    """Models, aliases or provider/model labels never cached."""
    wait: float = 30.0
    """Seconds an identical request waits for the one under way before going upstream."""

    def backend(self, redis_url: str) -> str | None:
        """Where answers are kept: "memory", "redis" or None (off)."""
        if self.enabled == "off":
            return None
        if self.enabled == "on":
            return "redis" if redis_url else "memory"
        return self.enabled
