"""PostgreSQL through asyncpg (the optional extra `mini-llm[postgres]`): a small pool; `?`
placeholders become `$1, $2…`; migrations take a transaction-scoped advisory lock, so that
instances starting together migrate one after the other."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .base import SCHEMA_VERSIONS, Migration, StoreError, pending

__all__ = ["PostgresStore", "numbered", "safe_url"]

_MARK = re.compile(r"\?")


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$n` (our SQL has no `?` inside literals)."""
    count = 0

    def next_mark(match: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return f"${count}"

    return _MARK.sub(next_mark, sql)


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore:
    engine = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 5.0) -> None:
        self.where = safe_url(url)
        self._url = url
        self._pool_size = pool_size
        self._timeout = timeout
        self._pool: Any = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            import asyncpg
        except ImportError:
            raise StoreError("PostgreSQL needs asyncpg: pip install 'mini-llm[postgres]'") from None
        try:
            self._pool = await asyncpg.create_pool(
                self._url,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._timeout,
                command_timeout=self._timeout * 6,
            )
        except Exception as e:
            raise StoreError(f"cannot reach {self.where}: {e}") from e

    def _ready(self) -> Any:
        if self._pool is None:
            raise StoreError(f"the store {self.where} is not open")
        return self._pool

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        pool = self._ready()
        try:
            async with pool.acquire() as db, db.transaction():
                await db.execute("SELECT pg_advisory_xact_lock($1)", zlib.crc32(b"mini-llm schema"))
                await db.execute(SCHEMA_VERSIONS)
                row = await db.fetchrow(
                    "SELECT version FROM schema_versions WHERE component = $1", component
                )
                current = int(row[0]) if row else 0
                for step in pending(migrations, current):
                    for statement in step.statements:
                        await db.execute(statement)
                    current = step.version
                await db.execute(
                    "INSERT INTO schema_versions (component, version) VALUES ($1, $2) "
                    "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                    component,
                    current,
                )
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"{self.where}: {e}") from e
        return current

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        try:
            await self._ready().execute(numbered(sql), *params)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"{self.where}: {e}") from e

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            await self._ready().executemany(numbered(sql), [tuple(r) for r in rows])
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"{self.where}: {e}") from e

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            records = await self._ready().fetch(numbered(sql), *params)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"{self.where}: {e}") from e
        return [tuple(r) for r in records]

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except Exception:  # a pool whose server went away closes anyway
                pool.terminate()
