"""What the ledger says: totals grouped by model, provider, key, day or hour, or the records
themselves; shared by `mini-llm usage` and `GET /admin/usage`.

Sums are computed by the store (`GROUP BY`); latency percentiles (nearest rank) from the
latencies of the period, in Python, since SQLite has no percentile function.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ..store import Store
from .ledger import COLUMNS, MIGRATIONS

__all__ = ["GROUPS", "parse_when", "usage_report"]

_KEYS = {
    "model": "COALESCE(provider || '/' || served_model, model)",
    "provider": "COALESCE(provider, '-')",
    "key": "COALESCE(key_id, '-')",
    "day": "ts_us / 86400000000",
    "hour": "ts_us / 3600000000",
}
GROUPS = (*_KEYS, "request")
_TOKENS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
)
_ANY_TOKENS = "(input_tokens + output_tokens + cached_input_tokens + cache_write_tokens) > 0"
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: float | None = None) -> float:
    """Unix seconds for `24h`, `7d`, `30m` (that long ago), an ISO date or date-time (UTC
    unless it says otherwise), or Unix seconds; ValueError otherwise."""
    now = time.time() if now is None else now
    text = text.strip()
    span = _SPAN.fullmatch(text)
    if span:
        return now - float(span.group(1)) * _SECONDS[span.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use 24h, 7d, 30m, a date (2025-01-31) or a date-time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")


def _label(by: str, key: Any) -> str:
    if by == "day":
        return datetime.fromtimestamp(int(key) * 86400, timezone.utc).date().isoformat()
    if by == "hour":
        moment = datetime.fromtimestamp(int(key) * 3600, timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:00Z")
    return str(key)


def _rank(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    return round(values[max(math.ceil(share * len(values)) - 1, 0)], 3)


def _number(value: Any) -> int:
    return int(value or 0)  # PostgreSQL's SUM(bigint) is a Decimal


async def usage_report(
    store: Store,
    since: float,
    until: float,
    by: str = "model",
    limit: int = 100,
    key_id: str | None = None,
) -> dict[str, Any]:
    """The report as JSON-ready data (`rows`, `total`, `unpriced_models`); with `key_id`,
    of that gateway key's requests only."""
    if by not in GROUPS:
        raise ValueError(f"--by must be one of {', '.join(GROUPS)}, got {by!r}")
    await store.open()
    await store.migrate("usage", MIGRATIONS)
    window: tuple[Any, ...] = (int(since * 1_000_000), int(until * 1_000_000))
    where = "WHERE ts_us >= ? AND ts_us < ?"
    if key_id is not None:
        where += " AND key_id = ?"
        window = (*window, key_id)
    report: dict[str, Any] = {"since": _iso(since), "until": _iso(until), "by": by}
    if by == "request":
        rows = await store.fetch(
            f"SELECT {', '.join(COLUMNS)} FROM usage_records {where} ORDER BY ts_us DESC LIMIT ?",
            (*window, limit if limit > 0 else 2**62),  # 0: every record
        )
        report["rows"] = [_record(row) for row in rows]
        return report
    key = _KEYS[by]
    sums = ", ".join(f"SUM({name})" for name in _TOKENS)
    grouped = await store.fetch(
        f"SELECT {key} AS k, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), {sums}, "
        f"SUM(cost_usd), SUM(CASE WHEN cost_usd IS NULL AND {_ANY_TOKENS} THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN exact = 0 THEN 1 ELSE 0 END) "
        f"FROM usage_records {where} GROUP BY k",
        window,
    )
    latencies: dict[Any, list[float]] = {}
    for k, latency in await store.fetch(
        f"SELECT {key} AS k, latency_ms FROM usage_records {where}", window
    ):
        latencies.setdefault(k, []).append(float(latency))
    unpriced = await store.fetch(
        "SELECT DISTINCT COALESCE(provider || '/' || served_model, model) FROM usage_records "
        f"{where} AND cost_usd IS NULL AND {_ANY_TOKENS}",
        window,
    )
    rows_out: list[dict[str, Any]] = []
    every: list[float] = []
    for row in grouped:
        k, requests, errors, *tokens = row[: 3 + len(_TOKENS)]
        cost, unpriced_count, estimated = row[3 + len(_TOKENS) :]
        spent = sorted(latencies.get(k, ()))
        every.extend(spent)
        rows_out.append(
            {
                by: _label(by, k),
                "requests": _number(requests),
                "errors": _number(errors),
                **{name: _number(v) for name, v in zip(_TOKENS, tokens, strict=True)},
                "cost_usd": None if cost is None else round(float(cost), 8),
                "unpriced_requests": _number(unpriced_count),
                "estimated_requests": _number(estimated),
                "p50_ms": _rank(spent, 0.5),
                "p95_ms": _rank(spent, 0.95),
            }
        )
    if by in ("day", "hour"):
        rows_out.sort(key=lambda r: str(r[by]))
    else:
        rows_out.sort(key=lambda r: (-(r["cost_usd"] or 0.0), -int(r["requests"]), str(r[by])))
    every.sort()
    total: dict[str, Any] = {
        "requests": sum(r["requests"] for r in rows_out),
        "errors": sum(r["errors"] for r in rows_out),
        **{name: sum(r[name] for r in rows_out) for name in _TOKENS},
        "cost_usd": round(sum(r["cost_usd"] or 0.0 for r in rows_out), 8),
        "unpriced_requests": sum(int(r["unpriced_requests"]) for r in rows_out),
        "estimated_requests": sum(r["estimated_requests"] for r in rows_out),
        "p50_ms": _rank(every, 0.5),
        "p95_ms": _rank(every, 0.95),
    }
    report["rows"] = rows_out[:limit] if limit else rows_out
    report["total"] = total
    report["unpriced_models"] = sorted(str(r[0]) for r in unpriced)
    return report


def _record(row: Sequence[Any]) -> dict[str, Any]:
    record = dict(zip(COLUMNS, row, strict=True))
    ts_us = int(record.pop("ts_us"))
    out: dict[str, Any] = {"time": _iso(ts_us / 1_000_000), "ts": ts_us / 1_000_000}
    for name, value in record.items():
        if name in ("cache_hit", "exact", "cancelled"):
            out[name] = bool(value)
        elif name in _TOKENS or name in ("status", "attempts"):
            out[name] = int(value)
        else:
            out[name] = value
    return out
