"""CORS, for web pages the configuration allows (`[server] cors_origins`); off by default.

Installed only when origins are configured, so a gateway without CORS pays nothing per
request. Then:

- a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed
  origin is answered 204 with the route's methods, the headers asked for, `Max-Age`, and
  `Vary: Origin`; from any other origin it is a 403 without CORS headers;
- every other answer to an allowed origin carries `Access-Control-Allow-Origin` (the origin
  itself, or `*` when every origin is allowed and credentials are not), the headers a page may
  read (`x-request-id`, `x-mini-llm-*`), and `Access-Control-Allow-Credentials: true` when
  `cors_allow_credentials` is set (never with `*`: the configuration refuses that);
- answers to other origins carry only `Vary: Origin`: the browser refuses them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from ..dialects.openai_chat import OPENAI_CHAT
from ..errors import PermissionDeniedError
from .responses import error_response, request_id

__all__ = ["EXPOSED_HEADERS", "Cors"]

EXPOSED_HEADERS = (
    "x-request-id, x-mini-llm-provider, x-mini-llm-model, x-mini-llm-attempts, "
    "x-mini-llm-dropped, x-mini-llm-token-count, retry-after"
)
_MAX_AGE = "600"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AllowedMethods = Callable[[web.Request], Awaitable[Collection[str]]]


class Cors:
    def __init__(self, origins: Collection[str], credentials: bool, methods: AllowedMethods):
        self.any = "*" in origins
        self.origins = frozenset(origins)
        self.credentials = credentials
        self._methods = methods

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.preflight)
        app.on_response_prepare.append(self.decorate)

    def allowed(self, origin: str) -> bool:
        return self.any or origin in self.origins

    def _allow_origin(self, origin: str) -> str:
        return "*" if self.any and not self.credentials else origin

    @web.middleware
    async def preflight(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if (
            request.method != "OPTIONS"
            or origin is None
            or "Access-Control-Request-Method" not in request.headers
        ):
            return await handler(request)
        if not self.allowed(origin):
            error = PermissionDeniedError(f"Origin '{origin[:200]}' is not allowed (CORS).")
            response = error_response(error, OPENAI_CHAT, request_id(request))
            response.headers["Vary"] = "Origin"
            return response
        methods = sorted({*await self._methods(request), "OPTIONS"})
        headers = {
            "Access-Control-Allow-Origin": self._allow_origin(origin),
            "Access-Control-Allow-Methods": ", ".join(methods),
            "Access-Control-Max-Age": _MAX_AGE,
            "Vary": "Origin, Access-Control-Request-Headers",
            "Allow": ", ".join(methods),
        }
        asked = request.headers.get("Access-Control-Request-Headers")
        if asked:
            headers["Access-Control-Allow-Headers"] = asked
        if self.credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        return web.Response(status=204, headers=headers)

    async def decorate(self, request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if origin is None or "Access-Control-Allow-Origin" in response.headers:
            return
        response.headers["Vary"] = "Origin"
        if not self.allowed(origin):
            return
        response.headers["Access-Control-Allow-Origin"] = self._allow_origin(origin)
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        if self.credentials:
            response.headers["Access-Control-Allow-Credentials"] = "true"
