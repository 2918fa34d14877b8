"""The gateway application: everything per-request that can be done once is done here.

`Runtime` is what the configuration decides — providers, router, dispatcher, policies, the
model list — built at start-up and again at each hot reload. `Gateway` holds what outlives a
reload: the pooled HTTP client, the state backend (so the keys of a provider that did not
change keep their health) and the pipeline, whose `runtime` is swapped in one assignment:
requests under way finish with the runtime they began with.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web

from .. import __version__
from ..access.limits import Limiter
from ..access.store import KeyCache, KeyStore
from ..config import Settings
from ..dialects.anthropic import ANTHROPIC_COUNT_TOKENS, ANTHROPIC_MESSAGES
from ..dialects.openai_chat import OPENAI_CHAT
from ..dialects.openai_responses import OpenAIResponsesDialect
from ..errors import (
    GatewayError,
    MethodNotAllowedError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
)
from ..logs import Redactor
from ..policies import PolicyChain, RequestLog
from ..policies.auth import AccessControl, ModelAccess, presented_key
from ..policies.base import Policy
from ..policies.limits import LimitsPolicy
from ..routing.provider import build_providers
from ..routing.router import Router
from ..state import MemoryState, StateBackend
from ..state.responses import MemoryResponseStore
from ..store import StoreError, open_store
from ..upstream import HttpTransport
from .admin import KeyAdmin
from .body import BodyReader
from .dispatch import Dispatcher
from .model_list import build_model_list, models_by_id, offered_models
from .pipeline import Pipeline
from .responses import error_response, request_id
from .stored_responses import StoredResponses

__all__ = ["GATEWAY", "Gateway", "Runtime", "build_app"]

log = logging.getLogger("mini_llm.gateway")


class Runtime:
    """What one configuration decides, built once."""

    def __init__(
        self,
        settings: Settings,
        http: HttpTransport,
        state: StateBackend,
        keys: KeyStore | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self.fingerprint = settings.fingerprint()
        self.providers = build_providers(settings.providers, http, state)
        self.router = Router(settings.aliases, self.providers, settings, state)
        self.redact = Redactor(settings.secrets())
        self.dispatcher = Dispatcher(self.redact)
        self.body = BodyReader(settings.max_body_bytes, settings.body_timeout)
        self.limiter: Limiter | None = None
        policies: list[Policy] = []
        if settings.master_key:
            policies.append(ModelAccess(self.model_names))
        if settings.master_key or settings.model_limits:
            self.limiter = Limiter(
                state,
                keys,
                on_store_error=settings.on_store_error,
                default_max_tokens=settings.default_max_tokens,
                model_limits=settings.model_limits,
            )
            policies.append(LimitsPolicy(self.limiter, self.model_names))
        if _logs_requests(settings):
            policies.append(RequestLog())
        self.policies = PolicyChain(policies)
        created = int(time.time())
        self.models_body = msgspec.json.encode(
            {"object": "list", "data": self._model_list(created)}
        )
        self.model_bodies = models_by_id(self.models_body)

    def model_names(self, model: str) -> tuple[str, ...]:
        """The provider/model names `model` resolves to (aliases followed), then itself."""
        try:
            route = self.router.route(model)
        except GatewayError:
            return (model,)
        return (*(t.label for g in route.groups for t in g.targets), model)

    def _model_list(self, created: int) -> list[dict[str, Any]]:
        return build_model_list(self.settings, offered_models(self.providers), created)

    def provider_health(self) -> dict[str, Any]:
        """Key health of every provider that has keys (never the keys: last 4 characters):
        how many, how many cool down, which are set aside and when each is tried again,
        which were refused for a model."""
        health = {
            p.name: p.keys.status()
            for p in self.providers.values()
            if len(p.keys) or p.config.explicit or p.transport is not self.http
        }
        for label, hints in self.router.refusals().items():
            provider = label.partition("/")[0]
            health.setdefault(provider, {}).setdefault("refused_for", {})[label] = hints
        return health

    def reset_provider(self, name: str | None) -> dict[str, int]:
        """Bring the keys of one provider (or all) back at once: `{provider: keys restored}`."""
        restored: dict[str, int] = {}
        for provider in self.providers.values():
            if name is None or provider.name == name:
                restored[provider.name] = provider.keys.reset()
        for target in self.router.targets():
            if name is None or target.provider.name == name:
                restored[target.provider.name] = restored.get(target.provider.name, 0) + len(
                    target.refused
                )
                target.refused.clear()
        return restored


def _logs_requests(settings: Settings) -> bool:
    return settings.log_level in ("debug", "info")


class Gateway:
    """The state one gateway process shares across requests and reloads."""

    def __init__(self, settings: Settings) -> None:
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()
        self.http = HttpTransport(
            settings.timeouts,
            settings.pool_size,
            f"mini-llm/{__version__}",
            pool_per_host=settings.pool_per_host,
        )
        self.state: StateBackend = _state_backend(settings)
        self.keys: KeyStore | None = None
        self.key_cache: KeyCache | None = None
        url = settings.store_url() if settings.master_key else None
        if settings.master_key and url is None:
            log.error("gateway keys off: no data directory (set MINI_LLM_DATA_DIR or HOME)")
        if url is not None:
            try:
                self.keys = KeyStore(open_store(url))
                self.key_cache = KeyCache(self.keys)
            except StoreError as e:
                log.error("gateway keys off: %s", e)
        self.access = AccessControl(
            settings.master_key,
            self.key_cache,
            self.state,
            settings.signing_window,
            lambda: self.runtime.limiter,
        )
        self.pipeline = Pipeline(Runtime(settings, self.http, self.state, self.keys))

    @property
    def runtime(self) -> Runtime:
        return self.pipeline.runtime

    @property
    def settings(self) -> Settings:
        return self.pipeline.runtime.settings

    @property
    def fingerprint(self) -> str:
        return self.pipeline.runtime.fingerprint

    def redact(self, text: str) -> str:
        """`text` with every configured secret masked (for log lines)."""
        return self.pipeline.runtime.redact(text)

    def reload(self, settings: Settings) -> None:
        """Swap in a new configuration (validated, its restart-only settings kept as they are
        by `config.plan_reload`): one assignment, so new requests see all of it and requests
        under way finish with the runtime they began with."""
        self.pipeline.runtime = Runtime(settings, self.http, self.state, self.keys)

    def uptime(self) -> float:
        return time.monotonic() - self._started_monotonic

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        await self.http.start()
        await self.state.start()
        if self.keys is not None and self.key_cache is not None:
            try:
                await self.keys.open()
            except StoreError as e:  # the master key still works; keys once it is back
                log.error("the key store cannot be opened: %s", e)
            await self.key_cache.start()
        yield
        if self.key_cache is not None:
            await self.key_cache.close()
        if self.keys is not None:
            await self.keys.close()
        await self.http.close()
        await self.state.close()


def _state_backend(settings: Settings) -> StateBackend:
    """Redis when `MINI_LLM_REDIS_URL` is set (shared by every instance), else memory."""
    if settings.redis_url:
        from ..state.redis import RedisState  # the optional `redis` extra

        return RedisState(settings.redis_url)
    return MemoryState()


GATEWAY = web.AppKey("gateway", Gateway)


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def build_app(settings: Settings) -> web.Application:
    gateway = Gateway(settings)
    middlewares = [gateway.access.middleware()] if settings.master_key else []
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[GATEWAY] = gateway
    app.cleanup_ctx.append(gateway.lifespan)
    pipeline = gateway.pipeline
    known: dict[str, tuple[str, ...]] = {}

    def add(method: str, path: str, handler: Any) -> None:
        # the same route with a trailing slash: a route each, nothing to rewrite per request
        for variant in (path, path + "/") if not path.endswith(("/", "}")) else (path,):
            app.router.add_route(method, variant, handler)
            known[variant] = (*known.get(variant, ()), method)

    async def health(request: web.Request) -> web.Response:
        runtime = gateway.runtime
        master = runtime.settings.master_key
        if master and presented_key(request) != master:  # anonymous: only that it is up
            return web.json_response({"status": "ok", "version": __version__})
        return web.json_response(
            {
                "status": "ok",
                "version": __version__,
                "uptime_s": round(gateway.uptime(), 3),
                "started_at": gateway.started_at,
                "pid": os.getpid(),
                "shutdown_grace_s": runtime.settings.shutdown_grace,
                "config_fingerprint": runtime.fingerprint,
                "in_flight": runtime.router.in_flight(),
                "providers": runtime.provider_health(),
            },
            dumps=lambda o: msgspec.json.encode(o).decode(),
        )

    async def models(request: web.Request) -> web.Response:
        return web.Response(body=gateway.runtime.models_body, content_type="application/json")

    async def model(request: web.Request) -> web.Response:
        name = request.match_info["id"]
        found = gateway.runtime.model_bodies.get(name)
        if found is None:
            error = ModelNotFoundError(
                f"The model '{name}' is not in this gateway's model list (GET /v1/models).",
                param="model",
            )
            return error_response(error, OPENAI_CHAT, request_id(request))
        return web.Response(body=found, content_type="application/json")

    async def reset_providers(request: web.Request) -> web.Response:
        rid = request_id(request)
        if not gateway.settings.master_key and not _loopback(request):
            error = PermissionDeniedError("Admin routes answer loopback clients only.")
            return error_response(error, OPENAI_CHAT, rid)
        name = request.query.get("provider") or None
        if name is not None and name not in gateway.runtime.providers:
            return error_response(NotFoundError(f"Unknown provider '{name}'."), OPENAI_CHAT, rid)
        restored = gateway.runtime.reset_provider(name)
        return web.json_response({"reset": restored}, headers={"x-request-id": rid})

    add("GET", "/health", health)
    app.router.add_get("/", health)  # HEAD / and GET /: clients probe the base URL (Claude Code)
    add("GET", "/v1/models", models)
    add("GET", "/models", models)
    add("GET", "/v1/models/{id:.+}", model)  # ids hold "/": mock/echo
    add("POST", "/v1/chat/completions", pipeline.handler(OPENAI_CHAT, "/v1/chat/completions"))
    add("POST", "/chat/completions", pipeline.handler(OPENAI_CHAT, "/chat/completions"))
    add("POST", "/v1/messages", pipeline.handler(ANTHROPIC_MESSAGES, "/v1/messages"))
    add(
        "POST",
        "/v1/messages/count_tokens",
        pipeline.handler(ANTHROPIC_COUNT_TOKENS, "/v1/messages/count_tokens"),
    )
    # Responses: stored for translated providers, in memory
    store = MemoryResponseStore(settings.responses_ttl)
    responses = OpenAIResponsesDialect(store)
    stored = StoredResponses(store, lambda: gateway.runtime)
    add("POST", "/v1/responses", pipeline.handler(responses, "/v1/responses"))
    add("POST", "/responses", pipeline.handler(responses, "/responses"))
    add("GET", "/v1/responses/{id}", stored.get)
    add("DELETE", "/v1/responses/{id}", stored.delete)
    add("GET", "/v1/responses/{id}/input_items", stored.input_items)
    add("POST", "/admin/providers/reset", reset_providers)
    KeyAdmin(gateway.key_cache, lambda: gateway.runtime.limiter).add_routes(add)

    async def unknown_route(request: web.Request) -> web.Response:
        error: GatewayError
        # an Anthropic client's mistakes (a GET, a trailing slash) get Anthropic's shape
        dialect = ANTHROPIC_MESSAGES if request.path.startswith("/v1/messages") else OPENAI_CHAT
        methods = known.get(request.path)
        if methods:
            error = MethodNotAllowedError(
                f"{request.method} is not allowed on {request.path}; use {', '.join(methods)}."
            )
            response = error_response(error, dialect, request_id(request))
            response.headers["Allow"] = ", ".join(methods)
            return response
        error = NotFoundError(f"Unknown route: {request.method} {request.path}")
        return error_response(error, dialect, request_id(request))

    app.router.add_route("*", "/{tail:.*}", unknown_route)
    return app
