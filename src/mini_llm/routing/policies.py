"""Routing policies as typed values: deployments and the balancing strategies.

Parsed by `config.load_settings` (the tables of `config_tables.py`); the router builds its
groups from them. Timeouts, retry policies and their arithmetic live in `resilience.py` and are
re-exported here for the configuration's sake.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..resilience import Overrides, RetryPolicy, Timeouts, backoff_delay, parse_retry_after

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
class Deployment:
    """One public model name served by several targets, balanced by `strategy`."""

    name: str
    targets: tuple[tuple[str, float], ...]
    strategy: str
    fallbacks: tuple[str, ...] = ()
