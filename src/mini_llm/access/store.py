"""Gateway keys and their spend in the SQL store (SQLite by default, PostgreSQL to share).

`KeyStore` owns two tables (component `access`, migrated at start-up): `gateway_keys` (one row
a key, its secret only as a SHA-256) and `key_spend` (USD settled per key and budget period,
so that a budget survives restarts and is shared by every instance on one database).
`KeyCache` is what the hot path reads: every key by hash, in a dict, reloaded from the store
every `refresh` seconds (0.5: a key revoked on one instance is refused by every other within
a second). While the store is unreachable the last copy keeps serving; one warning an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from ..store import Migration, Store, StoreError
from .keys import GatewayKey

__all__ = ["MIGRATIONS", "KeyCache", "KeyStore"]

log = logging.getLogger("mini_llm.access")

MIGRATIONS = (
    Migration(
        1,
        (
            "CREATE TABLE gateway_keys ("
            "id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, last4 TEXT NOT NULL, "
            "name TEXT NOT NULL, owner TEXT NOT NULL, team TEXT NOT NULL, "
            "metadata TEXT NOT NULL, models TEXT, rpm BIGINT, tpm BIGINT, "
            "max_concurrency BIGINT, budget_usd DOUBLE PRECISION, budget_period TEXT NOT NULL, "
            "expires_at DOUBLE PRECISION, enabled INTEGER NOT NULL, signing_secret TEXT, "
            "previous_hash TEXT, previous_until DOUBLE PRECISION NOT NULL, "
            "created_at DOUBLE PRECISION NOT NULL, revoked INTEGER NOT NULL, "
            "updated_at DOUBLE PRECISION NOT NULL)",
            "CREATE TABLE key_spend ("
            "key_id TEXT NOT NULL, period TEXT NOT NULL, usd DOUBLE PRECISION NOT NULL, "
            "PRIMARY KEY (key_id, period))",
        ),
    ),
)

_COLUMNS = (
    "id, hash, last4, name, owner, team, metadata, models, rpm, tpm, max_concurrency, "
    "budget_usd, budget_period, expires_at, enabled, signing_secret, previous_hash, "
    "previous_until, created_at, revoked"
)


def _row(key: GatewayKey) -> tuple[Any, ...]:
    return (
        key.id,
        key.hash,
        key.last4,
        key.name,
        key.owner,
        key.team,
        json.dumps(key.metadata),
        json.dumps(list(key.models)) if key.models is not None else None,
        key.rpm,
        key.tpm,
        key.max_concurrency,
        key.budget_usd,
        key.budget_period,
        key.expires_at,
        int(key.enabled),
        key.signing_secret,
        key.previous_hash,
        key.previous_until,
        key.created_at,
        int(key.revoked),
    )


def _key(row: Sequence[Any]) -> GatewayKey:
    models = json.loads(row[7]) if row[7] is not None else None
    return GatewayKey(
        id=row[0],
        hash=row[1],
        last4=row[2],
        name=row[3],
        owner=row[4],
        team=row[5],
        metadata=json.loads(row[6]),
        models=tuple(models) if models is not None else None,
        rpm=row[8],
        tpm=row[9],
        max_concurrency=row[10],
        budget_usd=row[11],
        budget_period=row[12],
        expires_at=row[13],
        enabled=bool(row[14]),
        signing_secret=row[15],
        previous_hash=row[16],
        previous_until=row[17] or 0.0,
        created_at=row[18],
        revoked=bool(row[19]),
    )


class KeyStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def open(self) -> None:
        await self.store.open()
        await self.store.migrate("access", MIGRATIONS)

    async def close(self) -> None:
        await self.store.close()

    async def all(self) -> list[GatewayKey]:
        rows = await self.store.fetch(f"SELECT {_COLUMNS} FROM gateway_keys ORDER BY created_at")
        return [_key(r) for r in rows]

    async def get(self, key_id: str) -> GatewayKey | None:
        rows = await self.store.fetch(
            f"SELECT {_COLUMNS} FROM gateway_keys WHERE id = ?", (key_id,)
        )
        return _key(rows[0]) if rows else None

    async def insert(self, key: GatewayKey) -> None:
        marks = ", ".join("?" * 21)
        await self.store.execute(
            f"INSERT INTO gateway_keys ({_COLUMNS}, updated_at) VALUES ({marks})",
            (*_row(key), time.time()),
        )

    async def save(self, key: GatewayKey) -> None:
        names = [c.strip() for c in _COLUMNS.split(",")][1:]
        sets = ", ".join(f"{n} = ?" for n in names)
        await self.store.execute(
            f"UPDATE gateway_keys SET {sets}, updated_at = ? WHERE id = ?",
            (*_row(key)[1:], time.time(), key.id),
        )

    async def add_spend(self, key_id: str, period: str, usd: float) -> None:
        await self.store.execute(
            "INSERT INTO key_spend (key_id, period, usd) VALUES (?, ?, ?) "
            "ON CONFLICT (key_id, period) DO UPDATE SET usd = key_spend.usd + excluded.usd",
            (key_id, period, usd),
        )

    async def spent(self, key_id: str, period: str) -> float:
        rows = await self.store.fetch(
            "SELECT usd FROM key_spend WHERE key_id = ? AND period = ?", (key_id, period)
        )
        return float(rows[0][0]) if rows else 0.0


class KeyCache:
    """Every key by the hash of its secret (and of its previous secret during a rotation's
    grace), reloaded every `refresh` seconds; a store outage keeps the last copy."""

    def __init__(self, keys: KeyStore, refresh: float = 0.5) -> None:
        self.keys = keys
        self.refresh = refresh
        self.by_hash: dict[str, GatewayKey] = {}
        self.by_id: dict[str, GatewayKey] = {}
        self.store_down = False
        self._task: asyncio.Task[None] | None = None

    def lookup(self, key_hash: str, now: float | None = None) -> GatewayKey | None:
        """The key whose secret (or previous secret, within its grace) has this hash; `now`
        (Unix seconds, read when None) matters only for a previous secret."""
        key = self.by_hash.get(key_hash)
        if (
            key is not None
            and key.hash != key_hash
            and (time.time() if now is None else now) >= key.previous_until
        ):
            return None  # a rotated-out secret past its grace
        return key

    def put(self, key: GatewayKey) -> None:
        """A key this instance just changed: in force here at once."""
        old = self.by_id.get(key.id)
        if old is not None:
            self.by_hash.pop(old.hash, None)
            if old.previous_hash:
                self.by_hash.pop(old.previous_hash, None)
        self._index(key, self.by_hash, self.by_id)

    @staticmethod
    def _index(
        key: GatewayKey, by_hash: dict[str, GatewayKey], by_id: dict[str, GatewayKey]
    ) -> None:
        by_id[key.id] = key
        by_hash[key.hash] = key
        if key.previous_hash and key.previous_until > time.time():
            by_hash[key.previous_hash] = key

    async def load(self) -> None:
        try:
            loaded = await self.keys.all()
        except StoreError as e:
            if not self.store_down:
                self.store_down = True
                log.warning("key store unreachable, serving the keys known: %s", e)
            return
        if self.store_down:
            self.store_down = False
            log.warning("key store reachable again")
        by_hash: dict[str, GatewayKey] = {}
        by_id: dict[str, GatewayKey] = {}
        for key in loaded:
            self._index(key, by_hash, by_id)
        self.by_hash, self.by_id = by_hash, by_id

    async def start(self) -> None:
        await self.load()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow())

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self.load()
            except Exception:  # never let the refresher die
                log.exception("reloading the gateway keys failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
