"""A scripted HTTP/1.1 upstream on 127.0.0.1 for transport tests: exact bytes, splits, delays
and closes, written by each test; connections and requests counted on the server's side.

A test gives `RawServer` a handler, called once per accepted connection with a
`RawConnection`; the handler reads requests (`read_request`) and answers with whatever bytes it
likes (`send`, in pieces, with pauses), or closes. `serve_each(answer)` makes the common
handler: every request on a connection answered in turn by `answer`.

The client side's helpers follow: a transport started and closed around a scenario (`started`),
one whole exchange (`fetch`), a streamed body (`stream`), and the gateway's error for what a
transport raised (`failure`, `outcome`, `closed_early`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import zlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeVar

import pytest

from mini_llm.errors import GatewayError, UpstreamError
from mini_llm.http1 import Http1Transport
from mini_llm.providers.base import UpstreamRequest, UpstreamResponse
from mini_llm.resilience import Timeouts
from mini_llm.upstream import upstream_failure

__all__ = [
    "FAST",
    "UA",
    "AnyTransport",
    "RawConnection",
    "RawRequest",
    "RawServer",
    "chunked",
    "closed_early",
    "deflate",
    "failure",
    "fetch",
    "gzipped",
    "known_gap",
    "make_tls",
    "ok",
    "outcome",
    "response",
    "run",
    "serve_each",
    "server_tls",
    "started",
    "stream",
]

MAX_HEAD = 64 * 1024


@dataclass
class RawRequest:
    """A request as it arrived: the request line's parts, the header block's raw bytes, the
    headers in order (names as sent) and the body (de-chunked when it came chunked)."""

    method: str
    target: str
    version: str
    head: bytes
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool = False
    connection: int = 0
    """The number of the connection it came on (1 for the first accepted)."""

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None

    def all(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]


class BadRequest(Exception):
    """The client sent something that is not HTTP/1.1 (the test fails on it)."""


@dataclass
class RawConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: RawServer
    number: int
    requests: list[RawRequest] = field(default_factory=list)

    async def read_request(self, timeout: float = 10.0) -> RawRequest | None:
        """The next request, or None when the client closed the connection between two."""
        try:
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                raise BadRequest(f"the client closed mid-head: {e.partial!r}") from None
            return None
        except (ConnectionError, asyncio.LimitOverrunError):
            return None
        lines = head[:-4].split(b"\r\n")
        method, target, version = lines[0].decode("latin-1").split(" ")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep or name != name.strip():
                raise BadRequest(f"malformed header line {line!r}")
            headers.append((name, value.strip(" \t")))
        request = RawRequest(method, target, version, head, headers, b"", connection=self.number)
        if (request.header("transfer-encoding") or "").lower() == "chunked":
            request.chunked = True
            request.body = await self._read_chunked(timeout)
        else:
            length = int(request.header("content-length") or 0)
            if length:
                request.body = await asyncio.wait_for(self.reader.readexactly(length), timeout)
        self.requests.append(request)
        self.server.requests.append(request)
        return request

    async def _read_chunked(self, timeout: float) -> bytes:
        body = bytearray()
        while True:
            size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                while (await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout)) != b"\r\n":
                    pass
                return bytes(body)
            body += await asyncio.wait_for(self.reader.readexactly(size + 2), timeout)
            del body[-2:]

    async def send(self, data: bytes, pieces: int | Sequence[int] = 0, pause: float = 0.0) -> None:
        """Write `data`: whole, or cut every `pieces` bytes (an int) or at the given offsets,
        each piece flushed and followed by `pause` seconds so that it arrives on its own."""
        if not pieces:
            self.writer.write(data)
            await self.writer.drain()
            return
        if isinstance(pieces, int):
            cuts = list(range(pieces, len(data), pieces))
        else:
            cuts = [cut for cut in pieces if 0 < cut < len(data)]
        start = 0
        for cut in [*cuts, len(data)]:
            self.writer.write(data[start:cut])
            await self.writer.drain()
            start = cut
            if pause and cut < len(data):
                await asyncio.sleep(pause)

    async def send_all(self, parts: Iterable[bytes], pause: float = 0.0) -> None:
        for part in parts:
            self.writer.write(part)
            await self.writer.drain()
            if pause:
                await asyncio.sleep(pause)

    async def peer_closed(self, timeout: float) -> bool:
        """Whether the client closes its side within `timeout` (what it sends meanwhile is
        dropped)."""

        async def drained() -> None:
            while await self.reader.read(65536):
                pass

        try:
            await asyncio.wait_for(drained(), timeout)
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            return True  # reset: closed all the same
        return True

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        """Close with a reset (RST), not a FIN."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        self.writer.transport.abort()


Handler = Callable[[RawConnection], Awaitable[None]]


class RawServer:
    """`async with RawServer(handler) as server:` serves on 127.0.0.1 on a free port; leaving
    the block stops the server, cancels its handlers and closes every connection."""

    def __init__(
        self, handler: Handler, ssl_context: ssl.SSLContext | None = None, bind: str = "127.0.0.1"
    ) -> None:
        self._handler = handler
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.accepted = 0
        self.requests: list[RawRequest] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self.bind = bind
        self.host = f"[{bind}]" if ":" in bind else bind

    @property
    def scheme(self) -> str:
        return "https" if self._ssl is not None else "http"

    def url(self, path: str = "/", host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(RawConnection(reader, writer, self, self.accepted))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: the test judges what it saw
        except asyncio.CancelledError:
            pass  # stop() ended it: the task ends normally (asyncio would log a cancelled one)
        except BaseException as e:  # a broken script: check() raises it
            self.errors.append(e)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(
            self._accept, self.bind, 0, ssl=self._ssl, limit=MAX_HEAD * 2
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)

    def check(self) -> None:
        """Raise what a handler failed with (a script error, or a client that sent
        something unparseable)."""
        if self.errors:
            raise self.errors[0]


def serve_each(answer: Callable[[RawConnection, RawRequest], Awaitable[bool | None]]) -> Handler:
    """A handler answering every request of a connection with `answer`, until the client
    closes or `answer` returns False (the connection is then closed)."""

    async def handler(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            if await answer(conn, request) is False:
                return

    return handler


def response(
    status: int = 200,
    body: bytes = b"",
    headers: Sequence[tuple[str, str]] = (),
    length: bool = True,
    reason: str | None = None,
    version: str = "HTTP/1.1",
) -> bytes:
    """A response's bytes; a Content-Length for `body` unless `length` is False or the
    headers carry a framing of their own."""
    phrase = reason if reason is not None else {200: "OK", 204: "No Content"}.get(status, "X")
    names = {name.lower() for name, _ in headers}
    lines = [f"{version} {status} {phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if length and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(parts: Iterable[bytes], extension: str = "", trailers: str = "") -> bytes:
    """`parts` in the chunked transfer coding (empty parts skipped: a 0 ends the body), with a
    chunk extension on every size line and trailer fields after the last chunk."""
    out = bytearray()
    for part in parts:
        if part:
            out += f"{len(part):x}{extension}\r\n".encode() + part + b"\r\n"
    out += f"0{extension}\r\n{trailers}\r\n".encode()
    return bytes(out)


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def deflate(data: bytes, raw: bool = False) -> bytes:
    """The `deflate` content coding: zlib-wrapped (RFC 9110), or the raw stream some
    servers send."""
    if raw:
        compressor = zlib.compressobj(wbits=-15)
        return compressor.compress(data) + compressor.flush()
    return zlib.compress(data)


# TLS: a test certificate authority -------------------------------------------------------------


def make_tls(directory: str) -> dict[str, str]:
    """A CA and, signed by it, a certificate for 127.0.0.1 and localhost, one for another
    name only, and a self-signed one nobody trusts; PEM files in `directory`, by name."""
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def certificate(
        subject: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: str,
        issuer_key: ec.EllipticCurvePrivateKey,
        ca: bool,
        alt: list[x509.GeneralName],
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
            builder = builder.add_extension(usage, critical=True)
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    paths: dict[str, str] = {}

    def write(label: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None) -> None:
        path = os.path.join(directory, f"{label}.pem")
        with open(path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
            if key is not None:
                f.write(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
        paths[label] = path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("mini-llm test CA", ca_key, "mini-llm test CA", ca_key, True, [])
    write("ca", ca, None)
    local: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    elsewhere: list[x509.GeneralName] = [x509.DNSName("other.example")]
    for label, alt in (("server", local), ("wrong-name", elsewhere)):
        key = ec.generate_private_key(ec.SECP256R1())
        write(label, certificate(label, key, "mini-llm test CA", ca_key, False, alt), key)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    write("untrusted", certificate("rogue", rogue_key, "rogue", rogue_key, False, local), rogue_key)
    return paths


def server_tls(pem: str, seen: list[str | None] | None = None) -> ssl.SSLContext:
    """A server context presenting `pem` (certificate and key); the SNI of each handshake is
    appended to `seen`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    if seen is not None:

        def record(sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
            seen.append(server_name)

        context.sni_callback = record
    return context


# the client side: a transport under test -----------------------------------------------------

T = TypeVar("T")

FAST = Timeouts(connect=2.0, first_byte=5.0, idle=5.0, total=10.0)
UA = "mini-llm-test/1.0"


class AnyTransport(Protocol):
    async def start(self) -> None: ...

    async def send(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> UpstreamResponse: ...

    async def close(self) -> None: ...


TransportClass = Callable[..., AnyTransport]
"""`HttpTransport` or `Http1Transport`: `(timeouts, pool_size, user_agent, pool_per_host)`."""


def run(coro: Coroutine[Any, Any, T], timeout: float = 15.0, uvloop: bool = False) -> T:
    """Run one scenario on a fresh loop, bounded in time."""
    if uvloop:
        import uvloop as uv

        runner: Any = uv.run
    else:
        runner = asyncio.run
    return runner(asyncio.wait_for(coro, timeout))  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def started(
    cls: TransportClass, timeouts: Timeouts = FAST, pool_per_host: int = 1024, pool_size: int = 0
) -> AsyncIterator[AnyTransport]:
    transport = cls(timeouts, pool_size, UA, pool_per_host=pool_per_host)
    await transport.start()
    try:
        yield transport
    finally:
        await transport.close()


async def fetch(
    transport: AnyTransport,
    url: str,
    method: str = "GET",
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts | None = None,
) -> tuple[int, Mapping[str, str], bytes]:
    """One whole exchange: status, headers, body; the connection goes back to the pool."""
    answer = await transport.send(UpstreamRequest(method, url, headers or {}, body), timeouts)
    try:
        data = await answer.read()
    except BaseException:
        answer.close()
        raise
    answer.release()
    return answer.status, answer.headers, data


async def stream(answer: UpstreamResponse) -> list[bytes]:
    chunks = [chunk async for chunk in answer.content.iter_any()]
    answer.release()
    return chunks


async def failure(coro: Awaitable[Any]) -> GatewayError:
    """The gateway's error for what `coro` raised (AssertionError when it did not fail)."""
    try:
        await coro
    except (Exception, asyncio.TimeoutError) as e:
        return upstream_failure(e, "prov")
    raise AssertionError("the exchange did not fail")


async def outcome(coro: Awaitable[T]) -> T | GatewayError:
    """What `coro` returned, or the gateway's error for what it raised."""
    try:
        return await coro
    except (Exception, asyncio.TimeoutError) as e:
        return upstream_failure(e, "prov")


def closed_early(error: GatewayError) -> bool:
    """An `UpstreamError` (neither a timeout nor unreachable) saying the answer was cut."""
    return (
        type(error) is UpstreamError
        and "closed the connection" in str(error)
        and "prov" in str(error)
    )


def ok(body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> Callable[..., Awaitable[None]]:
    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(response(200, body, headers))

    return answer


def known_gap(request: pytest.FixtureRequest, transport_class: TransportClass, why: str) -> None:
    """A failure of Http1Transport found by these tests and not fixed yet: expected (strictly,
    so that the fix shows), and listed in the report to the lead."""
    if transport_class is Http1Transport:
        request.applymarker(pytest.mark.xfail(strict=True, reason=why))
