"""`POST /v1/responses` around the pipeline, `GET` and `DELETE /v1/responses/{id}`,
`GET /v1/responses/{id}/input_items`.

A response the gateway stored (one a translated provider answered) is served from the store,
to its owner only. Any other id goes to the first configured provider that serves the
Responses API itself (OpenAI keeps its own responses), as it is; with none, it is a 404.

The owner is the caller's gateway key id; the master key, and every caller when auth is off,
is the owner `""`: the master key sees its own stored responses, not those of gateway keys.
A stored response is written before the client has the end of its answer (the body of a
whole answer, the `response.completed` event of a stream), so that a follow-up sent to
another instance finds it; a store that does not answer within `WRITE_WAIT` seconds does not
hold the answer back any longer (the response is then kept on this instance until written).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from ..dialects.base import LastEvents
from ..dialects.openai_chat import OPENAI_CHAT
from ..dialects.openai_responses import OWNER, OpenAIResponsesDialect, ResponsesCall
from ..errors import GatewayError, InvalidRequestError, NotFoundError
from ..formats import OPENAI_RESPONSES, RESPONSES
from ..policies.auth import NOTES
from ..providers.base import UpstreamRequest, native_format
from ..routing.provider import Provider
from ..state.responses import MemoryResponseStore, ResponseStore, StoredResponse
from ..state.sql_responses import WRITES, SQLResponseStore
from ..store import StoreError, open_store
from ..upstream import upstream_failure
from .responses import error_response, request_id

if TYPE_CHECKING:
    from ..call import Answer, Call
    from ..config import Settings
    from .app import Runtime
    from .pipeline import Pipeline

__all__ = ["WRITE_WAIT", "OwnedResponsesDialect", "StoredResponses", "owner_of", "response_store"]

log = logging.getLogger("mini_llm.gateway")

_encode = msgspec.json.encode
_JSON = "application/json"

WRITE_WAIT = 2.0
"""Seconds an answer waits at most for its response to be written."""

_CALLER: ContextVar[str] = ContextVar("mini_llm_responses_owner", default=OWNER)

# The SSE line that ends a stored stream (an event's JSON never holds a raw newline).
_LAST_EVENTS = (b"event: response.completed\n", b"event: response.incomplete\n")


def owner_of(request: web.Request) -> str:
    """Whose stored responses the request sees: its gateway key's id; `""` for the master key
    and when auth is off."""
    notes = request.get(NOTES)
    key = notes.get("key") if notes else None
    return str(key.id) if key is not None else OWNER


def response_store(settings: Settings) -> ResponseStore:
    """The store `[responses] store` names: the SQL store (the SQLite file in the data
    directory, or `MINI_LLM_DATABASE_URL`), else memory (also when no data directory is
    known, said once in the log)."""
    url = settings.store_url() if settings.responses_store == "sql" else None
    if settings.responses_store == "sql" and url is None:
        log.warning("stored responses in memory: no data directory (set MINI_LLM_DATA_DIR)")
    if url is not None:
        try:
            return SQLResponseStore(
                open_store(url), settings.responses_ttl, settings.responses_per_owner
            )
        except StoreError as e:
            log.error("stored responses in memory: %s", e)
    return MemoryResponseStore(settings.responses_ttl)


async def _written(writes: list[asyncio.Future[bool]]) -> None:
    if writes:
        await asyncio.wait(writes, timeout=WRITE_WAIT)
        writes.clear()


class OwnedResponsesDialect(OpenAIResponsesDialect):
    """The Responses dialect with the caller as owner, whose stream's last event waits for
    the response to be written."""

    def parse(self, body: dict[str, Any], headers: Any) -> Call:
        call = super().parse(body, headers)
        if isinstance(call, ResponsesCall):
            call.owner = _CALLER.get()
        return call

    def events(
        self, call: Call, answer: Answer, chunks: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncIterator[bytes]:
        events = super().events(call, answer, chunks)
        if isinstance(call, ResponsesCall) and call.stored:
            return _last_event_written(events)
        return events  # nothing to write: the events as they are, no layer between


async def _last_event_written(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The events, the last one (`response.completed` or `.incomplete`, and what follows it)
    held back until the writes of this request are done."""
    held: list[bytes] = []
    try:
        async for data in events:
            if held or any(last in data for last in _LAST_EVENTS):
                held.append(data)
            else:
                yield data
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
    if held:
        writes = WRITES.get()
        if writes:
            await _written(writes)
        yield LastEvents(b"".join(held))


def _native(provider: Provider) -> bool:
    endpoint = provider.wire.endpoints.get(RESPONSES)
    return endpoint is not None and native_format(provider.wire, endpoint) is OPENAI_RESPONSES


def _not_found(ident: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{ident}' not found.", param="response_id")


class StoredResponses:
    """The handlers, over one store and the runtime in force at each request."""

    def __init__(self, store: ResponseStore, runtime: Callable[[], Runtime]) -> None:
        self.store = store
        self._runtime = runtime

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        if isinstance(self.store, SQLResponseStore):
            self.store.start()
        yield
        await self.store.close()

    def handler(
        self, pipeline: Pipeline, dialect: OwnedResponsesDialect, endpoint: str
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """`POST /v1/responses`: the pipeline, with the caller as owner, and the writes of
        what it stored awaited before a whole answer leaves."""

        async def handle(request: web.Request) -> web.StreamResponse:
            writes: list[asyncio.Future[bool]] = []
            caller = _CALLER.set(owner_of(request))
            collect = WRITES.set(writes)
            try:
                response = await pipeline.handle(request, dialect, endpoint)
                if writes:  # (none, the usual case: no coroutine to wait for)
                    await _written(writes)
                return response
            finally:
                WRITES.reset(collect)
                _CALLER.reset(caller)

        return handle

    async def get(self, request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        try:
            record = await self.store.get(owner_of(request), ident)
        except GatewayError as e:
            return error_response(e, OPENAI_CHAT, request_id(request))
        if record is not None:
            return _json(record.response, request)
        return await self._forward(request, f"/responses/{quote(ident, safe='')}", ident)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        try:
            deleted = await self.store.delete(owner_of(request), ident)
        except GatewayError as e:
            return error_response(e, OPENAI_CHAT, request_id(request))
        if deleted:
            return _json({"id": ident, "object": "response", "deleted": True}, request)
        return await self._forward(request, f"/responses/{quote(ident, safe='')}", ident)

    async def input_items(self, request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        try:
            record = await self.store.get(owner_of(request), ident)
        except GatewayError as e:
            return error_response(e, OPENAI_CHAT, request_id(request))
        if record is None:
            path = f"/responses/{quote(ident, safe='')}/input_items"
            return await self._forward(request, path, ident)
        try:
            page = _page(record, request.query)
        except GatewayError as e:
            return error_response(e, OPENAI_CHAT, request_id(request))
        return _json(page, request)

    async def _forward(self, request: web.Request, path: str, ident: str) -> web.StreamResponse:
        rid = request_id(request)
        runtime = self._runtime()
        provider = next(
            (p for p in runtime.providers.values() if _native(p) and p.config.usable), None
        )
        if provider is None:
            return error_response(_not_found(ident), OPENAI_CHAT, rid)
        query = request.rel_url.raw_query_string  # as the client encoded it
        url = provider.config.base_url + path + (f"?{query}" if query else "")
        upstream = UpstreamRequest(request.method, url, provider.headers, b"")
        key = provider.keys.acquire()
        upstream = provider.wire.sign(upstream, key.credential if key is not None else None)
        try:
            response = await provider.transport.send(upstream)
            try:
                data = await response.read()
            finally:
                response.release()
        except Exception as e:
            error = upstream_failure(e, provider.name)
            log.warning("upstream %s failed: %s", provider.name, runtime.redact(str(e)))
            return error_response(error, OPENAI_CHAT, rid)
        status = response.status if response.status < 500 else 502
        headers = {"Content-Type": _JSON, "x-request-id": rid, "x-mini-llm-provider": provider.name}
        return web.Response(body=runtime.redact.scrub(data), status=status, headers=headers)


def _json(payload: Any, request: web.Request) -> web.Response:
    headers = {"Content-Type": _JSON, "x-request-id": request_id(request)}
    return web.Response(body=_encode(payload), headers=headers)


def _page(record: StoredResponse, query: Any) -> dict[str, Any]:
    """One page of input items: `order` (desc by default, as OpenAI), `limit` (1-100, 20),
    `after` (an item id)."""
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError("order must be 'asc' or 'desc'.", param="order")
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        limit = -1
    if not 1 <= limit <= 100:
        raise InvalidRequestError("limit must be an integer from 1 to 100.", param="limit")
    items = record.input_items if order == "asc" else record.input_items[::-1]
    after = query.get("after")
    if after:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }
