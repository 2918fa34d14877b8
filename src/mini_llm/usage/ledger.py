"""The usage ledger: one record per request, written off the hot path, in batches.

`append` is all a request pays: a tuple onto a bounded queue. A task writes batches to the
store (every `interval` seconds, or at once when a batch is full). When the store cannot be
reached the queue keeps what it can hold and every record beyond that is dropped and counted
(`dropped`, exported as `mini_llm_usage_records_dropped_total`): a request never waits for
the ledger. `close` (the gateway's drain, after in-flight requests have finished) writes what
is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from ..store import Migration, Store, StoreError

__all__ = ["COLUMNS", "INSERT", "MIGRATIONS", "Ledger", "Record"]

log = logging.getLogger("mini_llm.usage")

COLUMNS = (
    "ts_us",
    "request_id",
    "key_id",
    "endpoint",
    "dialect",
    "model",
    "provider",
    "served_model",
    "status",
    "error_code",
    "attempts",
    "latency_ms",
    "ttft_ms",
    "overhead_ms",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cache_hit",
    "exact",
    "cancelled",
)
Record = tuple[Any, ...]
"""One row, in `COLUMNS` order."""

INSERT = (
    f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)

MIGRATIONS = (
    Migration(
        1,
        (
            """CREATE TABLE usage_records (
                ts_us BIGINT NOT NULL,
                request_id TEXT NOT NULL,
                key_id TEXT,
                endpoint TEXT NOT NULL,
                dialect TEXT NOT NULL,
                model TEXT NOT NULL,
                provider TEXT,
                served_model TEXT,
                status INTEGER NOT NULL,
                error_code TEXT,
                attempts INTEGER NOT NULL,
                latency_ms DOUBLE PRECISION NOT NULL,
                ttft_ms DOUBLE PRECISION,
                overhead_ms DOUBLE PRECISION,
                input_tokens BIGINT NOT NULL,
                output_tokens BIGINT NOT NULL,
                cached_input_tokens BIGINT NOT NULL,
                cache_write_tokens BIGINT NOT NULL,
                cache_write_1h_tokens BIGINT NOT NULL,
                reasoning_tokens BIGINT NOT NULL,
                cost_usd DOUBLE PRECISION,
                cache_hit INTEGER NOT NULL,
                exact INTEGER NOT NULL,
                cancelled INTEGER NOT NULL
            )""",
            "CREATE INDEX usage_records_ts ON usage_records (ts_us)",
            "CREATE INDEX usage_records_key ON usage_records (key_id, ts_us)",
        ),
    ),
)


class Ledger:
    """A bounded queue of records and the task that writes them."""

    def __init__(
        self,
        store: Store,
        *,
        max_queue: int = 100_000,
        batch: int = 1000,
        interval: float = 1.0,
        retry: float = 2.0,
    ) -> None:
        self.store = store
        self.max_queue = max_queue
        self.batch = batch
        self.interval = interval
        self.retry = retry
        self.queue: deque[Record] = deque()
        self.dropped = 0
        self.written = 0
        self._ready = False
        self._closing = False
        self._down: str | None = None  # why the store is unreachable, while it is
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def append(self, record: Record) -> None:
        queue = self.queue
        if len(queue) >= self.max_queue:
            self.dropped += 1
            return
        queue.append(record)
        if len(queue) == self.batch and self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="mini-llm usage ledger")

    async def _run(self) -> None:
        wake = self._wake
        assert wake is not None
        delay = self.interval
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), delay)
            wake.clear()
            ok = await self.flush()
            if self._closing:
                return
            delay = self.interval if ok else self.retry

    async def _open(self) -> None:
        if not self._ready:
            await self.store.open()
            await self.store.migrate("usage", MIGRATIONS)
            self._ready = True

    async def flush(self) -> bool:
        """Write everything queued; False when the store failed (what failed is kept)."""
        queue = self.queue
        while queue:
            rows = [queue.popleft() for _ in range(min(self.batch, len(queue)))]
            try:
                await self._open()
                await self.store.executemany(INSERT, rows)
            except StoreError as e:
                queue.extendleft(reversed(rows))
                excess = len(queue) - self.max_queue
                for _ in range(max(excess, 0)):
                    queue.pop()
                self.dropped += max(excess, 0)
                if self._down is None:
                    log.warning(
                        "usage store unreachable (%s): records wait in memory (at most %d), "
                        "more are dropped and counted",
                        e,
                        self.max_queue,
                    )
                self._down = str(e)
                return False
            self.written += len(rows)
            if self._down is not None:
                log.warning("usage store reachable again; %d records dropped so far", self.dropped)
                self._down = None
        return True

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is left (within `timeout`), count the rest as dropped, close the store."""
        self._closing = True
        task = self._task
        if task is not None and self._wake is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except asyncio.TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.queue:
            ok = await asyncio.wait_for(self.flush(), timeout) if task is None else False
            if not ok:
                self.dropped += len(self.queue)
                log.error("usage ledger: %d records could not be written", len(self.queue))
                self.queue.clear()
        with contextlib.suppress(StoreError):
            await self.store.close()
