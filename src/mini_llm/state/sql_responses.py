"""Stored responses in the SQL store (SQLite by default, PostgreSQL shared by many instances).

`SQLResponseStore` owns one table (component `responses`, migrated when first used):
`stored_responses` — one row a response: `id`, `owner`, `created_at`, `expires_at` and `body`,
the response, its input items and its conversation as zlib-compressed JSON.

`put` is synchronous (the dialect calls it as the answer is rendered): the record goes into a
map of this instance's records not yet written, where `get` finds it at once, and onto the
queue of one writer task, which writes what has queued up in one statement batch (one
transaction: the records of concurrent requests share a commit). Whoever must know the row is
written (the gateway, before the client has the end of its answer, so that another instance
can read it) collects the writes' futures through `WRITES` and awaits them. A write that
fails (the store unreachable) keeps the record in the map, at most `max_pending` of them; until
the store answers again (a read, or a sweep: every `RETRY` seconds then), later records are
only kept (an answer never waits for a store known to be down), and then all are written.
Reads that reach the store while it is unreachable raise `ServiceUnavailableError` (503 in the
client's shape).

The sweep (every `sweep` seconds, on each instance) writes what is left, deletes expired rows
(`get` never returns one, swept or not) and, for an owner with more than `limit` rows, the
oldest beyond the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import msgspec

from ..errors import ServiceUnavailableError
from ..store import Migration, Store, StoreError
from .responses import DEFAULT_TTL, StoredResponse

__all__ = ["DEFAULT_PER_OWNER", "WRITES", "SQLResponseStore", "migrations"]

log = logging.getLogger("mini_llm.responses")

DEFAULT_PER_OWNER = 100_000
"""Rows one owner keeps at most (the oldest beyond go at the next sweep)."""

RETRY = 5.0
"""Seconds between sweeps while the store is unreachable."""

WRITES: ContextVar[list[asyncio.Future[bool]] | None] = ContextVar(
    "mini_llm_response_writes", default=None
)
"""Set to a list by whoever wants to await the writes `put` starts in its context."""


def migrations(engine: str) -> tuple[Migration, ...]:
    """The table for `engine`: the one column type the two engines spell differently."""
    blob = "BYTEA" if engine == "postgresql" else "BLOB"
    return (
        Migration(
            1,
            (
                "CREATE TABLE stored_responses ("
                "id TEXT PRIMARY KEY, owner TEXT NOT NULL, "
                "created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION NOT NULL, "
                f"body {blob} NOT NULL)",
                "CREATE INDEX stored_responses_expiry ON stored_responses (expires_at)",
                "CREATE INDEX stored_responses_owner ON stored_responses (owner, created_at)",
            ),
        ),
    )


_UPSERT = (
    "INSERT INTO stored_responses (id, owner, created_at, expires_at, body) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, "
    "created_at = excluded.created_at, expires_at = excluded.expires_at, body = excluded.body"
)


class _Body(msgspec.Struct, array_like=True):
    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    messages: list[dict[str, Any]]


_decode_body = msgspec.json.Decoder(_Body).decode


def _pack(record: StoredResponse) -> bytes:
    data = msgspec.json.encode(_Body(record.response, record.input_items, record.messages))
    return zlib.compress(data, 1)


def _plausible(ident: str) -> bool:
    """An id that could be a stored response's (they are short, printable ASCII)."""
    return 0 < len(ident) <= 256 and ident.isascii() and ident.isprintable()


def _unpack(ident: str, owner: str, expires_at: float, body: bytes) -> StoredResponse:
    data = _decode_body(zlib.decompress(body))
    return StoredResponse(ident, owner, data.response, data.input_items, data.messages, expires_at)


def _unreachable() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "Stored responses cannot be read now: the gateway's response store is unreachable. "
        "Try again shortly, or send the whole conversation without previous_response_id.",
        code="response_store_unavailable",
    )


class SQLResponseStore:
    def __init__(
        self,
        store: Store,
        ttl: float = DEFAULT_TTL,
        limit: int = DEFAULT_PER_OWNER,
        *,
        sweep: float = 60.0,
        max_pending: int = 10_000,
        batch: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.limit = limit
        self.sweep_every = sweep
        self.max_pending = max_pending
        self.batch = batch
        self.dropped = 0
        """Records never written: more than `max_pending` waited for an unreachable store."""
        self._clock = clock
        self._pending: dict[str, StoredResponse] = {}
        self._writing: dict[str, asyncio.Future[bool]] = {}
        """The latest write of each record queued or under way: True once written."""
        self._queue: list[tuple[StoredResponse, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._ready = False
        self._lock: asyncio.Lock | None = None
        self._down = False
        self._probing = False
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Records not yet written."""
        return len(self._pending)

    async def _open(self, probing: bool = True) -> None:
        """Open the store once. A read that waited here while another's attempt failed
        (`probing` False) fails at once rather than waiting out a connect timeout of its own."""
        if self._ready:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self._ready:
                if self._down and not probing:
                    raise StoreError("the response store is unreachable")
                await self.store.open()
                await self.store.migrate("responses", migrations(self.store.engine))
                self._ready = True

    def start(self) -> None:
        """Begin the periodic sweep (the gateway's start-up)."""
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweeping(), name="mini-llm responses sweep")

    def put(self, record: StoredResponse) -> None:
        pending = self._pending
        pending.pop(record.ident, None)
        while len(pending) >= self.max_pending:
            del pending[next(iter(pending))]
            self.dropped += 1
        pending[record.ident] = record
        if self._down:  # no write, and nobody waits: written once the store is back
            return
        written = self._enqueue(record)
        writes = WRITES.get()
        if writes is not None:
            writes.append(written)

    def _enqueue(self, record: StoredResponse) -> asyncio.Future[bool]:
        loop = asyncio.get_running_loop()
        written: asyncio.Future[bool] = loop.create_future()
        self._queue.append((record, written))
        self._writing[record.ident] = written
        written.add_done_callback(lambda done: self._written(record.ident, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_queue(), name="mini-llm responses writer")
        return written

    def _written(self, ident: str, written: asyncio.Future[bool]) -> None:
        if self._writing.get(ident) is written:
            del self._writing[ident]

    async def _write_queue(self) -> None:
        """Everything queued, a batch at a time (what queues meanwhile goes in the next)."""
        while self._queue:
            batch, self._queue = self._queue[: self.batch], self._queue[self.batch :]
            ok = False
            try:
                ok = await self._write([record for record, _ in batch])
            finally:  # a cancelled writer (the loop closing) leaves no write awaited forever
                for _, written in batch:
                    if not written.done():
                        written.set_result(ok)

    async def _write(self, records: list[StoredResponse]) -> bool:
        now = self._clock()
        rows = [(r.ident, r.owner, now, r.expires_at, _pack(r)) for r in records]
        try:
            await self._open()
            await self.store.executemany(_UPSERT, rows)
        except StoreError as e:
            self._outage(e)
            return False
        pending = self._pending
        for record in records:
            if pending.get(record.ident) is record:
                del pending[record.ident]
        self._back()
        return True

    def _outage(self, error: StoreError) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "response store unreachable (%s): responses wait in memory (at most %d) and "
                "stored ones cannot be read",
                error,
                self.max_pending,
            )

    def _back(self) -> None:
        if self._down:
            self._down = False
            log.warning("response store reachable again (%d responses dropped)", self.dropped)
            for record in list(self._pending.values()):  # what waited, written now
                if record.ident not in self._writing:
                    self._enqueue(record)

    def _probe(self) -> bool:
        """While the store is down one request at a time tries it (True: this one; its answer
        ends the outage), the others fail at once instead of each waiting for a connect
        timeout behind it."""
        if not self._down:
            return False
        if self._probing:
            raise _unreachable()
        self._probing = True
        return True

    def _mine(self, owner: str, ident: str) -> StoredResponse | None:
        record = self._pending.get(ident)
        if record is None or record.owner != owner or record.expires_at <= self._clock():
            return None
        return record

    async def get(self, owner: str, ident: str) -> StoredResponse | None:
        if not _plausible(ident):
            return None  # never ours; and a NUL would make PostgreSQL refuse the statement
        record = self._mine(owner, ident)
        if record is not None:
            return record
        probing = self._probe()
        try:
            await self._open(probing)
            rows = await self.store.fetch(
                "SELECT expires_at, body FROM stored_responses "
                "WHERE id = ? AND owner = ? AND expires_at > ?",
                (ident, owner, self._clock()),
            )
        except StoreError as e:
            self._outage(e)
            raise _unreachable() from e
        finally:
            if probing:
                self._probing = False
        self._back()
        if not rows:
            return None
        expires_at, body = rows[0]
        return _unpack(ident, owner, float(expires_at), bytes(body))

    async def delete(self, owner: str, ident: str) -> bool:
        if not _plausible(ident):
            return False
        writing = self._writing.get(ident)
        if writing is not None:  # else the write could land after the delete
            await asyncio.shield(writing)
        here = self._mine(owner, ident) is not None
        if here:
            del self._pending[ident]
        try:
            probing = self._probe()
        except ServiceUnavailableError:
            if here:
                return True
            raise
        try:
            await self._open(probing)
            rows = await self.store.fetch(
                "DELETE FROM stored_responses WHERE id = ? AND owner = ? AND expires_at > ? "
                "RETURNING id",
                (ident, owner, self._clock()),
            )
        except StoreError as e:
            self._outage(e)
            if here:
                return True
            raise _unreachable() from e
        finally:
            if probing:
                self._probing = False
        self._back()
        return here or bool(rows)

    async def sweep(self) -> None:
        """Write what waits, delete expired rows and each owner's rows beyond `limit`."""
        if self._writing:
            await asyncio.wait(list(self._writing.values()), timeout=30)
        waiting = [r for r in self._pending.values() if r.ident not in self._writing]
        for start in range(0, len(waiting), self.batch):
            # only what still waits: once the store is back, the writer takes the rest, and a
            # record deleted meanwhile must not be written again
            batch = [
                r
                for r in waiting[start : start + self.batch]
                if self._pending.get(r.ident) is r and r.ident not in self._writing
            ]
            if batch and not await self._write(batch):
                return
        store = self.store
        await self._open()
        await store.execute("DELETE FROM stored_responses WHERE expires_at <= ?", (self._clock(),))
        self._back()
        crowded = await store.fetch(
            "SELECT owner FROM stored_responses GROUP BY owner HAVING COUNT(*) > ?",
            (self.limit,),
        )
        for (owner,) in crowded:
            await store.execute(
                "DELETE FROM stored_responses WHERE owner = ? AND id NOT IN ("
                "SELECT id FROM stored_responses WHERE owner = ? "
                "ORDER BY created_at DESC LIMIT ?)",
                (owner, owner, self.limit),
            )

    async def _sweeping(self) -> None:
        """A sweep every `sweep_every` seconds; every `RETRY` seconds while the store is down
        (the first that succeeds ends the outage: records are written one by one again)."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(self.sweep_every, RETRY))
            due = time.monotonic() - last >= self.sweep_every
            if not (due or self._down):
                continue
            try:
                await self.sweep()
            except StoreError as e:
                self._outage(e)
            if due:
                last = time.monotonic()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the sweep, finish the writes under way, try once more what waits, close."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        if self._writing:
            await asyncio.wait(list(self._writing.values()), timeout=timeout)
        if self._pending:  # also after an outage: the store may be back
            with contextlib.suppress(asyncio.TimeoutError, StoreError):
                await asyncio.wait_for(self.sweep(), timeout)
        if self._pending:
            log.error("response store: %d responses could not be written", len(self._pending))
            self._pending.clear()
        with contextlib.suppress(StoreError):
            await self.store.close()
