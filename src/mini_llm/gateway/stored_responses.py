"""`GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.

A response the gateway stored (one a translated provider answered) is served from the store,
to its owner only. Any other id goes to the first configured provider that serves the
Responses API itself (OpenAI keeps its own responses), as it is; with none, it is a 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from ..dialects.openai_chat import OPENAI_CHAT
from ..dialects.openai_responses import OWNER
from ..errors import GatewayError, InvalidRequestError, NotFoundError
from ..formats import OPENAI_RESPONSES, RESPONSES
from ..providers.base import UpstreamRequest, native_format
from ..routing.provider import Provider
from ..state.responses import ResponseStore, StoredResponse
from ..upstream import upstream_failure
from .responses import error_response, request_id

if TYPE_CHECKING:
    from .app import Runtime

__all__ = ["StoredResponses"]

log = logging.getLogger("mini_llm.gateway")

_encode = msgspec.json.encode
_JSON = "application/json"


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

    async def get(self, request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        record = await self.store.get(OWNER, ident)
        if record is not None:
            return _json(record.response, request)
        return await self._forward(request, f"/responses/{quote(ident, safe='')}", ident)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        if await self.store.delete(OWNER, ident):
            return _json({"id": ident, "object": "response", "deleted": True}, request)
        return await self._forward(request, f"/responses/{quote(ident, safe='')}", ident)

    async def input_items(self, request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        record = await self.store.get(OWNER, ident)
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
        query = request.query_string
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
