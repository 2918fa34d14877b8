"""The one pooled upstream HTTP client of the process, and how its failures map to errors."""

from __future__ import annotations

import asyncio

import aiohttp
from yarl import URL

from .errors import GatewayError, UpstreamConnectionError, UpstreamError, UpstreamTimeoutError
from .providers.base import UpstreamRequest, UpstreamResponse
from .resilience import Timeouts

__all__ = ["HttpTransport", "upstream_failure"]


def upstream_failure(exc: BaseException, provider: str) -> GatewayError:
    """The client-facing error for a transport exception (its text never holds a key)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return UpstreamTimeoutError(f"upstream {provider} timed out")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamConnectionError(f"upstream {provider} is unreachable")
    if isinstance(
        exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, ConnectionError)
    ):
        return UpstreamError(f"upstream {provider} closed the connection before answering in full")
    return UpstreamError(f"upstream {provider} failed: {type(exc).__name__}")


class HttpTransport:
    """One `aiohttp.ClientSession` for every upstream: keep-alive, bounded pool, TCP_NODELAY
    (aiohttp sets it on every connection), compressed answers decoded.

    aiohttp enforces the connect and total timeouts and, through `sock_read`, the wait for the
    answer's headers (and at most that between two reads); a stream's first event and its
    silences are watched by the caller (see `gateway.dispatch`).
    """

    def __init__(self, timeouts: Timeouts, pool_size: int, user_agent: str) -> None:
        self._default = timeouts
        # by id: Timeouts live as long as the targets holding them, and an int hashes fast
        self._client_timeouts: dict[int, tuple[Timeouts, aiohttp.ClientTimeout]] = {}
        self._pool_size = pool_size
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
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=0,
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
