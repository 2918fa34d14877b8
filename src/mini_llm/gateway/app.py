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
from ..config import Settings
from ..dialects.anthropic import ANTHROPIC_COUNT_TOKENS, ANTHROPIC_MESSAGES
from ..dialects.gemini import GeminiDialect
from ..dialects.openai_chat import OPENAI_CHAT
from ..dialects.openai_embeddings import OPENAI_EMBEDDINGS
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
from ..routing.provider import build_providers
from ..routing.router import Router
from ..state import MemoryState, StateBackend
from ..state.responses import MemoryResponseStore
from ..upstream import HttpTransport
from .body import BodyReader
from .cors import Cors
from .dispatch import Dispatcher
from .gemini_routes import GeminiRoutes
from .model_list import build_model_list, models_by_id, offered_models
from .openapi import DOCS_PAGE, openapi_document
from .pipeline import Pipeline
from .responses import error_response, request_id
from .stored_responses import StoredResponses

__all__ = ["GATEWAY", "Gateway", "Runtime", "build_app"]

log = logging.getLogger("mini_llm.gateway")


class Runtime:
    """What one configuration decides, built once."""

    def __init__(self, settings: Settings, http: HttpTransport, state: StateBackend) -> None:
        self.settings = settings
        self.fingerprint = settings.fingerprint()
        self.providers = build_providers(settings.providers, http, state)
        self.router = Router(settings.aliases, self.providers, settings, state)
        self.redact = Redactor(settings.secrets())
        self.dispatcher = Dispatcher(self.redact)
        self.body = BodyReader(settings.max_body_bytes, settings.body_timeout)
        self.policies = PolicyChain([RequestLog()] if _logs_requests(settings) else [])
        created = int(time.time())
        self.models_body = msgspec.json.encode(
            {"object": "list", "data": self._model_list(created)}
        )
        self.model_bodies = models_by_id(self.models_body)

    def _model_list(self, created: int) -> list[dict[str, Any]]:
        return build_model_list(self.settings, offered_models(self.providers), created)

    def provider_health(self) -> dict[str, Any]:
        """Key health of every provider that has keys (never the keys: last 4 characters):
        how many, how many cool down, which are set aside and when each is tried again,
        which were refused for a model."""
        health = {p.name: p.keys.status() for p in self.providers.values() if len(p.keys)}
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
        self.state: StateBackend = MemoryState()
        self.pipeline = Pipeline(Runtime(settings, self.http, self.state))

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
        self.pipeline.runtime = Runtime(settings, self.http, self.state)

    def uptime(self) -> float:
        return time.monotonic() - self._started_monotonic

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        await self.http.start()
        yield
        await self.http.close()
        await self.state.close()


GATEWAY = web.AppKey("gateway", Gateway)


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


def build_app(settings: Settings) -> web.Application:
    gateway = Gateway(settings)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[GATEWAY] = gateway
    app.cleanup_ctx.append(gateway.lifespan)
    pipeline = gateway.pipeline

    def add(method: str, path: str, handler: Any) -> None:
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD: the same headers, no body
        else:
            app.router.add_route(method, path, handler)

    async def health(request: web.Request) -> web.Response:
        runtime = gateway.runtime
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
        if not _loopback(request):
            error = PermissionDeniedError("Admin routes answer loopback clients only.")
            return error_response(error, OPENAI_CHAT, rid)
        name = request.query.get("provider") or None
        if name is not None and name not in gateway.runtime.providers:
            return error_response(NotFoundError(f"Unknown provider '{name}'."), OPENAI_CHAT, rid)
        restored = gateway.runtime.reset_provider(name)
        return web.json_response({"reset": restored}, headers={"x-request-id": rid})

    add("GET", "/health", health)
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
    # Responses: stored for translated providers, in memory
    store = MemoryResponseStore(settings.responses_ttl)
    responses = OpenAIResponsesDialect(store)
    stored = StoredResponses(store, lambda: gateway.runtime)
    add("POST", "/v1/responses", pipeline.handler(responses, "/v1/responses"))
    add("POST", "/responses", pipeline.handler(responses, "/responses"))
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
    document = msgspec.json.encode(openapi_document(__version__))

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    async def docs(request: web.Request) -> web.Response:
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
