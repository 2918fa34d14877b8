"""The gateway application: everything per-request that can be done once is done here."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from aiohttp import web

from .. import __version__
from ..config import Settings
from ..errors import GatewayError, MethodNotAllowedError, NotFoundError
from ..logs import Redactor
from ..providers.mock import MOCK_MODELS
from ..providers.registry import build_providers
from ..routing.router import Router
from ..upstream import HttpTransport
from .anthropic_routes import AnthropicRoutes
from .body import BodyReader
from .dispatch import Dispatcher
from .openai_routes import OpenAIRoutes
from .responses import Dialect, error_response, request_id

__all__ = ["Gateway", "build_app"]

log = logging.getLogger("mini_llm.gateway")


class Gateway:
    """The state one gateway process shares across requests, built once at start-up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()
        self.http = HttpTransport(settings.timeouts, settings.pool_size, f"mini-llm/{__version__}")
        self.providers = build_providers(settings.providers, self.http)
        self.router = Router(settings.aliases, self.providers, settings)
        self.redact = Redactor(settings.secrets())
        self.dispatcher = Dispatcher(self.redact)
        self.models_body = msgspec.json.encode(
            {"object": "list", "data": self._model_list(int(self.started_at))}
        )
        self.routes: tuple[OpenAIRoutes | AnthropicRoutes, ...] = ()

    @property
    def fingerprint(self) -> str:
        return self.settings.fingerprint()

    def reload(self, settings: Settings) -> None:
        """Switch to new settings (checked by `config.plan_reload`). Requests in flight finish
        with the state they started with. A minimal version until app.py's rewrite: the
        upstream client stays; key health and balancer state start afresh."""
        providers = build_providers(settings.providers, self.http)
        router = Router(settings.aliases, providers, settings)
        redact = Redactor(settings.secrets())
        dispatcher = Dispatcher(redact)
        # no await from here on: a request sees the old state or the new one, never a mix
        self.settings, self.providers, self.router = settings, providers, router
        self.redact, self.dispatcher = redact, dispatcher
        self.models_body = msgspec.json.encode(
            {"object": "list", "data": self._model_list(int(time.time()))}
        )
        for routes in self.routes:
            routes._router, routes._dispatcher = router, dispatcher

    def provider_health(self) -> dict[str, Any]:
        """Key health of every provider that has keys (never the keys: last 4 characters):
        how many, how many cool down, which are set aside, which were refused for a model."""
        health = {p.name: p.keys.status() for p in self.providers.values() if len(p.keys)}
        for label, hints in self.router.refusals().items():
            provider = label.partition("/")[0]
            health.setdefault(provider, {}).setdefault("refused_for", {})[label] = hints
        return health

    def uptime(self) -> float:
        return time.monotonic() - self._started_monotonic

    def _model_list(self, created: int) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for alias, target in self.settings.aliases.items():
            seen[alias] = {"id": alias, "object": "model", "created": created, "owned_by": "alias"}
            seen[alias]["target"] = target
        for provider in self.providers.values():
            config = provider.config
            names = MOCK_MODELS if config.base_url.startswith("mock:") else config.models
            if not (config.explicit or names):
                continue
            for model in names:
                ident = f"{provider.name}/{model}"
                seen.setdefault(
                    ident,
                    {"id": ident, "object": "model", "created": created, "owned_by": provider.name},
                )
        return list(seen.values())

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        await self.http.start()
        yield
        await self.http.close()


GATEWAY = web.AppKey("gateway", Gateway)


def build_app(settings: Settings) -> web.Application:
    gateway = Gateway(settings)
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[GATEWAY] = gateway
    app.cleanup_ctx.append(gateway.lifespan)

    body = BodyReader(settings.max_body_bytes, settings.body_timeout)
    openai = OpenAIRoutes(gateway.router, gateway.dispatcher, body)
    known: dict[str, tuple[str, ...]] = {}

    def add(method: str, path: str, handler: Any) -> None:
        app.router.add_route(method, path, handler)
        known[path] = (*known.get(path, ()), method)

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "version": __version__,
                "uptime_s": round(gateway.uptime(), 3),
                "started_at": gateway.started_at,
                "pid": os.getpid(),
                "shutdown_grace_s": settings.shutdown_grace,
                "in_flight": gateway.router.in_flight(),
                "providers": gateway.provider_health(),
            },
            dumps=lambda o: msgspec.json.encode(o).decode(),
        )

    async def models(request: web.Request) -> web.Response:
        return web.Response(body=gateway.models_body, content_type="application/json")

    add("GET", "/health", health)
    add("GET", "/v1/models", models)
    add("POST", "/v1/chat/completions", openai.chat_completions)
    add("POST", "/chat/completions", openai.chat_completions)
    anthropic = AnthropicRoutes(gateway.router, gateway.dispatcher, body)
    gateway.routes = (openai, anthropic)
    add("POST", "/v1/messages", anthropic.messages)
    add("POST", "/v1/messages/count_tokens", anthropic.count_tokens)

    async def unknown_route(request: web.Request) -> web.Response:
        error: GatewayError
        methods = known.get(request.path)
        if methods:
            error = MethodNotAllowedError(
                f"{request.method} is not allowed on {request.path}; use {', '.join(methods)}."
            )
            response = error_response(error, Dialect.OPENAI, request_id(request))
            response.headers["Allow"] = ", ".join(methods)
            return response
        error = NotFoundError(f"Unknown route: {request.method} {request.path}")
        return error_response(error, Dialect.OPENAI, request_id(request))

    app.router.add_route("*", "/{tail:.*}", unknown_route)
    return app
