"""The upstream HTTP/1.1 client: pooled keep-alive connections on asyncio protocols, answers
parsed by llhttp (httptools).

Every proxied request makes one upstream call, so its client is on the hot path: an
`aiohttp.ClientSession` request costs about 200 µs of CPU on a small machine (its request and
response objects, tracing signals, timeout contexts, payload registry), this client about 40 µs
for the same call. It does what an upstream call needs and nothing else:

- one pool per origin (scheme, host, port), LIFO reuse, at most `pool_per_host` connections to
  one origin and `pool_size` in all (0: no bound); a request that finds its pool full waits its
  turn (first come, first served: a freed connection is handed to the first waiter for its
  origin, and at `pool_size` an idle connection elsewhere is closed to make room) for at most
  the connect timeout (`PoolTimeout`), and a wait of `POOL_WAIT_LOGGED` seconds or more is
  logged; idle connections expire after `KEEPALIVE` seconds; one that the upstream closed is
  never reused;
- addresses resolved once per `DNS_TTL`, tried with Happy Eyeballs (RFC 8305: a next address
  250 ms after the one before, IPv6 and IPv4 interleaved) as aiohttp does; TLS with the
  system's trust store (`ssl.create_default_context()`, which honours `SSL_CERT_FILE`), SNI and
  hostname checks; TCP_NODELAY; IDNA host names; a URL's `user:password@` sent as Basic auth;
- `Content-Length`, chunked and close-delimited answers, 1xx skipped, HEAD, 204 and 304
  without a body; gzip (several members too) and deflate (zlib-wrapped or raw) decoded in
  bounded pieces (`Accept-Encoding: gzip, deflate` is sent unless the request names its own);
  an answer's head and trailers bounded (`HEAD_MAX`);
- timeouts (`Timeouts`): `connect` for a new connection, `first_byte` for the answer's headers
  and, for a whole answer, between two reads of its body (aiohttp's `sock_read`), `total` for
  the whole call, a stream included; a stream's silences are the relay's to watch;
- flow control: past `HIGH_WATER` unread bytes the socket is not read until the consumer
  catches up (a whole answer read with `read()` is not held back);
- a header name or value with CR, LF or NUL, or a URL with a control character or a space, is
  refused before anything is sent (no request smuggling); a POST is never sent twice
  (RFC 9110 §9.2.2): a failed call is the dispatcher's to retry.

Failures are `UpstreamConnectFailed` (an `OSError`: refused, DNS, TLS), `UpstreamDisconnected`
(a `ConnectionError`: closed before the answer was complete), `UpstreamProtocolError` (not
HTTP), `PoolTimeout` and `asyncio.TimeoutError`; `upstream.upstream_failure` maps them to the
client's error. The connection and its answer are `http1_conn.Conn`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
import ssl
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from aiohappyeyeballs import start_connection  # aiohttp's own dependency
from multidict import CIMultiDictProxy

from .http1_conn import (
    Conn,
    Origin,
    UpstreamConnectFailed,
    UpstreamDisconnected,
    UpstreamProtocolError,
)
from .providers.base import UpstreamRequest
from .resilience import Timeouts

__all__ = [
    "DNS_TTL",
    "KEEPALIVE",
    "POOL_WAIT_LOGGED",
    "Http1Response",
    "Http1Transport",
    "PoolTimeout",
    "UpstreamConnectFailed",
    "UpstreamDisconnected",
    "UpstreamProtocolError",
    "pool_wait",
]

log = logging.getLogger("mini_llm.upstream")

KEEPALIVE = 30.0
"""Seconds an idle connection is kept for reuse."""
POOL_WAIT_LOGGED = 0.1
"""Seconds a request may wait for a pooled connection before the wait is logged."""
DNS_TTL = 300.0
"""Seconds an origin's addresses are kept."""
HAPPY_EYEBALLS_DELAY = 0.25
_URLS_MAX = 4096
"""Parsed URLs kept (the URLs of a gateway's targets: a few per provider)."""
_BAD_TARGET = frozenset(chr(c) for c in (*range(0x21), 0x7F))
_T = TypeVar("_T")


class PoolTimeout(asyncio.TimeoutError):
    """No connection to the origin became free within the connect timeout (`pool_per_host`,
    `pool_size`)."""


class _Content:
    """`response.content`, as aiohttp's: `iter_any()` yields what has arrived, at once."""

    __slots__ = ("_response",)

    def __init__(self, response: Http1Response) -> None:
        self._response = response

    def iter_any(self) -> AsyncIterator[bytes]:
        return self._response._stream()


class Http1Response:
    """An upstream answer whose headers have arrived (`UpstreamResponse`)."""

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, conn: Conn) -> None:
        self._conn: Conn | None = conn
        self.status = conn.status
        assert conn.headers is not None
        self.headers: CIMultiDictProxy[str] = conn.headers

    @property
    def content(self) -> _Content:
        return _Content(self)

    async def read(self) -> bytes:
        conn = self._conn
        if conn is None:
            raise RuntimeError("the answer was released")
        conn.read_whole()
        while not conn.done and conn.error is None:
            waiter = conn.waiter = conn.loop.create_future()
            await waiter
        if conn.error is not None:
            raise conn.error
        return conn.take() if conn.chunks else b""

    async def _stream(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            raise RuntimeError("the answer was released")
        conn.streaming = True  # the read timeout is the relay's now (the total stays)
        while True:
            if conn.chunks:
                yield conn.take()
            elif conn.error is not None:
                raise conn.error
            elif conn.done:
                return
            else:
                waiter = conn.waiter = conn.loop.create_future()
                await waiter

    def release(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.release()

    def close(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.abort()
            conn.release()


def pool_wait(wait: float, host: object, port: object, per_host: int, size: int) -> None:
    """Log a request's wait for a pooled connection when it was long (either client)."""
    if wait >= POOL_WAIT_LOGGED:
        log.warning(
            "waited %.2f s for a pooled connection to %s:%s (pool_per_host %d, pool_size %d)",
            wait,
            host,
            port,
            per_host,
            size,
        )


def _expire(waiter: asyncio.Future[Conn | None]) -> None:
    if not waiter.done():
        waiter.set_exception(PoolTimeout())


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)


def _ascii_host(host: str) -> str:
    """A host name as it goes on the wire: IDNA 2008 (UTS #46), as browsers and yarl do."""
    if host.isascii():
        return host
    try:
        import idna  # aiohttp's (yarl's) dependency

        return str(idna.encode(host, uts46=True).decode("ascii"))
    except ImportError:  # pragma: no cover
        return host.encode("idna").decode("ascii")
    except idna.IDNAError as e:
        raise ValueError(f"not a valid host name: {host!r} ({e})") from None


async def _within(timeout: float, step: Awaitable[_T]) -> _T:
    """`step` within `timeout` seconds; a cancellation is never lost (3.11's `wait_for` could
    return a result that came as it was cancelled)."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await step
    return await asyncio.wait_for(step, timeout)  # pragma: no cover


class Http1Transport:
    """The pooled client (`providers.base.Transport`); one per gateway process."""

    def __init__(
        self, timeouts: Timeouts, pool_size: int, user_agent: str, pool_per_host: int = 1024
    ) -> None:
        self._default = timeouts
        self._pool_size = pool_size
        self._pool_per_host = pool_per_host
        self._user_agent = user_agent
        self._origins: dict[tuple[str, str, int], Origin] = {}
        self._conns: set[Conn] = set()
        self._urls: dict[str, tuple[Origin, str, str | None]] = {}
        self._open = 0
        self._waiters: deque[tuple[Origin, asyncio.Future[Conn | None]]] = deque()
        self._tls: ssl.SSLContext | None = None
        self._closing = False
        self._swept = 0.0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # start() sets it

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._closing = False

    async def close(self) -> None:
        self._closing = True  # no connection is opened or handed on from now
        waiters, self._waiters = self._waiters, deque()
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(UpstreamDisconnected("the gateway is shutting down"))
        for conn in list(self._conns):  # idle or busy: an answer still read ends in an error
            conn.abort()

    # -- requests ------------------------------------------------------------------------------

    async def send(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> Http1Response:
        assert self.loop is not None, "Http1Transport.start() was not awaited"
        if self._closing:
            raise UpstreamDisconnected("the gateway is shutting down")
        timeouts = timeouts or self._default
        found = self._urls.get(request.url)
        origin, target, auth = found if found is not None else self._parse(request.url)
        method = request.method
        body = request.body or b""
        given = request.headers
        names = {name.lower() for name in given}
        lines = [f"{method} {target} HTTP/1.1"]
        if "host" not in names:
            lines.append("Host: " + origin.host_header)
        lines.extend(f"{name}: {value}" for name, value in given.items())
        if auth is not None and "authorization" not in names:
            lines.append("Authorization: " + auth)
        if "user-agent" not in names:
            lines.append("User-Agent: " + self._user_agent)
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: gzip, deflate")
        if "content-length" not in names and (body or method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(body)}")
        lines.append("\r\n")
        head = "\r\n".join(lines)
        # every line ends in CRLF and no other CR, LF or NUL is in it: no header can be forged
        breaks = len(lines)
        if head.count("\n") != breaks or head.count("\r") != breaks or "\0" in head:
            raise ValueError("a header of the upstream request holds CR, LF or NUL")
        data = head.encode()
        loop = self.loop
        now = loop.time()
        # others wait for a connection already: their turn first
        conn = None if self._waiters else self._reuse(origin, now)
        if conn is None:
            conn = await self._acquire(origin, timeouts, now)
            now = loop.time()
        waiter = conn.begin(method, timeouts, now)
        transport = conn.transport
        assert transport is not None
        if len(body) <= 65536:
            transport.write(data + body if body else data)
        else:
            transport.write(data)
            transport.write(body)
        try:
            await waiter
        except BaseException:  # cancelled: the answer will never be read
            conn.abort()
            conn.release()
            raise
        if conn.error is not None:
            error = conn.error
            conn.release()
            raise error
        return Http1Response(conn)

    def _parse(self, url: str) -> tuple[Origin, str, str | None]:
        if any(c in _BAD_TARGET for c in url):  # urlsplit would drop a tab or a line feed
            raise ValueError("the upstream URL holds a space or a control character")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        if scheme not in ("http", "https") or not host:
            raise ValueError(f"not an http(s) URL: {url!r}")
        host = _ascii_host(host)
        port = _port(scheme, parts.port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        auth = None
        if parts.username is not None:
            user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            auth = "Basic " + base64.b64encode(user.encode()).decode("ascii")
        key = (scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            shown = f"[{host}]" if ":" in host else host
            host_header = shown if port == _port(scheme, None) else f"{shown}:{port}"
            tls = self._context() if scheme == "https" else None
            origin = self._origins[key] = Origin(host, port, tls, host_header)
        if len(self._urls) >= _URLS_MAX:
            self._urls.clear()
        found = self._urls[url] = (origin, target, auth)
        return found

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    # -- the pool ------------------------------------------------------------------------------

    def _reuse(self, origin: Origin, now: float) -> Conn | None:
        idle = origin.idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > KEEPALIVE:
                conn.abort()
                continue
            return conn
        return None

    def _evictable(self, origin: Origin) -> bool:
        """Whether closing an idle connection at another origin would let `origin` open one."""
        if self._pool_per_host and origin.count >= self._pool_per_host:
            return False
        return any(o.idle for o in self._origins.values() if o is not origin)

    def _evict(self, origin: Origin) -> None:
        """At `pool_size` in all but not at this origin's bound: close the connection that has
        been idle longest at another origin, so that idle connections never keep a request
        waiting."""
        if not self._pool_size or self._open < self._pool_size:
            return
        if self._pool_per_host and origin.count >= self._pool_per_host:
            return
        oldest: Conn | None = None
        for other in self._origins.values():
            for conn in other.idle:
                if not conn.closed and (oldest is None or conn.idle_since < oldest.idle_since):
                    oldest = conn
        if oldest is not None:
            oldest.abort()

    def _can_open(self, origin: Origin) -> bool:
        return (not self._pool_per_host or origin.count < self._pool_per_host) and (
            not self._pool_size or self._open < self._pool_size
        )

    async def _acquire(self, origin: Origin, timeouts: Timeouts, started: float) -> Conn:
        loop = self.loop
        behind = bool(self._waiters)  # others wait already: a place behind them
        waited = False
        while True:
            if not behind:
                conn = self._reuse(origin, loop.time())
                if conn is not None:
                    break
                if not self._can_open(origin):
                    self._evict(origin)  # an idle connection elsewhere may give its place
                if self._can_open(origin):
                    origin.count += 1
                    self._open += 1
                    try:
                        conn = await self._connect(origin, timeouts.connect)
                    except BaseException:
                        origin.count -= 1
                        self._open -= 1
                        self._wake()
                        raise
                    break
            behind = False
            # the wait for a free connection is bounded by the connect timeout
            waiter: asyncio.Future[Conn | None] = loop.create_future()
            entry = (origin, waiter)
            self._waiters.append(entry)
            waited = True
            late = loop.call_at(started + timeouts.connect, _expire, waiter)
            try:
                given = await waiter
            except BaseException:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    # our turn came, and is not taken: the next one's
                    handed = waiter.result()
                    if handed is not None:
                        self.connection_idle(handed)
                    else:
                        self._wake()
                raise
            finally:
                late.cancel()
            if given is not None and not given.closed:
                conn = given  # handed over by the request that used it
                break
        if waited:
            pool_wait(
                loop.time() - started,
                origin.host,
                origin.port,
                self._pool_per_host,
                self._pool_size,
            )
        return conn

    async def _connect(self, origin: Origin, timeout: float) -> Conn:
        """A new connection, counted by the caller; in the pool's set once handed over."""
        try:
            conn = await _within(timeout, self._open_connection(origin))
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError() from None
        except OSError as e:
            reason = e.strerror or str(e) or type(e).__name__
            raise UpstreamConnectFailed(origin.host, origin.port, reason) from None
        if conn.closed:  # the upstream hung up before it was handed over
            raise UpstreamDisconnected("the upstream closed the connection as it was opened")
        if self._closing:
            conn.abort()  # not counted yet: the caller gives its place back
            raise UpstreamDisconnected("the gateway is shutting down")
        conn.counted = True
        self._conns.add(conn)
        return conn

    async def _open_connection(self, origin: Origin) -> Conn:
        loop = self.loop
        now = loop.time()
        if not origin.addresses or origin.resolved_until <= now:
            infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
            if not infos:
                raise OSError(f"no address for {origin.host}")
            origin.addresses, origin.resolved_until = list(infos), now + DNS_TTL
        sock = await start_connection(
            origin.addresses, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1
        )
        with contextlib.suppress(OSError):  # not TCP
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            _, conn = await loop.create_connection(
                lambda: Conn(self, origin),
                sock=sock,
                ssl=origin.ssl,
                server_hostname=origin.host if origin.ssl is not None else None,
            )
        except BaseException:
            # asyncio's transport holds this very socket and closes it as it shuts down (a TLS
            # one later): closing it here would free its descriptor under the transport;
            # uvloop detaches what it takes, and may not take it (uvloop#653)
            if not isinstance(loop, asyncio.BaseEventLoop):
                sock.close()
            raise
        return conn

    def connection_idle(self, conn: Conn) -> None:
        """A connection read to its end, reusable: to the first request waiting for its origin,
        else into the pool."""
        origin = conn.origin
        now = conn.idle_since = self.loop.time()
        if self._waiters and not self._closing:
            # first come, first served: the first request in line that this connection can
            # serve takes it; one for another origin, held back by `pool_size` only, gets
            # its place (the connection closes, and `connection_gone` wakes it)
            for entry in self._waiters:
                waiting, waiter = entry
                if waiter.done():
                    continue
                if waiting is origin:
                    self._waiters.remove(entry)
                    waiter.set_result(conn)
                    return
                if not self._pool_per_host or waiting.count < self._pool_per_host:
                    conn.abort()
                    return
        origin.idle.append(conn)
        if now - self._swept > KEEPALIVE:  # now and then, close what idled too long
            self._swept = now
            for other in self._origins.values():
                for old in [c for c in other.idle if now - c.idle_since > KEEPALIVE]:
                    old.abort()

    def connection_gone(self, conn: Conn) -> None:
        """A counted connection closed (once)."""
        self._conns.discard(conn)
        origin = conn.origin
        origin.count -= 1
        self._open -= 1
        if not conn.busy and conn in origin.idle:
            origin.idle.remove(conn)
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        """Let the first waiting request that can now proceed go on."""
        if self._closing:
            return
        for entry in list(self._waiters):
            origin, waiter = entry
            if waiter.done():
                self._waiters.remove(entry)
                continue
            if origin.idle or self._can_open(origin) or self._evictable(origin):
                self._waiters.remove(entry)
                waiter.set_result(None)
                return
