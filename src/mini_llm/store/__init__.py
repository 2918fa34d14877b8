"""The SQL store: the usage ledger (and later the gateway keys) in SQLite by default, in
PostgreSQL for many instances (`MINI_LLM_DATABASE_URL=postgresql://…`)."""

from __future__ import annotations

import os

from .base import Migration, Store, StoreError

__all__ = ["Migration", "Store", "StoreError", "open_store", "sqlite_url"]


def sqlite_url(path: str) -> str:
    """The URL of a SQLite file (made absolute)."""
    return "sqlite:///" + os.path.abspath(path).lstrip("/")


def open_store(url: str) -> Store:
    """A store for `url` (`sqlite:///abs/path.db`, `sqlite:///:memory:`, `postgresql://…`),
    not yet opened."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        path = url.removeprefix("sqlite:///")
        return SQLiteStore(path if path == ":memory:" else "/" + path.lstrip("/"))
    raise StoreError(f"unknown database URL {url!r}: use sqlite:///path or postgresql://…")
