"""The upstream HTTP/1.1 client: pooled keep-alive connections on asyncio protocols, answers
parsed by llhttp (httptools).

Every proxied request makes one upstream call, so its client is on the hot path: an
`aiohttp.ClientSession` request costs about 200 µs of CPU on a small machine (its request and
response objects, tracing signals, timeout contexts, payload registry), this client about 40 µs
for the same call. It does what an upstream call needs and nothing else:

- one pool per origin (scheme, host, port), LIFO reuse, at most `pool_per_host` connections to
  one origin and `pool_size` in all (0: no bound; a request that finds its pool full waits, and
  a wait of `POOL_WAIT_LOGGED` seconds or more is logged); idle connections expire after
  `KEEPALIVE` seconds; one that the upstream closed is never reused;
- TLS with the system's trust store (`ssl.create_default_context()`, which honours
  `SSL_CERT_FILE`), SNI and hostname checks; TCP_NODELAY;
- `Content-Length`, chunked and close-delimited answers, 1xx skipped, HEAD, 204 and 304
  without a body; gzip and deflate decoded (`Accept-Encoding: gzip, deflate` is sent unless
  the request names its own);
- timeouts (`Timeouts`): `connect` for a new connection, `first_byte` for the answer's headers
  and, for a whole answer, between two reads of its body (aiohttp's `sock_read`), `total` for
  the whole call, a stream included; a stream's silences are the relay's to watch;
- a streamed answer is read with flow control: past `HIGH_WATER` unread bytes the socket is not
  read until the consumer catches up;
- a header name or value with CR, LF or NUL, or a URL with a control character or a space,
  is refused before anything is sent (no request smuggling); a POST is never sent twice
  (RFC 9110 §9.2.2): a failed call is the dispatcher's to retry.

Failures are `UpstreamConnectFailed` (an `OSError`: refused, DNS, TLS), `UpstreamDisconnected`
(a `ConnectionError`: closed before the answer was complete), `UpstreamProtocolError` (not
HTTP) and `asyncio.TimeoutError`; `upstream.upstream_failure` maps them to the client's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from multidict import CIMultiDict, CIMultiDictProxy

from .providers.base import UpstreamRequest
from .resilience import Timeouts

__all__ = [
    "KEEPALIVE",
    "POOL_WAIT_LOGGED",
    "Http1Response",
    "Http1Transport",
    "UpstreamConnectFailed",
    "UpstreamDisconnected",
    "UpstreamProtocolError",
]

log = logging.getLogger("mini_llm.upstream")

KEEPALIVE = 30.0
"""Seconds an idle connection is kept for reuse."""
POOL_WAIT_LOGGED = 0.1
"""Seconds a request may wait for a pooled connection before the wait is logged."""
HIGH_WATER = 1 << 20
"""Unread bytes of an answer past which the socket is not read until the consumer reads (a
whole answer read with `read()` is not held back)."""
PIECE = 1 << 18
"""Bytes decompressed at most in one step."""
HEAD_MAX = 1 << 16
"""Bytes of an answer that are not body (its head, chunk sizes, trailers), at most."""
_CHUNK_FRAMING = 64
"""Bytes of framing allowed per chunk (its size line, extensions and CRLFs)."""
_URLS_MAX = 4096
"""Parsed URLs kept (the URLs of a gateway's targets: a few per provider)."""
_BAD_TARGET = frozenset(chr(c) for c in (*range(0x21), 0x7F))


class UpstreamConnectFailed(OSError):
    """No connection: refused, unknown host, TLS handshake refused, or none before the
    connect timeout."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {reason}")
        self.host = host
        self.port = port


class UpstreamDisconnected(ConnectionError):
    """The upstream closed the connection before its answer was complete."""


class UpstreamProtocolError(ConnectionError):
    """The upstream's bytes were not an HTTP/1.1 answer."""


class _Origin:
    """One (scheme, host, port): its idle connections and how many are open."""

    __slots__ = ("count", "host", "host_header", "idle", "port", "ssl")

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, host_header: str):
        self.host = host
        self.port = port
        self.ssl = tls
        self.host_header = host_header
        self.idle: list[_Conn] = []
        self.count = 0


class _Conn(asyncio.Protocol):
    """One connection and the answer it is reading (one at a time: no pipelining)."""

    def __init__(self, pool: Http1Transport, origin: _Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.closed = False
        self.busy = False
        self.idle_since = 0.0
        # the answer being read
        self.head_only = False
        self.raw: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.headers: CIMultiDictProxy[str] | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.streaming = False
        self.whole = False
        self.done = False
        self.ending = False
        self.keep_alive = False
        self.until_close = False
        self.decoder: Any = None
        self.pending = b""
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.total_deadline = 0.0
        self.first_byte = 0.0
        self.last_read = 0.0
        self.received = 0
        self.framing = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self.busy or self.done or self.ending:  # bytes nobody asked for
            self.abort()
            return
        self.last_read = self.loop.time()
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            self.fail(UpstreamProtocolError("the upstream switched protocols"))
            return
        except HttpParserError as e:
            self.fail(UpstreamProtocolError(f"malformed HTTP answer: {e}"))
            return
        # what is not body (the head, chunk sizes, trailers) is bounded: an endless head or
        # trailer is refused, not buffered until a timeout
        if self.received - self.framing > HEAD_MAX:
            self.fail(UpstreamProtocolError("the answer's head or trailers are too large"))

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.pool._gone(self)
        if self.busy and not self.done and not self.ending and self.error is None:
            if self.headers is not None and self.until_close:
                self._finish()  # a close-delimited body ends here
            else:
                self.fail(
                    UpstreamDisconnected(
                        "the upstream closed the connection before its answer was complete"
                    )
                )

    # -- llhttp callbacks ----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers is None:
            self.raw.append((name, value))

    def on_chunk_header(self) -> None:
        self.framing += _CHUNK_FRAMING

    def on_headers_complete(self) -> None:
        if self.done or self.ending:  # a second answer nobody asked for: never reused
            self.keep_alive = False
            return
        parser = self.parser
        status = parser.get_status_code()
        if status < 200:  # 1xx: an interim answer; the real one follows
            self.raw = []
            return
        self.status = status
        headers: CIMultiDict[str] = CIMultiDict(
            [(n.decode("latin-1"), v.decode("latin-1").rstrip(" \t")) for n, v in self.raw]
        )
        self.headers = CIMultiDictProxy(headers)
        self.keep_alive = parser.should_keep_alive()
        encoding = headers.get("Content-Encoding")
        if encoding is not None:
            self._decoder(encoding.strip().lower())
        if (
            "Content-Length" not in headers
            and status not in (204, 304)
            and "chunked" not in headers.get("Transfer-Encoding", "").lower()
        ):
            self.until_close = not self.head_only
            self.keep_alive = False
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.head_only:
            self.keep_alive = False  # llhttp cannot be told the answer has no body
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.done or self.ending or self.error is not None:
            return
        self.framing += len(body)
        if self.decoder is not None:
            self._inflate(body)
        else:
            self.chunks.append(body)
            self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.whole and not self.paused:
            self.paused = True  # flow control: the socket waits for the consumer
            assert self.transport is not None
            self.transport.pause_reading()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_message_complete(self) -> None:
        if self.headers is None:  # the end of a 1xx
            return
        if not self.done and not self.ending:
            self._finish()

    # -- the answer ----------------------------------------------------------------------------

    def _decoder(self, encoding: str) -> None:
        if encoding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decoder = _Deflate()
        elif encoding not in ("identity", ""):
            self.fail(UpstreamProtocolError(f"unsupported Content-Encoding {encoding!r}"))

    def _inflate(self, data: bytes) -> None:
        """Decompress in pieces of at most `PIECE` bytes, and only while the consumer keeps
        up (a stream) : what is left waits in `pending` (and the socket is not read), so a
        small compressed body cannot become gigabytes in memory at once."""
        decoder = self.decoder
        try:
            while data:
                piece = decoder.decompress(data, PIECE)
                data = decoder.unconsumed_tail
                if piece:
                    self.chunks.append(piece)
                    self.buffered += len(piece)
                if data and self.buffered > HIGH_WATER and not self.whole:
                    break
        except zlib.error as e:
            self.fail(UpstreamProtocolError(f"malformed compressed answer: {e}"))
            return
        self.pending = data
        if data and not self.paused:
            self.paused = True
            assert self.transport is not None
            self.transport.pause_reading()

    def _finish(self) -> None:
        if self.pending:  # the end came; what was sent is not all decompressed yet
            self.ending = True
            return
        self.ending = False
        decoder = self.decoder
        if decoder is not None:
            try:
                rest = decoder.flush()
            except zlib.error as e:
                self.fail(UpstreamProtocolError(f"malformed compressed answer: {e}"))
                return
            if rest:
                self.chunks.append(rest)
                self.buffered += len(rest)
        self.done = True
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def begin(self, method: str, timeouts: Timeouts, now: float) -> asyncio.Future[None]:
        """Ready to read the answer to a request about to be written."""
        self.busy = True
        self.head_only = method == "HEAD"
        self.raw = []
        self.status = 0
        self.headers = None
        self.chunks = deque()
        self.buffered = self.received = self.framing = 0
        self.streaming = self.whole = self.done = self.ending = self.until_close = False
        self.decoder = None
        self.pending = b""
        self.error = None
        self.first_byte = timeouts.first_byte
        self.last_read = now
        self.total_deadline = now + timeouts.total
        self.timer = self.loop.call_at(
            min(now + timeouts.first_byte, self.total_deadline), self._due
        )
        waiter = self.waiter = self.loop.create_future()
        return waiter

    def _due(self) -> None:
        """The timer: fires at the earliest deadline, re-armed lazily (a read only stamps the
        time). The wait between reads counts only while nothing holds the reading back."""
        self.timer = None
        if self.done or self.error is not None:
            return
        now = self.loop.time()
        if now >= self.total_deadline:
            self.fail(asyncio.TimeoutError())
            return
        due = self.total_deadline
        if not self.streaming and not self.paused:
            read_due = self.last_read + self.first_byte
            if now >= read_due:
                self.fail(asyncio.TimeoutError())
                return
            due = min(due, read_due)
        elif self.paused:
            self.last_read = now  # held back by the consumer: not the upstream's silence
            due = min(due, now + self.first_byte)
        self.timer = self.loop.call_at(due, self._due)

    def fail(self, error: BaseException) -> None:
        """The answer cannot be read to its end: `error` for whoever waits, and the connection
        dropped."""
        if self.error is None and not self.done:
            self.error = error
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        self.abort()

    def take(self) -> bytes:
        """Every unread byte, at once."""
        chunks = self.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.pending:
            self._inflate(self.pending)
            if not self.pending and self.ending and self.error is None:
                self._finish()
        if self.paused and not self.pending and not self.closed:
            self.paused = False
            assert self.transport is not None
            self.transport.resume_reading()
        return data

    def read_whole(self) -> None:
        """The whole answer is wanted: no flow control."""
        self.whole = True
        if self.pending:
            self._inflate(self.pending)
            if not self.pending and self.ending and self.error is None:
                self._finish()
        if self.paused and not self.closed:
            self.paused = False
            assert self.transport is not None
            self.transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection; an answer still being read ends in an error."""
        if self.busy and self.error is None and not self.done:
            self.error = UpstreamDisconnected("the connection was closed before the answer ended")
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            self.pool._gone(self)

    def release(self) -> None:
        """The caller is done with the answer: back to the pool if it was read to its end and
        may be reused, else closed."""
        if not self.busy:
            return
        self.busy = False
        self.waiter = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.done and self.keep_alive and not self.closed and self.error is None:
            self.chunks = deque()
            self.pool._idle(self)
        else:
            self.abort()


class _Deflate:
    """`deflate` as servers send it: zlib-wrapped as the RFC says, or raw as some do."""

    def __init__(self) -> None:
        self._obj: Any = zlib.decompressobj()
        self._first = True

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._first:
            self._first = False
            try:
                return bytes(self._obj.decompress(data, max_length))
            except zlib.error:
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return bytes(self._obj.decompress(data, max_length))

    @property
    def unconsumed_tail(self) -> bytes:
        return bytes(self._obj.unconsumed_tail)

    def flush(self) -> bytes:
        return bytes(self._obj.flush())


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

    def __init__(self, conn: _Conn) -> None:
        self._conn: _Conn | None = conn
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


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(asyncio.TimeoutError())


def _port(scheme: str, port: int | None) -> int:
    return port if port is not None else (443 if scheme == "https" else 80)


class Http1Transport:
    """The pooled client (`providers.base.Transport`); one per gateway process."""

    def __init__(
        self, timeouts: Timeouts, pool_size: int, user_agent: str, pool_per_host: int = 1024
    ) -> None:
        self._default = timeouts
        self._pool_size = pool_size
        self._pool_per_host = pool_per_host
        self._user_agent = user_agent
        self._origins: dict[tuple[str, str, int], _Origin] = {}
        self._conns: set[_Conn] = set()
        self._urls: dict[str, tuple[_Origin, str]] = {}
        self._open = 0
        self._waiters: deque[tuple[_Origin, asyncio.Future[None]]] = deque()
        self._tls: ssl.SSLContext | None = None
        self._closing = False
        self._swept = 0.0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # start() sets it

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._closing = False

    async def close(self) -> None:
        self._closing = True
        for conn in list(self._conns):  # idle or busy: an answer still read ends in an error
            conn.abort()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(UpstreamDisconnected("the gateway is shutting down"))
        self._waiters.clear()

    # -- requests ------------------------------------------------------------------------------

    async def send(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> Http1Response:
        assert self.loop is not None, "Http1Transport.start() was not awaited"
        if self._closing:
            raise UpstreamDisconnected("the gateway is shutting down")
        timeouts = timeouts or self._default
        found = self._urls.get(request.url)
        origin, target = found if found is not None else self._parse(request.url)
        method = request.method
        body = request.body or b""
        given = request.headers
        names = {name.lower() for name in given}
        lines = [f"{method} {target} HTTP/1.1"]
        if "host" not in names:
            lines.append("Host: " + origin.host_header)
        lines.extend(f"{name}: {value}" for name, value in given.items())
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
        conn = self._reuse(origin, now)
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

    def _parse(self, url: str) -> tuple[_Origin, str]:
        if any(c in _BAD_TARGET for c in url):  # urlsplit would drop a tab or a line feed
            raise ValueError("the upstream URL holds a space or a control character")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        if scheme not in ("http", "https") or not host:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        port = _port(scheme, parts.port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        key = (scheme, host, port)
        origin = self._origins.get(key)
        if origin is None:
            shown = f"[{host}]" if ":" in host else host
            host_header = shown if port == _port(scheme, None) else f"{shown}:{port}"
            tls = self._context() if scheme == "https" else None
            origin = self._origins[key] = _Origin(host, port, tls, host_header)
        if len(self._urls) >= _URLS_MAX:
            self._urls.clear()
        found = self._urls[url] = (origin, target)
        return found

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    # -- the pool ------------------------------------------------------------------------------

    def _reuse(self, origin: _Origin, now: float) -> _Conn | None:
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

    def _evict(self, origin: _Origin) -> None:
        """At `pool_size` in all but not at this origin's bound: close the connection that has
        been idle longest at another origin, so that idle connections never keep a request
        waiting."""
        if not self._pool_size or self._open < self._pool_size:
            return
        if self._pool_per_host and origin.count >= self._pool_per_host:
            return
        oldest: _Conn | None = None
        for other in self._origins.values():
            for conn in other.idle:
                if not conn.closed and (oldest is None or conn.idle_since < oldest.idle_since):
                    oldest = conn
        if oldest is not None:
            oldest.abort()

    def _evictable(self, origin: _Origin) -> bool:
        """Whether closing an idle connection at another origin would let `origin` open one."""
        if self._pool_per_host and origin.count >= self._pool_per_host:
            return False
        return any(o.idle for o in self._origins.values() if o is not origin)

    def _can_open(self, origin: _Origin) -> bool:
        return (not self._pool_per_host or origin.count < self._pool_per_host) and (
            not self._pool_size or self._open < self._pool_size
        )

    async def _acquire(self, origin: _Origin, timeouts: Timeouts, started: float) -> _Conn:
        loop = self.loop
        waited = False
        while True:
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
            if not self._pool_size and not self._pool_per_host:  # pragma: no cover - unbounded
                continue
            # the wait for a free connection is bounded by the connect timeout
            waiter = loop.create_future()
            entry = (origin, waiter)
            self._waiters.append(entry)
            waited = True
            late = loop.call_at(started + timeouts.connect, _expire, waiter)
            try:
                await waiter
            except BaseException:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                elif waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._wake()  # our turn, not taken: the next one's
                raise
            finally:
                late.cancel()
        if waited:
            wait = loop.time() - started
            if wait >= POOL_WAIT_LOGGED:
                log.warning(
                    "waited %.2f s for a pooled connection to %s:%s (pool_per_host %d, "
                    "pool_size %d)",
                    wait,
                    origin.host,
                    origin.port,
                    self._pool_per_host,
                    self._pool_size,
                )
        return conn

    async def _connect(self, origin: _Origin, timeout: float) -> _Conn:
        loop = self.loop
        connecting = loop.create_connection(
            lambda: _Conn(self, origin),
            origin.host,
            origin.port,
            ssl=origin.ssl,
            server_hostname=origin.host if origin.ssl is not None else None,
        )
        try:
            transport, conn = await asyncio.wait_for(connecting, timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError() from None
        except OSError as e:
            reason = e.strerror or type(e).__name__
            raise UpstreamConnectFailed(origin.host, origin.port, reason) from None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # not TCP
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conns.add(conn)
        if self._closing:
            conn.abort()
            raise UpstreamDisconnected("the gateway is shutting down")
        return conn

    def _idle(self, conn: _Conn) -> None:
        now = conn.idle_since = self.loop.time()
        conn.origin.idle.append(conn)
        if self._waiters:
            self._wake()
        if now - self._swept > KEEPALIVE:  # now and then, close what idled too long
            self._swept = now
            for origin in self._origins.values():
                for old in [c for c in origin.idle if now - c.idle_since > KEEPALIVE]:
                    old.abort()

    def _gone(self, conn: _Conn) -> None:
        """A connection closed (counted once)."""
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
        for entry in self._waiters:
            origin, waiter = entry
            if waiter.done():
                continue
            if origin.idle or self._can_open(origin) or self._evictable(origin):
                self._waiters.remove(entry)
                waiter.set_result(None)
                return
