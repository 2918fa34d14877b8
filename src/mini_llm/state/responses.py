"""Stored responses: what `POST /v1/responses` keeps (when `store` is true) for
`GET/DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` and
`previous_response_id`, for providers that do not keep them themselves.

The seam is `ResponseStore`: `put` (visible to `get` at once: the SQL store, `sql_responses.py`,
keeps what it has not written yet in memory and writes behind), `get`, `delete`, `close`. Every
record belongs to an owner (the caller's gateway key id; `""` for the master key and when auth
is off): an owner sees only its own. `MemoryResponseStore` (`[responses] store = "memory"`) is
bounded in records and in time, and lives and dies with its process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_TTL",
    "MemoryResponseStore",
    "ResponseStore",
    "StoredResponse",
]

DEFAULT_TTL = 30 * 24 * 3600.0
"""How long a stored response is kept: 30 days, as OpenAI keeps them."""
DEFAULT_LIMIT = 10_000
"""Records the memory store keeps at most (the oldest go first)."""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    ident: str
    owner: str
    response: dict[str, Any]
    """The response object, as the client got it."""
    input_items: list[dict[str, Any]]
    """The request's input, as items with ids (`GET .../input_items`)."""
    messages: list[dict[str, Any]]
    """The conversation up to and including this response, as canonical chat messages
    (instructions excluded: they do not carry over), for `previous_response_id`."""
    expires_at: float


class ResponseStore(Protocol):
    ttl: float
    """Seconds a record is kept (its `expires_at` is set from it when it is made)."""

    def put(self, record: StoredResponse) -> None:
        """Keep `record`; a `get` right after must find it."""
        ...

    async def get(self, owner: str, ident: str) -> StoredResponse | None:
        """The owner's record, if it is there and has not expired."""
        ...

    async def delete(self, owner: str, ident: str) -> bool:
        """Whether the owner's record was there (and is now gone)."""
        ...

    async def close(self) -> None: ...


class MemoryResponseStore:
    """Records in one dict, oldest first; expired ones are dropped when met, and the oldest
    when the limit is reached. Nothing here awaits, so every operation is atomic."""

    def __init__(
        self,
        ttl: float = DEFAULT_TTL,
        limit: int = DEFAULT_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self._limit = limit
        self._clock = clock
        self._records: dict[tuple[str, str], StoredResponse] = {}

    def __len__(self) -> int:
        return len(self._records)

    def put(self, record: StoredResponse) -> None:
        records = self._records
        key = (record.owner, record.ident)
        records.pop(key, None)
        while len(records) >= self._limit:
            del records[next(iter(records))]
        records[key] = record
        self._sweep()

    def _sweep(self) -> None:
        """Drop expired records from the oldest end (records are kept in insertion order)."""
        now = self._clock()
        records = self._records
        while records:
            key = next(iter(records))
            if records[key].expires_at > now:
                break
            del records[key]

    async def get(self, owner: str, ident: str) -> StoredResponse | None:
        record = self._records.get((owner, ident))
        if record is None:
            return None
        if record.expires_at <= self._clock():
            del self._records[(owner, ident)]
            return None
        return record

    async def delete(self, owner: str, ident: str) -> bool:
        record = self._records.pop((owner, ident), None)
        return record is not None and record.expires_at > self._clock()

    async def close(self) -> None:
        self._records.clear()
