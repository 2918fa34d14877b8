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
from ..cache.store import CacheStore, MemoryCache, SharedCache
from ..config import Settings
from ..dialects.anthropic import ANTHROPIC_COUNT_TOKENS, ANTHROPIC_MESSAGES
from ..dialects.gemini import GeminiDialect
from ..dialects.openai_chat import OPENAI_CHAT
from ..dialects.openai_embeddings import OPENAI_EMBEDDINGS
from ..errors import (
    GatewayError,
    InvalidRequestError,
    MethodNotAllowedError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from ..http1 import Http1Transport
from ..logs import Redactor
from ..policies import (
    AccessLog,
    Metrics,
    MetricsPolicy,
    Policy,
    PolicyChain,
    UsageLedger,
)
from ..policies.access_log import use_json_lines
from ..policies.auth import NOTES, AccessControl, ModelAccess, presented_key
from ..policies.cache import CacheCounters, CachePolicy
from ..policies.limits import LimitsPolicy
from ..policies.metrics import AttemptCounter
from ..routing.provider import build_providers
from ..routing.router import Router
from ..state import MemoryState, StateBackend
from ..store import Store, StoreError, open_store
from ..upstream import HttpTransport, http_transport
from ..usage.ledger import Ledger
from ..usage.prices import PriceTable
from ..usage.report import GROUPS, parse_when, usage_report
from .admin import KeyAdmin
from .attempt import AttemptHook
from .body import BodyReader
from .connections import PLAIN_MIDDLEWARES, POST_ROUTES
from .cors import Cors
from .dispatch import Dispatcher
from .gemini_routes import GeminiRoutes
from .health import Health, probes_for
from .model_list import build_model_list, models_by_id, offered_models
from .pipeline import Pipeline
from .responses import error_response, request_id
from .stored_responses import OwnedResponsesDialect, StoredResponses, response_store

__all__ = ["GATEWAY", "Gateway", "Runtime", "build_app"]

log = logging.getLogger("mini_llm.gateway")


class Observers:
    """What watches requests across reloads: metrics, the usage ledger, traces."""

    def __init__(
        self,
        metrics: Metrics | None = None,
        ledger: Ledger | None = None,
        telemetry: Any = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.ledger = ledger
        self.telemetry = telemetry


class Runtime:
    """What one configuration decides, built once."""

    def __init__(
        self,
        settings: Settings,
        http: HttpTransport | Http1Transport,
        state: StateBackend,
        cache: CacheStore | None = None,
        cache_counters: CacheCounters | None = None,
        observers: Observers | None = None,
        keys: KeyStore | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self.fingerprint = settings.fingerprint()
        self.providers = build_providers(settings.providers, http, state)
        self.router = Router(settings.aliases, self.providers, settings, state)
        self.redact = Redactor(settings.secrets())
        self.body = BodyReader(settings.max_body_bytes, settings.body_timeout)
        self.prices = PriceTable(settings.prices)
        observers = observers or Observers()
        policies: list[Policy] = []
        hooks: list[AttemptHook] = []
        if settings.master_key:  # first: a key may not use this model
            policies.append(ModelAccess(self.model_names))
        if settings.metrics:  # first: the in-flight gauge sees every request
            policies.append(MetricsPolicy(observers.metrics, self.prices, self._known_models()))
            hooks.append(AttemptCounter(observers.metrics))
        if observers.telemetry is not None:
            policies.append(observers.telemetry.policy(self.prices))
            hooks.append(observers.telemetry.hook)
        if observers.ledger is not None:
            policies.append(UsageLedger(observers.ledger, self.prices))
        if _logs_requests(settings):
            use_json_lines(settings.log_format == "json")
            policies.append(
                AccessLog(
                    self.prices,
                    json_lines=settings.log_format == "json",
                    log_bodies=settings.log_bodies,
                    body_max_bytes=settings.body_max_bytes,
                    redact=self.redact,
                )
            )
        self.limiter: Limiter | None = None
        if settings.master_key or settings.model_limits:
            self.limiter = Limiter(
                state,
                keys,
                on_store_error=settings.on_store_error,
                default_max_tokens=settings.default_max_tokens,
                model_limits=settings.model_limits,
                prices=self.prices,
            )
            policies.append(LimitsPolicy(self.limiter, self.model_names))
        self.cache: CachePolicy | None = None
        if cache is not None:  # last: every other policy has seen the request when it answers
            self.cache = CachePolicy(cache, self.router, settings.cache, cache_counters)
            policies.append(self.cache)
        self.policies = PolicyChain(policies)
        hook: AttemptHook | None = hooks[0] if len(hooks) == 1 else None
        if len(hooks) > 1:
            from ..telemetry import AttemptHooks

            hook = AttemptHooks(hooks)
        self.dispatcher = Dispatcher(self.redact, hook=hook)
        created = int(time.time())
        self.models_body = msgspec.json.encode(
            {"object": "list", "data": self._model_list(created)}
        )
        self.model_bodies = models_by_id(self.models_body)

    def _known_models(self) -> Any:
        """Whether a served `provider/model` may be a metrics label: priced, listed by its
        provider, or named by an alias or deployment (else it counts as `other`)."""
        named = {f"{p}/{m}" for p, models in offered_models(self.providers).items() for m in models}
        named.update(self.settings.aliases.values())
        for chain in (*self.settings.chains.values(), *self.settings.fallbacks.values()):
            named.update(chain)
        for deployment in self.settings.deployments.values():
            named.update(m for m, _ in deployment.targets)
        prices = self.prices

        def known(label: str) -> bool:
            return label in named or label in prices

        return known

    def key_states(self) -> list[tuple[str, str, int]]:
        """(provider, state, keys) for `mini_llm_provider_keys`."""
        states = []
        for provider in self.providers.values():
            if not len(provider.keys):
                continue
            status = provider.keys.status()
            aside = len(status["set_aside"])
            cooling = status["cooling"]
            states.append((provider.name, "healthy", status["keys"] - aside - cooling))
            states.append((provider.name, "cooling", cooling))
            states.append((provider.name, "set_aside", aside))
        return states

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


def _state_backend(settings: Settings) -> StateBackend:
    """Redis when `MINI_LLM_REDIS_URL` is set (shared by every instance), else memory."""
    if settings.redis_url:
        from ..state.redis import RedisState  # the optional `redis` extra

        return RedisState(settings.redis_url)
    return MemoryState()


def _cache_store(settings: Settings, state: StateBackend) -> CacheStore | None:
    backend = settings.cache.backend(settings.redis_url)
    if backend == "redis":
        return SharedCache(state, "cache:")
    if backend == "memory":
        return MemoryCache(settings.cache.max_bytes)
    return None


class Gateway:
    """The state one gateway process shares across requests and reloads."""

    def __init__(self, settings: Settings) -> None:
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()
        self.http = http_transport(
            settings.http_client,
            settings.timeouts,
            settings.pool_size,
            f"mini-llm/{__version__}",
            settings.pool_per_host,
        )
        self.state = _state_backend(settings)
        # the cache's store and counts outlive a reload (its other settings do not)
        self.cache_store = _cache_store(settings, self.state)
        self.cache_counters = CacheCounters()
        self.observers = Observers(Metrics(settings.metrics_dir), _ledger(settings), None)
        ledger = self.observers.ledger
        self.observers.metrics.dropped = lambda: ledger.dropped if ledger is not None else 0
        self.observers.metrics.key_states = lambda: self.runtime.key_states()
        if settings.otlp_endpoint:
            self.observers.telemetry = _telemetry(settings.otlp_endpoint)
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
            settings.metrics_token,
        )
        self.pipeline = Pipeline(self._runtime(settings))

    def _runtime(self, settings: Settings) -> Runtime:
        return Runtime(
            settings,
            self.http,
            self.state,
            self.cache_store,
            self.cache_counters,
            self.observers,
            self.keys,
        )

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
        self.pipeline.runtime = self._runtime(settings)

    def uptime(self) -> float:
        return time.monotonic() - self._started_monotonic

    @property
    def ledger(self) -> Ledger | None:
        return self.observers.ledger

    @property
    def sql_store(self) -> Store | None:
        """The SQL store readiness pings: the keys' one, else the ledger's (or none)."""
        if self.keys is not None:
            return self.keys.store
        return self.ledger.store if self.ledger is not None else None

    @property
    def shares_state(self) -> bool:
        return bool(self.settings.redis_url)

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        await self.http.start()
        await self.state.start()
        observers = self.observers
        if observers.ledger is not None:
            observers.ledger.start()
        observers.metrics.start()
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
        # in-flight requests have finished (the drain): their records are queued
        await self.http.close()
        if observers.ledger is not None:
            await observers.ledger.close()
        await observers.metrics.close()
        if observers.telemetry is not None:
            observers.telemetry.close()
        await self.state.close()


def _ledger(settings: Settings) -> Ledger | None:
    if not settings.usage:
        return None
    url = settings.store_url()
    if url is None:
        log.warning(
            "usage ledger off: no data directory is known (set MINI_LLM_DATA_DIR, HOME or "
            "MINI_LLM_DATABASE_URL)"
        )
        return None
    try:
        return Ledger(open_store(url), max_queue=settings.usage_queue)
    except StoreError as e:
        log.error("usage ledger off: %s", e)
        return None


def _telemetry(endpoint: str) -> Any:
    try:
        from ..telemetry import Telemetry

        return Telemetry(endpoint)
    except ImportError:
        log.error("traces off: OpenTelemetry is not installed (pip install 'mini-llm[otel]')")
        return None


GATEWAY = web.AppKey("gateway", Gateway)


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


KEY_RECORDS_MAX = 1000
"""The most ledger records `GET /admin/usage?by=request` lists for a gateway key."""


def build_app(settings: Settings) -> web.Application:
    gateway = Gateway(settings)
    middlewares = [gateway.access.middleware()] if settings.master_key else []
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[PLAIN_MIDDLEWARES] = tuple(middlewares)
    app[GATEWAY] = gateway
    app.cleanup_ctx.append(gateway.lifespan)
    pipeline = gateway.pipeline

    posts: dict[str, Any] = {}
    app[POST_ROUTES] = posts

    def add(method: str, path: str, handler: Any) -> None:
        # the same route with a trailing slash: a route each, nothing to rewrite per request
        for variant in (path, path + "/") if not path.endswith(("/", "}")) else (path,):
            if method == "POST" and "{" not in variant:
                posts[variant] = handler
            if method == "GET":
                app.router.add_get(variant, handler)  # and HEAD: the same headers, no body
            else:
                app.router.add_route(method, variant, handler)

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
                "shutdown_grace_s": runtime.settings.drain_delay + runtime.settings.shutdown_grace,
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
    Health(probes_for(gateway)).install(app, add)  # /health/live, /health/ready
    add("GET", "/", health)  # HEAD / and GET /: clients probe the base URL (Claude Code)
    add("GET", "/v1/models", models)
    add("GET", "/models", models)
    add("GET", "/v1/models/{id:.+}", model)  # ids hold "/": mock/echo
    for prefix in ("/v1", ""):  # several SDKs and tools leave out the /v1
        chat, embeddings = prefix + "/chat/completions", prefix + "/embeddings"
        add("POST", chat, pipeline.handler(OPENAI_CHAT, chat))
        add("POST", embeddings, pipeline.handler(OPENAI_EMBEDDINGS, embeddings))
    add("POST", "/v1/messages", pipeline.handler(ANTHROPIC_MESSAGES, "/v1/messages"))
    add(
        "POST",
        "/v1/messages/count_tokens",
        pipeline.handler(ANTHROPIC_COUNT_TOKENS, "/v1/messages/count_tokens"),
    )
    # Responses: stored for translated providers, in the SQL store (or memory)
    store = response_store(settings)
    responses = OwnedResponsesDialect(store)
    stored = StoredResponses(store, lambda: gateway.runtime)
    app.cleanup_ctx.append(stored.lifespan)
    add("POST", "/v1/responses", stored.handler(pipeline, responses, "/v1/responses"))
    add("POST", "/responses", stored.handler(pipeline, responses, "/responses"))
    add("GET", "/v1/responses/{id}", stored.get)
    add("DELETE", "/v1/responses/{id}", stored.delete)
    add("GET", "/v1/responses/{id}/input_items", stored.input_items)
    # Gemini-native: models/{model}:{method}, the model may hold "/"; under /v1 too, where
    # google-genai sends them (GET /v1/models stays OpenAI's list)
    gemini = GeminiRoutes(pipeline, lambda: gateway.runtime)
    add("POST", "/v1beta/models/{spec:.+}", gemini.call)
    add("POST", "/v1/models/{spec:.+:[A-Za-z]+}", gemini.call)
    add("GET", "/v1beta/models", gemini.models)
    add("GET", "/v1beta/models/{name:.+}", gemini.model)
    add("POST", "/admin/providers/reset", reset_providers)
    # the document (its schemas made from the msgspec types: a tenth of a second) is made on
    # its first request, not at start-up, and kept
    document: list[bytes] = []

    async def openapi(request: web.Request) -> web.Response:
        if not document:
            from .openapi import openapi_document

            document.append(msgspec.json.encode(openapi_document(__version__)))
        return web.Response(body=document[0], content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
        from .openapi import DOCS_PAGE

        return web.Response(text=DOCS_PAGE, content_type="text/html")

    add("GET", "/openapi.json", openapi)
    add("GET", "/docs", docs)

    async def allowed_methods(request: web.Request) -> set[str]:
        """The methods the routes matching this path answer (none: an unknown path)."""
        methods: set[str] = set()
        for resource in app.router.resources():
            if resource is not catch_all:
                match, allowed = await resource.resolve(request)
                methods |= allowed
                if match is not None:
                    methods.add(request.method)
        return methods

    async def metrics(request: web.Request) -> web.Response:
        if not gateway.runtime.settings.metrics:
            error = NotFoundError("Metrics are off ([metrics] enabled = false).")
            return error_response(error, OPENAI_CHAT, request_id(request))
        data, content_type = gateway.observers.metrics.render()
        return web.Response(body=data, headers={"Content-Type": content_type})

    async def usage(request: web.Request) -> web.Response:
        rid = request_id(request)
        if not gateway.settings.master_key and not _loopback(request):
            error = PermissionDeniedError("Admin routes answer loopback clients only.")
            return error_response(error, OPENAI_CHAT, rid)
        caller = (request.get(NOTES) or {}).get("key")  # a gateway key: its own usage only
        ledger = gateway.ledger
        if ledger is None:
            return error_response(NotFoundError("The usage ledger is off."), OPENAI_CHAT, rid)
        query = request.query
        try:
            now = time.time()
            since = parse_when(query.get("since") or "24h", now)
            until = parse_when(query["until"], now) if query.get("until") else now
            by = query.get("by") or "model"
            if by not in GROUPS:
                raise ValueError(f"by must be one of {', '.join(GROUPS)}")
            limit = int(query.get("limit") or (100 if by == "request" else 0))
            if caller is not None and by == "request" and not 0 < limit <= KEY_RECORDS_MAX:
                limit = KEY_RECORDS_MAX  # a gateway key's listing is bounded (0: all of them)
        except ValueError as e:
            return error_response(InvalidRequestError(str(e)), OPENAI_CHAT, rid)
        try:
            await ledger.flush()  # what was answered until now is in the report
            report = await usage_report(
                ledger.store, since, until, by, limit, caller.id if caller is not None else None
            )
        except StoreError as e:
            unavailable = ServiceUnavailableError(f"The usage store cannot be read: {e}")
            return error_response(unavailable, OPENAI_CHAT, rid)
        report["dropped"] = ledger.dropped
        return web.json_response(
            report, headers={"x-request-id": rid}, dumps=lambda o: msgspec.json.encode(o).decode()
        )

    add("GET", "/metrics", metrics)
    add("GET", "/admin/usage", usage)
    KeyAdmin(gateway.key_cache, lambda: gateway.runtime.limiter, lambda: gateway.ledger).add_routes(
        add
    )

    async def unknown_route(request: web.Request) -> web.Response:
        error: GatewayError
        # an Anthropic (Gemini) client's mistakes (a GET, a trailing slash) get its shape
        path = request.path
        dialect: Any = OPENAI_CHAT
        if path.startswith("/v1/messages"):
            dialect = ANTHROPIC_MESSAGES
        elif path.startswith("/v1beta/"):
            dialect = GEMINI_ERRORS
        methods = await allowed_methods(request)
        if methods:
            if request.method == "OPTIONS":
                allow = ", ".join(sorted({*methods, "OPTIONS"}))
                return web.Response(status=204, headers={"Allow": allow})
            error = MethodNotAllowedError(
                f"{request.method} is not allowed on {path}; use {', '.join(sorted(methods))}."
            )
            response = error_response(error, dialect, request_id(request))
            response.headers["Allow"] = ", ".join(sorted(methods))
            return response
        error = NotFoundError(f"Unknown route: {request.method} {path}")
        return error_response(error, dialect, request_id(request))

    catch_all = app.router.add_route("*", "/{tail:.*}", unknown_route).resource
    if settings.cors_origins:
        Cors(settings.cors_origins, settings.cors_allow_credentials, allowed_methods).install(app)
    return app


GEMINI_ERRORS = GeminiDialect("")
"""Renders the errors of unknown Gemini routes in Google's shape."""
