"""Retry, timeout and routing policies: what the configuration says, as typed values.

Parsed once at start-up by `config.load_settings`; the router attaches the effective policy
(model over provider over global) to each target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ..resilience import (
    Overrides,
    RetryPolicy,
    Timeouts,
    backoff_delay,
    parse_retry_after,
)

__all__ = [
    "STRATEGIES",
    "Deployment",
    "Overrides",
    "RetryPolicy",
    "Timeouts",
    "backoff_delay",
    "parse_deployments",
    "parse_overrides",
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


_TIMEOUT_FIELDS = tuple(f.name for f in fields(Timeouts))
_RETRY_FIELDS = tuple(f.name for f in fields(RetryPolicy))


def _numbers(
    table: Any, names: tuple[str, ...], where: str, problems: list[str], *, whole: set[str]
) -> dict[str, float]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        problems.append(f"{where} must be a table")
        return {}
    out: dict[str, float] = {}
    for key, value in table.items():
        if key not in names:
            problems.append(f"{where}: unknown setting {key!r} (known: {', '.join(names)})")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where} {key} must be a number, got {value!r}")
            continue
        if key in whole and (not isinstance(value, int) or value < 1):
            problems.append(f"{where} {key} must be a whole number of at least 1, got {value!r}")
            continue
        if key not in whole and not value > 0 and not (key == "backoff" and value == 0):
            problems.append(f"{where} {key} must be more than 0, got {value!r}")
            continue
        out[key] = float(value) if key not in whole else value
    return out


def parse_overrides(entry: Mapping[str, Any], where: str, problems: list[str]) -> Overrides:
    return Overrides(
        _numbers(
            entry.get("timeouts"), _TIMEOUT_FIELDS, f"{where} timeouts", problems, whole=set()
        ),
        _numbers(
            entry.get("retries"), _RETRY_FIELDS, f"{where} retries", problems, whole={"attempts"}
        ),
    )


def parse_retries(table: Any, problems: list[str]) -> RetryPolicy:
    values = _numbers(table, _RETRY_FIELDS, "[retries]", problems, whole={"attempts"})
    return Overrides({}, values).apply(Timeouts(), RetryPolicy())[1]


def parse_deployments(
    table: Mapping[str, Any], default_strategy: str, problems: list[str]
) -> dict[str, Deployment]:
    deployments: dict[str, Deployment] = {}
    for name, entry in table.items():
        where = f"[deployments.{name}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a table")
            continue
        strategy = entry.get("strategy", default_strategy)
        if strategy not in STRATEGIES:
            problems.append(f"{where} strategy must be one of {', '.join(STRATEGIES)}")
            continue
        raw_targets = entry.get("targets")
        if not isinstance(raw_targets, list) or not raw_targets:
            problems.append(f"{where} needs targets = [...] (models, or {{model, weight}} tables)")
            continue
        targets: list[tuple[str, float]] = []
        for item in raw_targets:
            if isinstance(item, str):
                targets.append((item, 1.0))
            elif isinstance(item, dict) and isinstance(item.get("model"), str):
                weight = item.get("weight", 1)
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                    problems.append(f"{where} weight must be a number above 0, got {weight!r}")
                    continue
                targets.append((item["model"], float(weight)))
            else:
                problems.append(f"{where} targets: {item!r} is not a model or {{model, weight}}")
        fallbacks = entry.get("fallbacks", [])
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            problems.append(f"{where} fallbacks must be a list of model names")
            fallbacks = []
        deployments[name] = Deployment(name, tuple(targets), strategy, tuple(fallbacks))
    return deployments
