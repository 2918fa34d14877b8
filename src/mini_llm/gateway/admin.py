"""The admin API for gateway keys (`/admin/keys`), master key only (the auth middleware
refuses anything else: 401 without a key, 403 with a gateway key).

    POST   /admin/keys              create: {"id", "key", …} (and "signing_secret"), shown once
    GET    /admin/keys              every key (never a secret)
    GET    /admin/keys/{id}         one key, with its current usage and its spend: `spend_usd`,
                                    what the usage ledger recorded since `spend_since` (the
                                    start of its budget period; all time for `total`)
    PATCH  /admin/keys/{id}         change fields
    DELETE /admin/keys/{id}         revoke: refused here at once, everywhere within a second
    POST   /admin/keys/{id}/rotate  a new secret; the old one is accepted for `grace_seconds`
                                    more (default 3600; 0: at once)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import msgspec
from aiohttp import web

from ..access.keys import (
    GatewayKey,
    KeyFieldError,
    hash_key,
    new_id,
    new_key,
    new_signing_secret,
    parse_fields,
)
from ..access.limits import Limiter, period_bounds
from ..access.store import KeyCache
from ..dialects.openai_chat import OPENAI_CHAT
from ..errors import GatewayError, InvalidRequestError, NotFoundError, ServiceUnavailableError
from ..store import StoreError
from ..usage.ledger import Ledger
from ..usage.report import usage_report
from .responses import error_response, request_id

__all__ = ["ROTATION_GRACE", "KeyAdmin"]

log = logging.getLogger("mini_llm.access")

ROTATION_GRACE = 3600.0
"""Seconds the previous secret still works after a rotation, unless the caller says."""


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )


class KeyAdmin:
    def __init__(
        self,
        cache: KeyCache | None,
        limiter: Callable[[], Limiter | None],
        ledger: Callable[[], Ledger | None] = lambda: None,
    ) -> None:
        self.cache = cache
        self.limiter = limiter
        self.ledger = ledger

    def add_routes(self, add: Callable[[str, str, Any], None]) -> None:
        add("POST", "/admin/keys", self._wrap(self.create))
        add("GET", "/admin/keys", self._wrap(self.list))
        add("GET", "/admin/keys/{id}", self._wrap(self.show))
        add("PATCH", "/admin/keys/{id}", self._wrap(self.update))
        add("DELETE", "/admin/keys/{id}", self._wrap(self.revoke))
        add("POST", "/admin/keys/{id}/rotate", self._wrap(self.rotate))

    def _wrap(self, handler: Callable[[web.Request], Any]) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            try:
                if self.cache is None:
                    raise InvalidRequestError(
                        "Gateway keys need auth on: set MINI_LLM_MASTER_KEY (or [auth] "
                        "master_key) and restart the gateway.",
                        code="auth_off",
                    )
                response: web.StreamResponse = await handler(request)
                return response
            except KeyFieldError as e:
                return error_response(InvalidRequestError(str(e)), OPENAI_CHAT, request_id(request))
            except StoreError as e:
                log.warning("admin: the key store failed: %s", e)
                error = ServiceUnavailableError("The key store is unreachable; try again.")
                return error_response(error, OPENAI_CHAT, request_id(request))
            except GatewayError as e:
                return error_response(e, OPENAI_CHAT, request_id(request))

        return handle

    async def _body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            return {}
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise InvalidRequestError("The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise InvalidRequestError("The body must be a JSON object.")
        return body

    def _found(self, request: web.Request) -> GatewayKey:
        assert self.cache is not None
        key = self.cache.by_id.get(request.match_info["id"])
        if key is None or key.revoked:
            raise NotFoundError(f"No key {request.match_info['id']!r}.")
        return key

    async def create(self, request: web.Request) -> web.Response:
        assert self.cache is not None
        given = await self._body(request)
        fields = parse_fields(given, creating=True)
        secret = new_key()
        signing = new_signing_secret() if given.get("signing") else None
        key = GatewayKey(
            id=new_id(),
            hash=hash_key(secret),
            last4=secret[-4:],
            signing_secret=signing,
            created_at=time.time(),
            **fields,
        )
        await self.cache.keys.insert(key)
        self.cache.put(key)
        log.info("created key %s (%s)", key.label, key.name)
        shown = {**key.public(), "key": secret}
        if signing is not None:
            shown["signing_secret"] = signing
        return _json(shown, 201)

    async def list(self, request: web.Request) -> web.Response:
        assert self.cache is not None
        keys = [k.public() for k in await self.cache.keys.all() if not k.revoked]
        return _json({"object": "list", "data": keys})

    async def show(self, request: web.Request) -> web.Response:
        key = self._found(request)
        shown = key.public()
        limiter = self.limiter()
        if limiter is not None:
            shown["usage"] = await limiter.usage_of(key)
        shown.update(await self._spend(key))
        return _json(shown)

    async def _spend(self, key: GatewayKey) -> dict[str, Any]:
        """What the ledger says the key spent in its budget period (None: no ledger)."""
        now = time.time()
        _, start, _ = period_bounds(key.budget_period, now)
        spend: dict[str, Any] = {
            "spend_usd": None,
            "spend_since": datetime.fromtimestamp(start, timezone.utc).isoformat(
                timespec="seconds"
            ),
        }
        ledger = self.ledger()
        if ledger is None:
            return spend
        try:
            await ledger.flush()
            report = await usage_report(ledger.store, start, now + 1, "key", 0, key.id)
        except StoreError as e:
            log.warning("admin: the usage store failed: %s", e)
            return spend
        total = report["total"]
        spend["spend_usd"] = total["cost_usd"]
        spend["requests"] = total["requests"]
        if total["unpriced_requests"]:
            spend["unpriced_requests"] = total["unpriced_requests"]
        return spend

    async def update(self, request: web.Request) -> web.Response:
        assert self.cache is not None
        key = self._found(request).with_fields(
            parse_fields(await self._body(request), creating=False)
        )
        await self.cache.keys.save(key)
        self.cache.put(key)
        log.info("updated key %s", key.label)
        return _json(key.public())

    async def revoke(self, request: web.Request) -> web.Response:
        assert self.cache is not None
        key = self._found(request).with_fields({"revoked": True, "enabled": False})
        await self.cache.keys.save(key)
        self.cache.put(key)
        log.info("revoked key %s", key.label)
        return _json({"id": key.id, "revoked": True})

    async def rotate(self, request: web.Request) -> web.Response:
        assert self.cache is not None
        given = await self._body(request)
        grace = given.get("grace_seconds", ROTATION_GRACE)
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or grace < 0:
            raise InvalidRequestError("grace_seconds must be a number of 0 or more.")
        old = self._found(request)
        secret = new_key()
        key = old.with_fields(
            {
                "hash": hash_key(secret),
                "last4": secret[-4:],
                "previous_hash": old.hash if grace else None,
                "previous_until": time.time() + grace if grace else 0.0,
            }
        )
        await self.cache.keys.save(key)
        self.cache.put(key)
        log.info("rotated key %s (the old secret works %gs more)", key.label, grace)
        return _json({**key.public(), "key": secret})
