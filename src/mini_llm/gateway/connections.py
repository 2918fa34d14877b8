"""The HTTP server's connections: header timeout, connection caps, and the HTTP layer's own
error answers as JSON error bodies.

aiohttp's server has neither a header timeout nor a connection cap. `GatewayRunner` serves the
application with `GatewayProtocol`, an aiohttp `RequestHandler` that adds them:

- **Header timeout**: a timer armed when a connection opens, and when the first bytes of a
  next request arrive on a kept-alive connection; the parser completing a request head
  cancels it. When it fires the connection is closed without an answer (no request came).
  A request head that arrives whole (the usual case) never arms one: the cost is one timer
  per connection, not per request.
- **Connection caps**: `ConnectionGuard` counts open connections per client address and in
  all; a connection over a cap is closed as soon as it is accepted, before anything is read.
- **Compressed bodies** are left compressed by the parser (`auto_decompress=False`):
  `BodyReader` inflates them itself, bounded by the body limit.
- **Errors of the HTTP layer** (a malformed request line or header, a handler that raised):
  a JSON error body instead of aiohttp's plain text; when the request's path is unknown (the
  parser failed) the body has both dialects' fields, `{"type": "error", "error": {"type",
  "message", "param", "code"}}`, which OpenAI and Anthropic clients both read.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.hdrs import EXPECT
from aiohttp.web_protocol import RequestHandler

from ..config import Settings
from ..errors import (
    GatewayError,
    InvalidRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    anthropic_error_type,
)
from .health import HEALTH, Health
from .responses import internal_error

__all__ = [
    "PLAIN_MIDDLEWARES",
    "POST_ROUTES",
    "ConnectionGuard",
    "GatewayProtocol",
    "GatewayRunner",
    "direct_dispatch",
]

log = logging.getLogger("mini_llm.server")

_REFUSALS_LOGGED_EVERY = 10.0  # seconds: a flood of refused connections is one line per period


class ConnectionGuard:
    """Counts open connections per client address and in all; 0 is no cap."""

    __slots__ = ("_by_address", "_last_logged", "_open", "_refused", "per_client", "total")

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self._by_address: dict[str, int] = {}
        self._open = 0
        self._refused = 0
        self._last_logged = 0.0

    def admit(self, address: str) -> bool:
        held = self._by_address.get(address, 0)
        if (self.total and self._open >= self.total) or (
            self.per_client and held >= self.per_client
        ):
            self._note_refusal(address)
            return False
        self._open += 1
        self._by_address[address] = held + 1
        return True

    def release(self, address: str) -> None:
        self._open -= 1
        held = self._by_address[address] - 1
        if held:
            self._by_address[address] = held
        else:
            del self._by_address[address]

    @property
    def open(self) -> int:
        return self._open

    def _note_refusal(self, address: str) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._last_logged >= _REFUSALS_LOGGED_EVERY:
            log.warning(
                "refused %d connection(s) over the caps (latest from %s; %d open, %d from it; "
                "max_connections %d, max_connections_per_client %d)",
                self._refused,
                address,
                self._open,
                self._by_address.get(address, 0),
                self.total,
                self.per_client,
            )
            self._refused = 0
            self._last_logged = now


class GatewayProtocol(RequestHandler):
    """aiohttp's `RequestHandler` with a header timeout, connection caps and JSON errors."""

    __slots__ = ("_address", "_guard", "_head_timer", "_header_timeout")

    def __init__(
        self, manager: web.Server, *, guard: ConnectionGuard, header_timeout: float, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._header_timeout = header_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._address: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if not self._guard.admit(address):
            self.force_close()
            return
        self._address = address
        self._arm_head_timer()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._address is not None:
            self._guard.release(self._address)
            self._address = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # a request head is complete
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
        elif data and self._head_timer is None and self._waiter is not None:
            # idle on a kept-alive connection, and a next request has begun to arrive
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._head_timer = self._loop.call_later(self._header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        log.debug(
            "closing a connection from %s: no complete request head within %g s",
            self._address,
            self._header_timeout,
        )
        self.force_close()

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse or whose handler raised: a JSON
        error body in the client's dialect, and no traceback in the log for a client's
        mistake."""
        error: GatewayError
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
            error = internal_error()
        else:
            log.debug("bad request from %s: %s", request.remote, exc or message)
            text = str(getattr(exc, "message", None) or message or "Bad Request")
            if status == 413:
                error = PayloadTooLargeError(f"Request is too large: {text}")
            elif status == 408:
                error = RequestTimeoutError(text)
            else:
                error = InvalidRequestError(
                    f"Malformed HTTP request: {text}", code="invalid_http_request"
                )
        if request.writer.output_size > 0:  # an answer has begun: nothing more can be said
            raise ConnectionError("an answer was already under way")
        response = web.Response(
            body=_error_body(error, request.path, known=request.method != "UNKNOWN"),
            status=error.http_status,
            content_type="application/json",
        )
        response.force_close()
        return response


def _error_body(error: GatewayError, path: str, *, known: bool) -> bytes:
    if known:
        anthropic = path.startswith("/v1/messages")
        return error.anthropic_body() if anthropic else error.openai_body()
    # the parser failed before the path was known: one body both dialects' clients read
    return msgspec.json.encode(
        {
            "type": "error",
            "error": {
                "type": anthropic_error_type(error.http_status),
                "message": error.message,
                "param": error.param,
                "code": error.code,
            },
        }
    )


class GatewayServer(web.Server):
    """aiohttp's low-level `Server`, making `GatewayProtocol`s for its connections."""

    def __init__(
        self,
        handler: Any,
        *,
        guard: ConnectionGuard,
        header_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.guard = guard
        self._header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        return GatewayProtocol(
            self,
            loop=self._loop,
            guard=self.guard,
            header_timeout=self._header_timeout,
            **self._kwargs,
        )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

POST_ROUTES = web.AppKey("post_routes", dict[str, Handler])
"""The application's POST routes of a fixed path (each with its trailing-slash variant)."""
PLAIN_MIDDLEWARES = web.AppKey("plain_middlewares", tuple[Any, ...])
"""The application's own middlewares that read nothing of the route's match (the access
control): `direct_dispatch` may run them itself."""


def direct_dispatch(app: web.Application, routed: Handler) -> Handler:
    """The application's request handler, with a POST to a route of a fixed path (the model
    endpoints) sent straight to its handler (through the middlewares, as aiohttp would), without
    the router's lookup and the match bookkeeping around it. Anything else (another method, a
    query string, an escaped or unknown path, `Expect: 100-continue`) goes through `routed`
    (the application's own handler). An application with response hooks, or a middleware not
    among its `PLAIN_MIDDLEWARES` (one that may read the match: CORS), has no shortcut."""
    posts = app.get(POST_ROUTES)
    middlewares = tuple(app.middlewares)
    plain = app.get(PLAIN_MIDDLEWARES, ())
    if not posts or app.on_response_prepare or any(m not in plain for m in middlewares):
        return routed
    direct: dict[str, Handler] = {}
    for path, handler in posts.items():
        for middleware in reversed(middlewares):
            handler = functools.partial(middleware, handler=handler)
        direct[path] = handler

    async def dispatch(request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            handler = direct.get(request.raw_path)
            if handler is not None and EXPECT not in request.headers:
                return await handler(request)
        return await routed(request)

    return dispatch


class _DrainingRequest(web.Request):
    health: Health

    @property
    def keep_alive(self) -> bool:
        return not self.health.draining and super().keep_alive


class GatewayRunner(web.AppRunner):
    """An `AppRunner` whose server is a `GatewayServer` configured from `settings`."""

    __slots__ = ("_header_timeout", "guard")

    def __init__(self, app: web.Application, settings: Settings, **kwargs: Any) -> None:
        super().__init__(app, auto_decompress=False, **kwargs)
        self.guard = ConnectionGuard(settings.max_connections, settings.max_connections_per_client)
        self._header_timeout = settings.header_timeout

    async def _make_server(self) -> web.Server:
        app_server = await super()._make_server()  # starts the application up
        app = self.app
        health = app.get(HEALTH)
        request_factory: Any = app_server.request_factory
        if health is not None:
            # while the gateway drains, every answer closes its connection: the request says
            # it is not kept alive (what aiohttp asks when it makes the headers); costs
            # nothing per request, where an on_response_prepare hook is a coroutine each
            kind = type("DrainingRequest", (_DrainingRequest,), {"health": health})
            request_factory = functools.partial(app._make_request, _cls=kind)
        return GatewayServer(
            direct_dispatch(app, app_server.request_handler),
            request_factory=request_factory,
            handler_cancellation=app_server.handler_cancellation,
            loop=asyncio.get_running_loop(),
            guard=self.guard,
            header_timeout=self._header_timeout,
            **app_server._kwargs,
        )
