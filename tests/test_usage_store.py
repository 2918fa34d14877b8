"""The SQL store on SQLite and on a real PostgreSQL: per-component migrations, the ledger's
batches, and the report `mini-llm usage` and `/admin/usage` give."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mini_llm.store import Migration, Store, StoreError, open_store, sqlite_url
from mini_llm.usage.ledger import COLUMNS, Ledger
from mini_llm.usage.report import parse_when, usage_report

from .services.postgres import postgres_url

__all__ = ["postgres_url"]  # the session fixture, used by name below


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(str(tmp_path / "store.db"))
        return
    base: str = request.getfixturevalue("postgres_url")
    # a database of this test's own
    name = f"t{abs(hash(request.node.nodeid)) % 10**9}_{int(time.time() * 1000) % 10**6}"

    async def make() -> None:
        import asyncpg

        db = await asyncpg.connect(base)
        try:
            await db.execute(f"CREATE DATABASE {name}")
        finally:
            await db.close()

    asyncio.run(make())
    yield base.rsplit("/", 1)[0] + "/" + name


def record(ts: float, model: str, **fields: Any) -> tuple[Any, ...]:
    provider, _, served = model.partition("/")
    row: dict[str, Any] = {
        "ts_us": int(ts * 1e6),
        "request_id": f"req-{ts}",
        "key_id": None,
        "endpoint": "/v1/chat/completions",
        "dialect": "openai",
        "model": model,
        "provider": provider,
        "served_model": served,
        "status": 200,
        "error_code": None,
        "attempts": 1,
        "latency_ms": 10.0,
        "ttft_ms": None,
        "overhead_ms": 0.1,
        "input_tokens": 100,
        "output_tokens": 10,
        "cached_input_tokens": 50,
        "cache_write_tokens": 0,
        "cache_write_1h_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.001,
        "cache_hit": 0,
        "exact": 1,
        "cancelled": 0,
    }
    row.update(fields)
    return tuple(row[c] for c in COLUMNS)


def test_migrations_are_per_component_and_applied_once(store_url: str) -> None:
    async def run() -> None:
        store: Store = open_store(store_url)
        await store.open()
        try:
            keys_v1 = [Migration(1, ("CREATE TABLE keys (id TEXT PRIMARY KEY)",))]
            assert await store.migrate("keys", keys_v1) == 1
            assert await store.migrate("keys", keys_v1) == 1  # nothing pending: nothing runs
            keys_v2 = [*keys_v1, Migration(2, ("ALTER TABLE keys ADD COLUMN spend BIGINT",))]
            assert await store.migrate("keys", keys_v2) == 2
            await store.execute("INSERT INTO keys (id, spend) VALUES (?, ?)", ("k1", 5))
            assert await store.fetch("SELECT id, spend FROM keys") == [("k1", 5)]
            other = [Migration(1, ("CREATE TABLE other_things (x INTEGER)",))]
            assert await store.migrate("other", other) == 1
            versions = await store.fetch(
                "SELECT component, version FROM schema_versions ORDER BY component"
            )
            assert versions == [("keys", 2), ("other", 1)]
            with pytest.raises(ValueError, match=r"1\.\.n"):
                await store.migrate("keys", [Migration(2, ())])
        finally:
            await store.close()

    asyncio.run(run())


def test_the_ledger_writes_batches_and_the_report_adds_them_up(store_url: str) -> None:
    now = time.time()

    async def run() -> dict[str, dict[str, Any]]:
        ledger = Ledger(open_store(store_url), batch=3, interval=0.05)
        ledger.start()
        for i in range(7):
            ledger.append(record(now - i, "openai/gpt-4o-mini", latency_ms=float(10 + i)))
        ledger.append(record(now - 1, "anthropic/claude-sonnet-4-5", cost_usd=0.5))
        ledger.append(record(now - 1, "my/model", cost_usd=None))
        ledger.append(record(now - 1, "openai/gpt-4o-mini", status=502, error_code="x",
                             input_tokens=0, output_tokens=0, cached_input_tokens=0,
                             cost_usd=None))  # fmt: skip
        ledger.append(record(now - 3 * 86400, "openai/gpt-4o-mini"))  # outside 24h
        await ledger.close()
        assert ledger.written == 11 and ledger.dropped == 0
        store = open_store(store_url)
        try:
            reports = {
                by: await usage_report(store, parse_when("24h", now), now + 1, by, 0)
                for by in ("model", "provider", "day", "request")
            }
            reports["7d"] = await usage_report(store, parse_when("7d", now), now + 1, "model")
        finally:
            await store.close()
        return reports

    reports = asyncio.run(run())
    by_model = {row["model"]: row for row in reports["model"]["rows"]}
    mini = by_model["openai/gpt-4o-mini"]
    assert (mini["requests"], mini["errors"]) == (8, 1)
    assert (mini["input_tokens"], mini["cached_input_tokens"]) == (700, 350)
    assert mini["cost_usd"] == pytest.approx(0.007)
    assert mini["p50_ms"] == 12.0 and mini["p95_ms"] == 16.0  # 10 10 11 12 13 14 15 16
    assert by_model["anthropic/claude-sonnet-4-5"]["cost_usd"] == pytest.approx(0.5)
    assert by_model["my/model"]["cost_usd"] is None
    assert reports["model"]["unpriced_models"] == ["my/model"]
    assert reports["model"]["total"]["requests"] == 10
    assert {r["provider"] for r in reports["provider"]["rows"]} == {"openai", "anthropic", "my"}
    assert sum(r["requests"] for r in reports["day"]["rows"]) == 10
    listed = reports["request"]["rows"]
    assert len(listed) == 10 and listed[0]["ts"] >= listed[-1]["ts"]  # newest first
    assert reports["7d"]["total"]["requests"] == 11


def test_an_unreachable_store_keeps_a_bounded_queue_and_counts_drops(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the store's folder should be")

    async def run() -> Ledger:
        ledger = Ledger(open_store(sqlite_url(str(blocked / "x.db"))), max_queue=5, retry=0.01)
        ledger.start()
        for i in range(8):
            ledger.append(record(time.time(), "openai/gpt-4o-mini", request_id=f"r{i}"))
        await asyncio.sleep(0.1)
        assert len(ledger.queue) == 5 and ledger.dropped == 3
        await ledger.close(timeout=1)
        return ledger

    ledger = asyncio.run(run())
    assert ledger.dropped == 8 and not ledger.queue


def test_sqlite_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"

    async def run() -> None:
        ledger = Ledger(open_store(sqlite_url(str(path))))
        ledger.start()
        ledger.append(record(time.time(), "openai/gpt-4o-mini"))
        await ledger.close()

    asyncio.run(run())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT COUNT(*) FROM usage_records").fetchone()[0] == 1


def test_bad_urls_are_refused() -> None:
    with pytest.raises(StoreError, match="unknown database URL"):
        open_store("mysql://somewhere/db")
