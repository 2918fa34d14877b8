"""Retry, timeout and routing policies: what the configuration says, as typed values.

Parsed by `config.load_settings` (the rows of `settings_table.py`, the tables of
`config_tables.py`); the router attaches the effective policy (model over provider over
global) to each target. Also the backoff and Retry-After arithmetic the dispatcher uses.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

__all__ = [
    "STRATEGIES",
    "Deployment",
    "Overrides",
    "RetryPolicy",
    "Timeouts",
    "backoff_delay",
    "parse_retry_after",
]

STRATEGIES = ("round-robin", "least-in-flight")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: to connect; until the answer begins (headers, and a stream's first event);
    the longest silence between two stream reads; the whole upstream call."""

    connect: float = 10.0
    first_byte: float = 300.0
    idle: float = 120.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one request tries: `attempts` per target (the first included), exponential
    backoff with full jitter from `backoff` up to `backoff_max` seconds, and a `budget` of
    seconds for all retries and fallbacks of the request together."""

    attempts: int = 3
    backoff: float = 0.25
    backoff_max: float = 8.0
    budget: float = 60.0


@dataclass(frozen=True, slots=True)
class Overrides:
    """Partial timeouts/retries for a provider or a model; None fields inherit."""

    timeouts: Mapping[str, float]
    retries: Mapping[str, float]

    def apply(self, timeouts: Timeouts, retries: RetryPolicy) -> tuple[Timeouts, RetryPolicy]:
        if self.timeouts:
            timeouts = replace(timeouts, **self.timeouts)
        if self.retries:
            values = dict(self.retries)
            if "attempts" in values:
                values["attempts"] = int(values["attempts"])
            retries = replace(retries, **values)  # type: ignore[arg-type]
        return timeouts, retries


@dataclass(frozen=True, slots=True)
class Deployment:
    """One public model name served by several targets, balanced by `strategy`."""

    name: str
    targets: tuple[tuple[str, float], ...]
    strategy: str
    fallbacks: tuple[str, ...] = ()


def backoff_delay(policy: RetryPolicy, retry: int, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**retry)] for the `retry`-th retry (0-based)."""
    ceiling = min(policy.backoff_max, policy.backoff * (2**retry))
    return (rng or random).uniform(0, ceiling)


MAX_RETRY_AFTER = 86_400.0  # an upstream asking for more than a day is not taken literally


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date),
    between 0 and a day; None when the upstream said nothing usable."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return _bounded(float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return _bounded(float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return _bounded(when.timestamp() - (time.time() if now is None else now))


def _bounded(seconds: float) -> float | None:
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)
