"""The SQL store seam: one small async interface over SQLite (default) and PostgreSQL.

    open()                      connect (and create the file); may raise StoreError
    migrate(component, steps)   apply a component's numbered migrations not yet applied
    execute / executemany       statements with `?` placeholders (rewritten per engine)
    fetch                       rows as tuples
    close()

SQL given to a store is the portable subset both engines read alike: `TEXT`, `INTEGER`,
`BIGINT`, `DOUBLE PRECISION`, `?` placeholders, no engine-specific functions. Each component
(the usage ledger, later the gateway keys) owns its tables and its list of `Migration`s; the
store keeps one row per component in `schema_versions` and applies, in one transaction per
step, every migration above the recorded version.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["SCHEMA_VERSIONS", "Migration", "Store", "StoreError", "pending"]

SCHEMA_VERSIONS = (
    "CREATE TABLE IF NOT EXISTS schema_versions ("
    "component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)


class StoreError(Exception):
    """The store could not be reached or refused a statement (the cause is chained)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """Version `version` of a component's schema: statements run in order, in one
    transaction, after every lower version."""

    version: int
    statements: tuple[str, ...]


def pending(migrations: Sequence[Migration], current: int) -> list[Migration]:
    """The migrations above `current`, in order; versions must be 1, 2, 3…"""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1..n in order, got {versions}")
    return [m for m in migrations if m.version > current]


class Store(Protocol):
    engine: str
    """"sqlite" or "postgresql"."""
    where: str
    """Where it is, for messages (a path, or a URL without its password)."""

    async def open(self) -> None: ...

    async def migrate(self, component: str, migrations: Sequence[Migration]) -> int:
        """Apply what is pending; the component's version afterwards."""
        ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def close(self) -> None: ...
