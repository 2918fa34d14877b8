"""`SQLResponseStore` on both engines (a SQLite file, a real PostgreSQL): a record is readable at
once here and, once written, by another store on the same database; owners are kept apart;
expiry hides and the sweep purges; the per-owner bound; an unreachable store is a 503 for
reads while answers keep being stored here."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from mini_llm.errors import ServiceUnavailableError
from mini_llm.state.responses import StoredResponse
from mini_llm.state.sql_responses import WRITES, SQLResponseStore
from mini_llm.store import open_store, sqlite_url

from .access_helpers import new_database, postgres_url, shared_service
from .harness import LoopThread, gateway_settings, start_gateway

__all__ = ["postgres_url"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _record(ident: str, owner: str, expires_at: float, text: str = "hi") -> StoredResponse:
    return StoredResponse(
        ident,
        owner,
        {"id": ident, "object": "response", "output_text": text},
        [{"id": f"msg_{ident}", "type": "message", "role": "user", "content": text}],
        [{"role": "user", "content": text}, {"role": "assistant", "content": text}],
        expires_at,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(str(tmp_path / "mini-llm.db"))
    else:
        yield new_database(shared_service(request, "postgres_url"))


def _stores(url: str, clock: Clock, **options: Any) -> tuple[SQLResponseStore, SQLResponseStore]:
    """Two stores on one database: two gateway instances."""
    return (
        SQLResponseStore(open_store(url), 3600, clock=clock, **options),
        SQLResponseStore(open_store(url), 3600, clock=clock, **options),
    )


def _run(work: Callable[[], Any]) -> Any:
    return asyncio.run(work())


def test_a_record_is_read_here_at_once_and_elsewhere_once_written(database: str) -> None:
    clock = Clock()

    async def work() -> None:
        here, there = _stores(database, clock)
        writes: list[asyncio.Future[bool]] = []
        token = WRITES.set(writes)
        try:
            here.put(_record("resp_1", "key_a", clock.now + 60))
        finally:
            WRITES.reset(token)
        seen = await here.get("key_a", "resp_1")  # before the write finished
        assert seen is not None and seen.response["output_text"] == "hi"
        assert len(writes) == 1 and await writes[0] is True
        assert len(here) == 0  # written: nothing waits in memory any more
        got = await there.get("key_a", "resp_1")
        assert got is not None
        assert got.response == seen.response
        assert got.input_items == seen.input_items
        assert got.messages == seen.messages
        assert got.expires_at == clock.now + 60
        await here.close()
        await there.close()

    _run(work)


def test_owners_are_kept_apart_and_delete_is_shared(database: str) -> None:
    clock = Clock()

    async def work() -> None:
        here, there = _stores(database, clock)
        here.put(_record("resp_2", "key_a", clock.now + 60))
        assert await here.get("key_b", "resp_2") is None  # pending, another owner
        await here.close()  # the writes under way finish first
        assert await there.get("key_b", "resp_2") is None
        assert await there.delete("key_b", "resp_2") is False
        assert await there.get("key_a", "resp_2") is not None
        assert await there.delete("key_a", "resp_2") is True
        assert await there.delete("key_a", "resp_2") is False
        again = SQLResponseStore(open_store(database), 3600, clock=clock)
        assert await again.get("key_a", "resp_2") is None
        await again.close()
        await there.close()

    _run(work)


def test_expired_records_are_invisible_and_swept(database: str) -> None:
    clock = Clock()

    async def work() -> None:
        store, _ = _stores(database, clock)
        writes: list[asyncio.Future[bool]] = []
        token = WRITES.set(writes)
        store.put(_record("resp_old", "key_a", clock.now + 10))
        store.put(_record("resp_new", "key_a", clock.now + 100))
        WRITES.reset(token)
        await asyncio.gather(*writes)
        clock.now += 50
        assert await store.get("key_a", "resp_old") is None
        assert await store.delete("key_a", "resp_old") is False
        assert await store.get("key_a", "resp_new") is not None
        await store.sweep()
        rows = await store.store.fetch("SELECT id FROM stored_responses ORDER BY id")
        assert rows == [("resp_new",)]
        await store.close()

    _run(work)


def test_the_sweep_keeps_each_owners_newest_records(database: str) -> None:
    clock = Clock()

    async def work() -> None:
        store = SQLResponseStore(open_store(database), 3600, 3, clock=clock)
        for i in range(5):
            clock.now += 1  # created one after the other
            for owner in ("key_a", "key_b"):
                writes: list[asyncio.Future[bool]] = []
                token = WRITES.set(writes)
                store.put(_record(f"resp_{owner}_{i}", owner, clock.now + 600))
                WRITES.reset(token)
                await asyncio.gather(*writes)
        store.put(_record("resp_key_c_0", "key_c", clock.now + 600))  # waits: the sweep writes it
        assert len(store) == 1
        await store.sweep()
        assert len(store) == 0
        rows = await store.store.fetch("SELECT owner, id FROM stored_responses ORDER BY id")
        assert rows == [
            ("key_a", "resp_key_a_2"),
            ("key_a", "resp_key_a_3"),
            ("key_a", "resp_key_a_4"),
            ("key_b", "resp_key_b_2"),
            ("key_b", "resp_key_b_3"),
            ("key_b", "resp_key_b_4"),
            ("key_c", "resp_key_c_0"),
        ]
        await store.close()

    _run(work)


def test_an_unreachable_store_fails_reads_clearly_and_keeps_answers_here(tmp_path: Path) -> None:
    clock = Clock()
    # a directory where the file should be: SQLite cannot open it
    blocked = tmp_path / "blocked.db"
    blocked.mkdir()

    async def work() -> None:
        store = SQLResponseStore(open_store(sqlite_url(str(blocked))), 3600, clock=clock)
        writes: list[asyncio.Future[bool]] = []
        token = WRITES.set(writes)
        store.put(_record("resp_kept", "key_a", clock.now + 60))
        WRITES.reset(token)
        assert await asyncio.gather(*writes) == [False]
        kept = await store.get("key_a", "resp_kept")  # still served from this instance
        assert kept is not None and kept.ident == "resp_kept"
        with pytest.raises(ServiceUnavailableError) as caught:
            await store.get("key_a", "resp_elsewhere")
        error = caught.value
        assert error.http_status == 503 and error.code == "response_store_unavailable"
        assert str(blocked) not in error.message
        with pytest.raises(ServiceUnavailableError):
            await store.delete("key_a", "resp_elsewhere")
        assert await store.delete("key_a", "resp_kept") is True
        await store.close()

    _run(work)


def test_records_waiting_for_the_store_are_bounded(tmp_path: Path) -> None:
    clock = Clock()
    blocked = tmp_path / "blocked.db"
    blocked.mkdir()

    async def work() -> None:
        store = SQLResponseStore(
            open_store(sqlite_url(str(blocked))), 3600, clock=clock, max_pending=2
        )
        for i in range(4):
            store.put(_record(f"resp_{i}", "key_a", clock.now + 60))
        assert len(store) == 2 and store.dropped == 2
        assert await store.get("key_a", "resp_3") is not None
        await store.close()

    _run(work)


def test_records_kept_in_an_outage_are_written_by_the_sweep_once_it_is_over(
    tmp_path: Path,
) -> None:
    clock = Clock()
    path = tmp_path / "later.db"
    path.mkdir()  # unreachable until the directory goes

    async def work() -> None:
        store = SQLResponseStore(open_store(sqlite_url(str(path))), 3600, clock=clock)
        store.put(_record("resp_late", "key_a", clock.now + 60))
        await store.sweep()  # still down: it waits
        assert len(store) == 1
        path.rmdir()
        await store.sweep()
        assert len(store) == 0
        other = SQLResponseStore(open_store(sqlite_url(str(path))), 3600, clock=clock)
        assert await other.get("key_a", "resp_late") is not None
        await other.close()
        await store.close()

    _run(work)


@pytest.fixture
def slow_writes(monkeypatch: pytest.MonkeyPatch) -> float:
    """Every SQLite batch takes 0.3 s longer: an answer that did not wait for its write would
    reach the client before the row exists."""
    from mini_llm.store.sqlite import SQLiteStore

    delay = 0.3
    write = SQLiteStore.executemany

    async def slow(self: SQLiteStore, sql: str, rows: Any) -> None:
        await asyncio.sleep(delay)
        await write(self, sql, rows)

    monkeypatch.setattr(SQLiteStore, "executemany", slow)
    return delay


def test_the_answer_ends_only_once_its_response_is_written(
    loop_thread: LoopThread, tmp_path: Path, slow_writes: float
) -> None:
    env = {"MINI_LLM_DATA_DIR": str(tmp_path), "MINI_LLM_USAGE": "false"}
    gateway = start_gateway(loop_thread, gateway_settings(env))
    try:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="none", max_retries=0)

        def row(ident: str) -> list[Any]:
            with sqlite3.connect(tmp_path / "mini-llm.db") as db:
                return db.execute(
                    "SELECT owner FROM stored_responses WHERE id = ?", (ident,)
                ).fetchall()

        made = client.responses.create(model="mock/echo", input="whole")
        assert row(made.id) == [("",)]
        # the stream read raw, as it arrives (a client library may parse it late)
        body = json.dumps({"model": "mock/echo", "input": "streamed", "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as conn:
            conn.sendall(
                b"POST /v1/responses HTTP/1.1\r\nHost: gateway\r\n"
                b"Content-Type: application/json\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            while b"event: response.completed" not in received:
                data = conn.recv(65536)
                assert data, received
                received += data
        ident = re.search(rb'"id":"(resp_[0-9a-f]+)"', received)
        assert ident is not None
        assert row(ident.group(1).decode()) == [("",)]
    finally:
        gateway.stop()


def test_an_id_that_cannot_be_a_responses_is_not_found_and_breaks_nothing(database: str) -> None:
    """A NUL (GET /v1/responses/x%00y) made PostgreSQL refuse the statement, which marked the
    store down for everyone: such an id is now simply not found."""
    clock = Clock()

    async def work() -> None:
        here, there = _stores(database, clock)
        for ident in ("a\x00b", "", "x" * 300, "résumé"):
            assert await here.get("key_a", ident) is None
            assert await here.delete("key_a", ident) is False
        here.put(_record("resp_3", "key_a", clock.now + 60))
        await here.close()  # written: the store was never taken for down
        assert await there.get("key_a", "resp_3") is not None
        await there.close()

    _run(work)


def test_reads_while_the_store_cannot_be_opened_fail_at_once_not_in_turn() -> None:
    """Ten reads at once against a store whose connect takes 0.4 s and fails: one waits for
    the connect, the others fail with it instead of each trying in turn (4 s)."""
    from mini_llm.store import StoreError

    class Unreachable:
        engine = "postgresql"

        async def open(self) -> None:
            await asyncio.sleep(0.4)
            raise StoreError("connect failed")

        async def close(self) -> None:
            return None

    async def work() -> float:
        store = SQLResponseStore(Unreachable(), 3600)  # type: ignore[arg-type]
        began = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(store.get("key_a", f"resp_{n}") for n in range(10)), return_exceptions=True
        )
        elapsed = asyncio.get_running_loop().time() - began
        assert all(isinstance(r, ServiceUnavailableError) for r in results), results
        # once down, a read fails without trying (one probe at a time)
        quick = asyncio.get_running_loop().time()
        with pytest.raises(ServiceUnavailableError):
            await asyncio.gather(store.get("key_a", "resp_x"), store.get("key_a", "resp_y"))
        assert asyncio.get_running_loop().time() - quick < 0.6
        await store.close()
        return elapsed

    assert _run(work) < 1.5
