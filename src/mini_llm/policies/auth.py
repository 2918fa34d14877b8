"""Auth: who is asking (a middleware, before anything is read or parsed) and whether the key
may use the model asked for (a policy, once the model is known).

With a master key configured every route but `/health` (and `/health/live`, `/health/ready`)
and `/` needs a key, sent the way each SDK sends its own: `Authorization: Bearer …` (OpenAI),
`x-api-key` (Anthropic), `x-goog-api-key` or `?key=` (Gemini). The master key may do anything;
a gateway key may call the APIs (its models, its limits) but never `/admin`. A key with a
signing secret must sign each request (`access/signing.py`). The key found is left in the
request for the policies (`request[NOTES]["key"]`; `ModelAccess` sets `info.key_id` from it,
so the ledger's rows carry it); it is never forwarded upstream — upstream requests are built
from the provider's own keys. The one admin route open to a gateway key is `GET /admin/usage`:
its own usage only. `/metrics` takes the master key or the metrics token (`[metrics] token`),
nothing else.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web

from ..access.keys import GatewayKey, hash_key
from ..access.limits import Limiter
from ..access.signing import SignatureError, check_signature
from ..access.store import KeyCache
from ..dialects.anthropic import ANTHROPIC_MESSAGES
from ..dialects.openai_chat import OPENAI_CHAT
from ..errors import AuthenticationError, GatewayError, PermissionDeniedError
from ..state import StateBackend, StateUnavailableError
from .base import RequestInfo

__all__ = ["NOTES", "AccessControl", "ModelAccess", "presented_key"]

log = logging.getLogger("mini_llm.access")

NOTES: web.RequestKey[dict[str, Any]] = web.RequestKey("mini_llm_notes", dict)
"""The request item the middleware leaves for the pipeline (copied into `info.notes`)."""

OPEN_PATHS = frozenset(
    ("/health", "/health/", "/", "/health/live", "/health/live/", "/health/ready", "/health/ready/")
)
OWN_USAGE_PATHS = frozenset(("/admin/usage", "/admin/usage/"))
"""The one admin route a gateway key may call: it answers that key's own usage."""
METRICS_PATHS = frozenset(("/metrics", "/metrics/"))
"""Taken with the master key or the metrics token, never a gateway key."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def presented_key(request: web.Request) -> str | None:
    """The key as the client's SDK sends it, whichever that is."""
    headers = request.headers
    auth = headers.get(hdrs.AUTHORIZATION)  # an istr: no case folding per lookup
    if auth and (auth.startswith("Bearer ") or auth[:7].lower() == "bearer "):
        return auth[7:].strip() or None
    return (
        headers.get("x-api-key")
        or headers.get("x-goog-api-key")
        or request.query.get("key")
        or None
    )


class AccessControl:
    """The master key, the keys' cache and what signing needs; one per gateway process."""

    def __init__(
        self,
        master_key: str,
        cache: KeyCache | None,
        state: StateBackend,
        signing_window: float,
        limiter: Callable[[], Limiter | None],
        metrics_token: str = "",
    ) -> None:
        self.master_key = master_key.encode()
        self.metrics_token = metrics_token.encode()
        self.cache = cache
        self.state = state
        self.signing_window = signing_window
        self.limiter = limiter

    async def identify(self, request: web.Request) -> GatewayKey | None:
        """None for the master key, the gateway key else; raise 401 for anything else."""
        key = self._known(request)
        if key is not None and key.signing_secret is not None:
            await self._check_signature(request, key, time.time())
        return key

    def _known(self, request: web.Request) -> GatewayKey | None:
        """`identify` but the signature: None for the master key, the gateway key else."""
        auth = request.headers.get(hdrs.AUTHORIZATION)
        if auth is not None and auth.startswith("Bearer "):  # most clients: no call
            given: str | None = auth[7:].strip() or None
        else:
            given = presented_key(request)
        if given is None:
            raise AuthenticationError(
                "This gateway needs a key: send it as 'Authorization: Bearer <key>' (or x-api-key)."
            )
        if hmac.compare_digest(given.encode(), self.master_key):
            return None
        key = self.cache.lookup(hash_key(given)) if self.cache is not None else None
        if key is None:
            raise AuthenticationError("Invalid API key.")
        if key.revoked or not key.enabled or key.expires_at is not None:
            refusal = key.refusal(time.time())
            if refusal is not None:
                log.info("refused key %s: %s", key.label, refusal)
                raise AuthenticationError(f"This API key is {refusal}.")
        return key

    async def _check_signature(self, request: web.Request, key: GatewayKey, now: float) -> None:
        assert key.signing_secret is not None
        body = await request.read()  # bounded by the app's client_max_size
        digest = check_signature(
            key.signing_secret,
            request.headers.get("x-timestamp"),
            request.headers.get("x-signature"),
            request.method,
            request.rel_url.raw_path,
            body,
            now,
            self.signing_window,
        )
        try:
            seen = await self.state.incr("sig:" + digest, 1, 2 * self.signing_window)
        except StateUnavailableError as e:
            limiter = self.limiter()
            if limiter is not None and limiter.closed:
                raise SignatureError(
                    "Signatures cannot be checked for replays now: the state store is unreachable."
                ) from e
            return
        if seen > 1:
            raise SignatureError("This signature was already used: sign each request anew.")

    def _metrics_token(self, request: web.Request) -> bool:
        """Whether the request carries the metrics token (as a bearer token: Prometheus's
        `authorization` or `bearer_token`)."""
        if not self.metrics_token:
            return False
        given = presented_key(request)
        return given is not None and hmac.compare_digest(given.encode(), self.metrics_token)

    def middleware(self) -> Any:
        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            path = request.path
            if path in OPEN_PATHS:
                return await handler(request)
            try:
                if path.startswith("/v1/"):  # the APIs: any key, nothing more to check
                    key = self._known(request)
                    if key is not None and key.signing_secret is not None:
                        await self._check_signature(request, key, time.time())
                else:
                    if path in METRICS_PATHS and self._metrics_token(request):
                        return await handler(request)
                    key = await self.identify(request)
                    if key is not None:
                        self._gateway_key_may(request, path)
            except GatewayError as e:
                return _error(request, e)
            request[NOTES] = {"key": key}
            return await handler(request)

        return authenticate

    @staticmethod
    def _gateway_key_may(request: web.Request, path: str) -> None:
        """403 for a route a gateway key may not call: /metrics, /admin but its own usage."""
        if path in METRICS_PATHS:
            raise PermissionDeniedError(
                "/metrics takes the master key or the metrics token "
                "([metrics] token, MINI_LLM_METRICS_TOKEN), not a gateway key."
            )
        if path.startswith("/admin") and not (
            path in OWN_USAGE_PATHS and request.method in ("GET", "HEAD")
        ):
            raise PermissionDeniedError("Admin routes take the master key, not a gateway key.")


def _error(request: web.Request, error: GatewayError) -> web.Response:
    dialect = ANTHROPIC_MESSAGES if request.path.startswith("/v1/messages") else OPENAI_CHAT
    headers = {"Content-Type": "application/json"}
    if error.headers:
        headers.update(error.headers)
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and given.isprintable():
        headers["x-request-id"] = given
    return web.Response(body=dialect.error_body(error), status=error.http_status, headers=headers)


class ModelAccess:
    """403 for a model the gateway key may not use (its `models`: names or globs, matched
    against the name asked and every provider/model it resolves to)."""

    wants_usage = False
    acts_after = False

    def __init__(self, names: Callable[[str], tuple[str, ...]]) -> None:
        self.names = names

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        key = info.notes.get("key")
        if key is None:
            return None
        info.owner = key.owner or key.id
        info.key_id = key.id
        if key.models is not None and not key.allows(info.model, self.names(info.model)):
            raise PermissionDeniedError(
                f"This key may not use the model '{info.model}'.",
                param="model",
                code="model_not_allowed",
            )
        return None

    def after(self, info: RequestInfo) -> None:
        return None
