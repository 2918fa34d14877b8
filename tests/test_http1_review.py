"""Regression tests for the review of `Http1Transport` (fixed in 530e6de): each finding the
reviewer proved with a throw-away script (p1…p13) as a scenario against a scripted upstream.

Over both transports (`HttpTransport`, aiohttp's, and `Http1Transport`) where the old client
behaves the same; over `Http1Transport` only where the scenario needs its internals (a patched
`Conn.connection_made` to land a cancel in the middle of a connect, the pool's counts) or where
aiohttp behaves otherwise (each such test says so).

The pool's counts are read through `Http1Transport._open` and `Origin.count`: the finding was
that they went negative, which nothing outside shows until the bound they enforce is wrong.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mini_llm.errors import GatewayError, UpstreamTimeoutError
from mini_llm.http1 import Http1Transport
from mini_llm.http1_conn import HIGH_WATER, Conn
from mini_llm.providers.base import UpstreamRequest
from mini_llm.resilience import Timeouts
from mini_llm.upstream import HttpTransport

from .raw_http_server import (
    FAST,
    RawConnection,
    RawRequest,
    RawServer,
    TransportClass,
    chunked,
    failure,
    fetch,
    make_tls,
    outcome,
    response,
    run,
    serve_each,
    server_tls,
    started,
    stream,
)


@pytest.fixture(params=["aiohttp", "http1"])
def transport_class(request: pytest.FixtureRequest) -> TransportClass:
    return HttpTransport if request.param == "aiohttp" else Http1Transport


def counts(t: Any) -> tuple[int, list[int]]:
    """The pool's counts: connections open in all, and to each origin."""
    assert isinstance(t, Http1Transport)
    return t._open, [origin.count for origin in t._origins.values()]


@contextlib.contextmanager
def resolving(names: dict[str, list[tuple[str, int]]]) -> Iterator[list[str]]:
    """The running loop's `getaddrinfo` answers `names` with the given IPv4 addresses (both
    transports resolve through it: aiohttp's `ThreadedResolver` too); the names asked are
    listed."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(host))
        if host in names:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)
                for address in names[host]
            ]
        return await real(host, port, *args, **kwargs)

    loop.getaddrinfo = fake  # type: ignore[method-assign]
    try:
        yield asked
    finally:
        del loop.getaddrinfo  # the instance attribute: the class's method again


# (1) p1: a compressed chunked answer paused by flow control mid-read ---------------------------

JSON = b'{"embedding": [' + b"0.0123456789, " * 200_000 + b"0]}"  # 2.8 MB, compresses well


@pytest.mark.parametrize("consumer", ["read", "stream"])
@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_a_compressed_chunked_answer_paused_mid_read_is_read_intact(
    transport_class: TransportClass, coding: str, consumer: str
) -> None:
    """Two chunks in one read, the first inflating past `HIGH_WATER`: the rest of the first
    waits for the consumer, and the second must wait behind it (it was fed to zlib first)."""
    wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    packed = packer.compress(JSON) + packer.flush()
    half = len(packed) // 2
    head = [("Content-Encoding", coding), ("Transfer-Encoding", "chunked")]
    whole = response(200, chunked([packed[:half], packed[half:]]), head)

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(whole)  # one write: both chunks come in one read

    async def scenario() -> bytes:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            if consumer == "read":
                data = (await fetch(t, server.url()))[2]
            else:
                got = await t.send(UpstreamRequest("GET", server.url(), {}, b""))
                data = b"".join(await stream(got))
            server.check()
            return data

    data = run(scenario())
    assert len(data) == len(JSON)
    assert data == JSON


# (2) p2, p2b: a cancel or a connect timeout during the connect ---------------------------------


def _answer_soon(delay: float) -> Callable[[RawConnection, RawRequest], Any]:
    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await asyncio.sleep(delay)
        await conn.send(response(200, b"ok"))

    return answer


@contextlib.contextmanager
def on_connection_made(react: Callable[[], None]) -> Iterator[None]:
    """`react()` runs in the very call of `Conn.connection_made` (TCP connected, or the TLS
    handshake done), inside the connect."""
    real = Conn.connection_made

    def patched(self: Conn, transport: asyncio.BaseTransport) -> None:
        real(self, transport)
        react()

    Conn.connection_made = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        Conn.connection_made = real  # type: ignore[method-assign]


def _client_tls(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


@pytest.mark.parametrize(("loop", "tls"), [("asyncio", False), ("uvloop", True)])
def test_a_cancel_during_the_connect_leaves_the_counts_at_zero_and_the_bound_holds(
    loop: str, tls: bool, tmp_path: Path
) -> None:
    """Http1Transport only (its internals: a cancel landing in `connection_made`). The
    connection was uncounted twice (its close and the failed connect), the counts went
    negative and `pool_per_host` 2 let more connections through; the counts are private
    fields because nothing else shows them before the bound breaks."""
    certs = make_tls(str(tmp_path)) if tls else None

    async def scenario() -> tuple[list[tuple[int, list[int]]], int, list[bytes]]:
        context = server_tls(certs["server"]) if certs is not None else None
        async with (
            RawServer(serve_each(_answer_soon(0.2)), context) as server,
            started(Http1Transport, pool_per_host=2) as t,
        ):
            if certs is not None:
                assert isinstance(t, Http1Transport)
                t._tls = _client_tls(certs["ca"])  # the test CA; SSL_CERT_FILE is process-wide
            url = server.url(host="localhost" if tls else None)
            after: list[tuple[int, list[int]]] = []
            current: list[asyncio.Task[Any]] = []
            with on_connection_made(lambda: current[-1].cancel()):
                for _ in range(3):
                    current.append(asyncio.ensure_future(fetch(t, url)))
                    with pytest.raises(asyncio.CancelledError):
                        await current[-1]
                    await asyncio.sleep(0.05)
                    after.append(counts(t))
            before = server.accepted
            answers = await asyncio.gather(*(fetch(t, url) for _ in range(6)))
            return after, server.accepted - before, [body for _, _, body in answers]

    after, opened, bodies = run(scenario(), uvloop=loop == "uvloop")
    assert after == [(0, [0])] * 3
    assert bodies == [b"ok"] * 6
    assert opened == 2  # pool_per_host


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_connect_timeout_during_the_tls_handshake_leaves_the_counts_at_zero(
    loop: str,
) -> None:
    """Http1Transport only (the counts). An upstream that accepts but never answers the TLS
    handshake: every connect ends in the connect timeout, the counts are back at 0 each time,
    and `pool_per_host` 1 still lets one handshake at a time."""

    async def silent(conn: RawConnection) -> None:
        await conn.peer_closed(10)  # the handshake is never answered

    quick = Timeouts(connect=0.3, first_byte=5, idle=5, total=10)

    async def scenario() -> tuple[list[GatewayError], list[tuple[int, list[int]]], int, int]:
        async with RawServer(silent) as server, started(Http1Transport, quick, 1) as t:
            url = f"https://127.0.0.1:{server.port}/"
            errors: list[GatewayError] = []
            after: list[tuple[int, list[int]]] = []
            for _ in range(3):
                errors.append(await failure(fetch(t, url)))
                after.append(counts(t))
            seen: set[int] = set()

            async def watch() -> None:
                while True:
                    seen.add(counts(t)[0])
                    await asyncio.sleep(0.005)

            watcher = asyncio.ensure_future(watch())
            together = await asyncio.gather(*(failure(fetch(t, url)) for _ in range(3)))
            watcher.cancel()
            errors += together
            await asyncio.sleep(0.05)
            return errors, after, counts(t), seen

    errors, after, left, seen = run(scenario(), uvloop=loop == "uvloop")
    assert all(type(error) is UpstreamTimeoutError for error in errors), errors
    assert after == [(0, [0])] * 3
    assert left == (0, [0])
    assert seen <= {0, 1} and 1 in seen, seen  # pool_per_host: one handshake at a time
