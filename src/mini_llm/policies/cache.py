"""The response cache: an identical request answered from a stored answer, in any dialect.

    before(info)   key the request (`cache/keys.py`); a stored answer is given back at once
                   (the pipeline renders it in the client's dialect, whole or streamed); else
                   the request goes upstream, and identical requests that arrive meanwhile
                   wait for its answer (single flight) rather than going upstream too
    after(info)    a complete, successful answer (`info.completion`) is stored, off the hot
                   path; the requests waiting for it are answered

Per request: `Cache-Control: no-cache` skips the lookup (the answer is still stored),
`no-store` skips both, `x-mini-llm-cache-ttl: S` keeps this answer S seconds (0: not stored).
Answers say `x-mini-llm-cache: hit | miss | skip`, hits also `x-mini-llm-cache-age`.

Single flight: in one process the first miss holds a future the others await; with a shared
store it also takes a lock key (TTL `wait`), and other instances poll for the answer. Either
way a waiter gives up after `wait` seconds and goes upstream itself.

A store that fails (Redis unreachable) makes the cache step aside: the request is served as if
the cache were off (`skip`), `counters.errors` counts it, a warning is logged once per outage
and a line when it is back. `counters` (hits, misses, skips, errors) is for the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ..cache.keys import cache_key
from ..cache.settings import CacheSettings
from ..cache.store import CachedAnswer, CacheStore
from ..errors import GatewayError, InvalidRequestError
from ..formats import CHAT, OPENAI_RESPONSES, RESPONSES
from .base import RequestInfo

if TYPE_CHECKING:
    from ..routing.router import Router

__all__ = ["CACHE_HEADER", "CacheCounters", "CachePolicy"]

log = logging.getLogger("mini_llm.cache")

CACHE_HEADER = "x-mini-llm-cache"
AGE_HEADER = "x-mini-llm-cache-age"
TTL_HEADER = "x-mini-llm-cache-ttl"

_NOTE = "cache"
_POLL = 0.05  # seconds between looks at a shared store while another instance answers
_ROUTES_KEPT = 4096
_SEEN_KEPT = 1024  # bodies whose key is remembered, of at most _SEEN_BODY_MAX bytes each
_SEEN_BODY_MAX = 8192
_encode = msgspec.json.encode


@dataclass(slots=True)
class CacheCounters:
    """Counts since start-up (kept across hot reloads), for the metrics."""

    hits: int = 0
    misses: int = 0
    skips: int = 0
    errors: int = 0


@dataclass(slots=True)
class _Note:
    key: str
    ttl: float
    leader: asyncio.Future[dict[str, Any] | None] | None = None
    locked: bool = False


class CachePolicy:
    wants_usage = False
    wants_completion = True
    wants_cost = False  # it stores answers, not what they cost (no cost header on its account)

    def __init__(
        self,
        store: CacheStore,
        router: Router,
        options: CacheSettings | None = None,
        counters: CacheCounters | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.options = options or CacheSettings(enabled="on")
        self.counters = counters if counters is not None else CacheCounters()
        self._router = router
        self._exclude = frozenset(self.options.exclude)
        self._clock = clock
        self._models: dict[str, tuple[str, ...] | None] = {}
        self._keys: dict[tuple[str, str, bytes, tuple[str, ...], str], str] = {}
        self._flying: dict[str, asyncio.Future[dict[str, Any] | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._down = False
        # a store that answers without awaiting (memory): looked up without a coroutine
        self._get_now: Callable[[str], CachedAnswer | None] | None = getattr(store, "get_now", None)

    # before ------------------------------------------------------------------------------

    async def before(self, info: RequestInfo) -> CachedAnswer | None:
        call = info.call
        if call is None or not (call.operation is CHAT or call.operation is RESPONSES):
            return None
        headers = info.headers
        control = headers.get("cache-control")
        lookup, store = _directives(control) if control else _LOOK_AND_STORE
        models = self._models.get(call.model, _UNSEEN) if store else None
        if models is _UNSEEN:
            models = self._resolved(call.model)
        if models is None or (call.format is OPENAI_RESPONSES and _refers_elsewhere(call)):
            self._skip(info)
            return None
        ttl_given = headers.get(TTL_HEADER)
        ttl = self.options.ttl if ttl_given is None else _ttl(ttl_given, self.options.ttl)
        namespace = "" if self.options.share else info.owner
        raw = call.raw
        # the key of these very bytes, worked out before: the body, and so its canonical
        # form, is the same (what else decides the key is part of `seen`)
        # (a body too big to be remembered is not hashed to be looked up either)
        seen = (
            (info.dialect, call.model, raw, models, namespace)
            if raw and len(raw) <= _SEEN_BODY_MAX
            else None
        )
        key = self._keys.get(seen) if seen is not None else None
        if key is None:
            try:
                canonical = call.canonical()
            except GatewayError:
                self._skip(info)
                return None  # the pipeline says what is wrong, if anything
            key = cache_key(canonical, models, namespace)
            if seen is not None:
                self._remember(seen, key)
        note: _Note | None = None
        try:
            if lookup:
                get_now = self._get_now
                found = get_now(key) if get_now is not None else await self.store.get(key)
                if found is not None:
                    return self._hit(info, found)
                note = _Note(key, ttl)
                found = await self._wait(note)
                if found is not None:
                    return self._hit(info, found)
            if note is None:
                note = _Note(key, ttl)
            if key not in self._flying:
                note.leader = self._flying[key] = asyncio.get_running_loop().create_future()
        except Exception as e:  # the store is unreachable: as if the cache were off
            self._failed(e)
            self._skip(info)
            return None
        self._up()
        info.notes[_NOTE] = note
        info.response_headers[CACHE_HEADER] = "miss"
        info.cache_hit = False  # looked, not found (None: not looked at all)
        self.counters.misses += 1
        return None

    async def _wait(self, note: _Note) -> CachedAnswer | None:
        """Not stored: the answer of an identical request under way (here, or at another
        instance of a shared store), for at most `wait` seconds."""
        flying = self._flying.get(note.key)
        if flying is not None:
            try:
                completion = await asyncio.wait_for(asyncio.shield(flying), self.options.wait)
            except asyncio.TimeoutError:
                return None
            return CachedAnswer(_encode(completion), self._clock()) if completion else None
        if self.store.shared:
            note.locked = await self.store.lock(note.key, self.options.wait)
            if not note.locked:
                return await self._poll(note.key)
        return None

    async def _poll(self, key: str) -> CachedAnswer | None:
        give_up = time.monotonic() + self.options.wait
        while time.monotonic() < give_up:
            await asyncio.sleep(_POLL)
            found = await self.store.get(key)
            if found is not None:
                return found
        return None

    def _hit(self, info: RequestInfo, found: CachedAnswer) -> CachedAnswer:
        if self._down:
            self._up()
        self.counters.hits += 1
        info.cache_hit = True
        age = int(self._clock() - found.stored_at)
        headers = info.response_headers
        headers[CACHE_HEADER] = "hit"
        headers[AGE_HEADER] = str(age) if age > 0 else "0"
        return found

    def _remember(self, seen: tuple[str, str, bytes, tuple[str, ...], str], key: str) -> None:
        keys = self._keys
        if len(keys) >= _SEEN_KEPT:
            del keys[next(iter(keys))]  # the oldest
        keys[seen] = key

    def _skip(self, info: RequestInfo) -> None:
        self.counters.skips += 1
        info.response_headers[CACHE_HEADER] = "skip"

    def _resolved(self, name: str) -> tuple[str, ...] | None:
        """The models `name` resolves to (target labels); None when the cache leaves it
        alone (excluded, or a name the router refuses: the pipeline says why)."""
        if name in self._models:
            return self._models[name]
        models: tuple[str, ...] | None
        try:
            route = self._router.route(name)
        except GatewayError:
            return None
        targets = [t for group in route.groups for t in group.targets]
        models = tuple(t.label for t in targets)
        names = {name, *models, *(t.model for t in targets)}
        if names & self._exclude:
            models = None
        if len(self._models) >= _ROUTES_KEPT:
            self._models.clear()
        self._models[name] = models
        return models

    # after -------------------------------------------------------------------------------

    def after(self, info: RequestInfo) -> None:
        note = info.notes.get(_NOTE)
        if not isinstance(note, _Note):
            return
        completion = info.completion if info.status == 200 else None
        if note.leader is not None:
            if self._flying.get(note.key) is note.leader:
                del self._flying[note.key]
            if not note.leader.done():
                note.leader.set_result(completion)
        if completion is not None and note.ttl > 0:
            if not completion.get("created"):
                completion["created"] = int(self._clock())
            self._spawn(self._store(note, completion))
        elif note.locked:
            self._spawn(self._unlock(note.key))

    async def _store(self, note: _Note, completion: dict[str, Any]) -> None:
        try:
            await self.store.put(note.key, completion, note.ttl)
            if note.locked:
                await self.store.unlock(note.key)
        except Exception as e:
            self._failed(e)

    async def _unlock(self, key: str) -> None:
        try:
            await self.store.unlock(key)
        except Exception as e:
            self._failed(e)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # outages -----------------------------------------------------------------------------

    def _failed(self, error: Exception) -> None:
        self.counters.errors += 1
        if not self._down:
            self._down = True
            log.warning("response cache unreachable, bypassed until it is back: %s", error)

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.warning("response cache reachable again")


_LOOK_AND_STORE = (True, True)
_UNSEEN: Any = object()


def _directives(value: str) -> tuple[bool, bool]:
    """(look up, store) for a `Cache-Control` request header."""
    if not value:
        return _LOOK_AND_STORE
    tokens = {part.strip().lower() for part in value.split(",")}
    if "no-store" in tokens:
        return False, False
    return "no-cache" not in tokens, True


def _ttl(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        ttl = float(value)
    except ValueError:
        ttl = -1.0
    if not 0 <= ttl < float("inf"):
        raise InvalidRequestError(
            f"{TTL_HEADER} must be a number of seconds, 0 or more.", code="invalid_cache_ttl"
        )
    return ttl


def _refers_elsewhere(call: Any) -> bool:
    """A request that continues a conversation kept elsewhere (a Responses request with
    `previous_response_id`): its body alone does not decide the answer."""
    return call.format is OPENAI_RESPONSES and bool(call.body.get("previous_response_id"))
