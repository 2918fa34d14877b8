"""The one pooled upstream HTTP client of the process, and how its failures map to errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from yarl import URL

from .errors import GatewayError, UpstreamConnectionError, UpstreamError, UpstreamTimeoutError
from .http1 import (
    POOL_WAIT_LOGGED,
    Http1Transport,
    PoolTimeout,
    UpstreamConnectFailed,
    UpstreamProtocolError,
    pool_wait,
)
from .providers.base import UpstreamRequest, UpstreamResponse
from .resilience import Timeouts

__all__ = ["POOL_WAIT_LOGGED", "HttpTransport", "http_transport", "upstream_failure"]

log = logging.getLogger("mini_llm.upstream")


def upstream_failure(exc: BaseException, provider: str) -> GatewayError:
    """The client-facing error for a transport exception (its text never holds a key)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, PoolTimeout):
        return UpstreamTimeoutError(
            f"no connection to upstream {provider} became free within the connect timeout "
            "(pool_per_host, pool_size)"
        )
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeoutError(f"upstream {provider} timed out")
    if isinstance(exc, UpstreamProtocolError):
        return UpstreamError(f"upstream {provider} answered with malformed HTTP")
    if isinstance(exc, (aiohttp.ClientConnectorError, UpstreamConnectFailed)):
        host = getattr(exc, "host", None)
        port = getattr(exc, "port", None)
        where = f" at {host}:{port}" if host else ""
        return UpstreamConnectionError(f"upstream {provider} is unreachable{where}")
    if isinstance(
        exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionError)
    ):
        return UpstreamError(f"upstream {provider} closed the connection before answering in full")
    return UpstreamError(f"upstream {provider} failed: {type(exc).__name__}")


class _Connector(aiohttp.TCPConnector):
    """A `TCPConnector` that logs a request's wait for a free connection when it is long.

    Only a request that finds the pool full goes through `_wait_for_available_connection`,
    so the others pay nothing (an `aiohttp.TraceConfig` would cost every request its trace
    objects and signals, measured at tens of µs).
    """

    async def _wait_for_available_connection(self, key: Any, traces: Any) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await super()._wait_for_available_connection(key, traces)
        finally:
            pool_wait(
                loop.time() - started,
                getattr(key, "host", "?"),
                getattr(key, "port", "?"),
                self.limit_per_host,
                self.limit,
            )


class HttpTransport:
    """One `aiohttp.ClientSession` for every upstream: keep-alive, pooled connections (at
    most `pool_size` in all and `pool_per_host` to one host; 0 is no bound), TCP_NODELAY
    (aiohttp sets it on every connection), compressed answers decoded.

    aiohttp enforces the connect and total timeouts and, through `sock_read`, the wait for the
    answer's headers (and at most that between two reads); a stream's first event and its
    silences are watched by the caller (see `gateway.dispatch`).
    """

    def __init__(
        self, timeouts: Timeouts, pool_size: int, user_agent: str, pool_per_host: int = 1024
    ) -> None:
        self._default = timeouts
        # by id: Timeouts live as long as the targets holding them, and an int hashes fast
        self._client_timeouts: dict[int, tuple[Timeouts, aiohttp.ClientTimeout]] = {}
        self._pool_size = pool_size
        self._pool_per_host = pool_per_host
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _client_timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        found = self._client_timeouts.get(id(timeouts))
        if found is None or found[0] is not timeouts:
            client_timeout = aiohttp.ClientTimeout(
                total=timeouts.total,
                connect=None,
                sock_connect=timeouts.connect,
                sock_read=timeouts.first_byte,
            )
            found = self._client_timeouts[id(timeouts)] = (timeouts, client_timeout)
        return found[1]

    async def start(self) -> None:
        # a stream holds its connection for minutes: the bound is per host, so that one busy
        # upstream cannot starve the others, and a wait for a connection is logged
        connector = _Connector(
            limit=self._pool_size,
            limit_per_host=self._pool_per_host,
            ttl_dns_cache=300,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._client_timeout(self._default),
            headers={"User-Agent": self._user_agent},
            auto_decompress=True,
            trust_env=False,
        )

    async def send(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> UpstreamResponse:
        session = self._session
        assert session is not None, "HttpTransport.start() was not awaited"
        return await session.request(
            request.method,
            URL(request.url, encoded=True),  # as built: percent-encoded, never re-normalised
            data=request.body,
            headers=request.headers,
            timeout=self._client_timeout(timeouts or self._default),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def http_transport(
    kind: str, timeouts: Timeouts, pool_size: int, user_agent: str, pool_per_host: int
) -> HttpTransport | Http1Transport:
    """The upstream client `http_client` names: "builtin" (`http1.Http1Transport`) or
    "aiohttp"."""
    if kind == "aiohttp":
        return HttpTransport(timeouts, pool_size, user_agent, pool_per_host)
    return Http1Transport(timeouts, pool_size, user_agent, pool_per_host)
