"""SQLite from the standard library, off the event loop: one connection, owned by one thread
(every call runs there), in WAL mode so readers (`mini-llm usage`) never wait for the writer."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .base import SCHEMA_VERSIONS, Migration, StoreError, pending

__all__ = ["SQLiteStore"]

T = TypeVar("T")


class SQLiteStore:
    engine = "sqlite"

    def __init__(self, path: str) -> None:
        self.where = path
        self._path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="mini-llm-sqlite")
        self._db: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._db is None:
                raise StoreError(f"the store {self.where} is not open")
            try:
                return work(self._db)
            except sqlite3.Error as e:
                raise StoreError(f"{self.where}: {e}") from e

        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def open(self) -> None:
        def connect() -> None:
            if self._db is not None:
                return
            try:
                if self._path != ":memory:":
                    Path(self._path).parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self._path, isolation_level=None, timeout=10)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA busy_timeout=10000")
            except (OSError, sqlite3.Error) as e:
                raise StoreError(f"cannot open {self.where}: {e}") from e
            self._db = db

        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        def apply(db: sqlite3.Connection) -> int:
            db.execute(SCHEMA_VERSIONS)
            db.execute("BEGIN IMMEDIATE")  # one process migrates at a time
            try:
                row = db.execute(
                    "SELECT version FROM schema_versions WHERE component = ?", (component,)
                ).fetchone()
                current = int(row[0]) if row else 0
                for step in pending(migrations, current):
                    for statement in step.statements:
                        db.execute(statement)
                    current = step.version
                db.execute(
                    "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    (component, current),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return current

        return await self._run(apply)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self._run(lambda db: db.execute(sql, tuple(params)))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN")
            try:
                db.executemany(sql, rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(write)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._run(lambda db: db.execute(sql, tuple(params)).fetchall())

    async def close(self) -> None:
        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, shut)
        finally:
            self._thread.shutdown(wait=False)
