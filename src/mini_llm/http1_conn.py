"""One upstream HTTP/1.1 connection and the answer it reads (see `http1.py`): an asyncio
protocol fed to llhttp (httptools), with the answer's bytes, flow control, decompression and
timers. The pool it belongs to (`http1.Http1Transport`) counts it and takes it back."""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser
from multidict import CIMultiDict, CIMultiDictProxy

from .resilience import Timeouts

if TYPE_CHECKING:
    from .http1 import Http1Transport

__all__ = [
    "HEAD_MAX",
    "HIGH_WATER",
    "PIECE",
    "Conn",
    "Origin",
    "UpstreamConnectFailed",
    "UpstreamDisconnected",
    "UpstreamProtocolError",
]

HIGH_WATER = 1 << 20
"""Unread bytes of an answer past which the socket is not read until the consumer reads (a
whole answer read with `read()` is not held back)."""
PIECE = 1 << 18
"""Bytes decompressed at most in one step."""
HEAD_MAX = 1 << 16
"""Bytes of an answer that are not body (its head, chunk sizes, trailers), at most."""
_CHUNK_FRAMING = 64
"""Bytes of framing allowed per chunk (its size line, extensions and CRLFs)."""


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


class Origin:
    """One (scheme, host, port): its idle connections, how many are open, its addresses (kept
    `DNS_TTL` seconds)."""

    __slots__ = (
        "addresses",
        "count",
        "host",
        "host_header",
        "idle",
        "port",
        "resolved_until",
        "ssl",
    )

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None, host_header: str):
        self.host = host
        self.port = port
        self.ssl = tls
        self.host_header = host_header
        self.idle: list[Conn] = []
        self.count = 0
        self.addresses: list[Any] = []
        self.resolved_until = 0.0


class Conn(asyncio.Protocol):
    """One connection and the answer it is reading (one at a time: no pipelining)."""

    def __init__(self, pool: Http1Transport, origin: Origin) -> None:
        self.pool = pool
        self.origin = origin
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.closed = False
        self.counted = False
        """In the pool's counts (from the moment `_connect` hands it over)."""
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
        self.gzip = False
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
            if self.counted:
                self.pool.connection_gone(self)
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

    def on_message_begin(self) -> None:
        if self.done or self.ending:  # bytes beyond the answer: this connection is not reused
            self.keep_alive = False

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
        if self.pending:  # inflating waits for the consumer: this waits behind it
            self.pending += body
            return
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

    def _fresh_decoder(self) -> Any:
        return zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gzip else _Deflate()

    def _decoder(self, encoding: str) -> None:
        if encoding in ("gzip", "x-gzip"):
            self.gzip = True
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
                if not data and decoder.eof and decoder.unused_data:
                    # gzip of several members (RFC 1952): the next one, anew
                    data = decoder.unused_data
                    decoder = self.decoder = self._fresh_decoder()
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
        self.gzip = self.paused = False
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
            if self.counted:
                self.pool.connection_gone(self)

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
        if (
            self.done
            and self.keep_alive
            and not self.paused
            and not self.closed
            and self.error is None
        ):
            self.chunks = deque()
            self.pool.connection_idle(self)
        else:
            self.abort()


class _Deflate:
    """`deflate` as servers send it: zlib-wrapped as the RFC says, or raw as some do (told
    apart by the first byte: a zlib stream's says deflate, 8, in its low bits)."""

    def __init__(self) -> None:
        self._obj: Any = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._obj is None:
            if not data:
                return b""
            self._obj = zlib.decompressobj(
                zlib.MAX_WBITS if data[0] & 0x0F == 8 else -zlib.MAX_WBITS
            )
        return bytes(self._obj.decompress(data, max_length))

    @property
    def unconsumed_tail(self) -> bytes:
        return bytes(self._obj.unconsumed_tail) if self._obj is not None else b""

    @property
    def eof(self) -> bool:
        return self._obj is not None and bool(self._obj.eof)

    @property
    def unused_data(self) -> bytes:
        return b""  # several deflate streams in one body are not a thing

    def flush(self) -> bytes:
        return bytes(self._obj.flush()) if self._obj is not None else b""
