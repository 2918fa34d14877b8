"""The upstream HTTP/1.1 transports' failures, against both (`HttpTransport`, aiohttp's, and
`Http1Transport`): refused, unknown host, the connect, first-byte and total timeouts, answers
cut short or malformed, an endless head; each mapped by `upstream_failure` to the client's
error (504 for a timeout, 502 otherwise, "unreachable at host:port", "closed the connection").
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import time

import pytest

from mini_llm.errors import (
    GatewayError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeoutError,
)
from mini_llm.providers.base import UpstreamRequest
from mini_llm.resilience import Timeouts

from .raw_http_server import (
    FAST,
    AnyTransport,
    RawConnection,
    RawRequest,
    RawServer,
    TransportClass,
    chunked,
    closed_early,
    failure,
    fetch,
    gzipped,
    response,
    run,
    serve_each,
    started,
)

# failures and their mapping --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_refused_connection_is_unreachable(transport_class: TransportClass) -> None:
    port = _free_port()  # nothing listens there

    async def scenario() -> GatewayError:
        async with started(transport_class) as t:
            return await failure(fetch(t, f"http://127.0.0.1:{port}/v1/x", "POST", b"{}"))

    error = run(scenario())
    assert type(error) is UpstreamConnectionError
    assert str(error) == f"upstream prov is unreachable at 127.0.0.1:{port}"


def test_an_unknown_host_is_unreachable(transport_class: TransportClass) -> None:
    async def scenario() -> GatewayError:
        async with started(transport_class) as t:
            return await failure(fetch(t, "http://no-such-host.invalid:8123/v1/x"))

    error = run(scenario())
    assert type(error) is UpstreamConnectionError
    assert "unreachable at no-such-host.invalid:8123" in str(error)


def test_a_connect_timeout(transport_class: TransportClass) -> None:
    """A listener whose accept queue is full drops the SYN: the connect never completes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):  # until a connect no longer completes at once
            filler = socket.socket()
            filler.setblocking(False)
            fillers.append(filler)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            if not select.select([], [filler], [], 0.2)[1]:
                break
        else:
            pytest.skip("this kernel completes connects beyond the backlog")

        async def scenario() -> tuple[GatewayError, float]:
            async with started(transport_class, Timeouts(connect=0.3)) as t:
                began = time.monotonic()
                error = await failure(fetch(t, f"http://127.0.0.1:{port}/"))
                return error, time.monotonic() - began

        error, took = run(scenario())
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert type(error) is UpstreamTimeoutError
    assert 0.25 <= took < 2.0, took


@pytest.mark.parametrize(
    "sent",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Le", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"],
    ids=["nothing", "half-head", "whole-answer-stalls"],
)
@pytest.mark.parametrize("per_call", [False, True], ids=["default", "per-call"])
def test_the_wait_for_the_headers_is_bounded_by_first_byte(
    transport_class: TransportClass, sent: bytes, per_call: bool
) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(sent)
        await asyncio.sleep(5)

    short = Timeouts(connect=2, first_byte=0.3, idle=5, total=10)
    default, given = (FAST, short) if per_call else (short, None)

    async def scenario() -> tuple[GatewayError, float]:
        async with RawServer(serve_each(answer)) as server, started(transport_class, default) as t:
            began = time.monotonic()
            error = await failure(fetch(t, server.url("/"), "POST", b"{}", timeouts=given))
            return error, time.monotonic() - began

    error, took = run(scenario())
    assert type(error) is UpstreamTimeoutError
    assert 0.25 <= took < 2.0, took


@pytest.mark.parametrize("how", ["read", "iter_any"])
def test_the_whole_call_is_bounded_by_total(transport_class: TransportClass, how: str) -> None:
    """An answer that keeps trickling (never silent for `first_byte`) still ends at `total`,
    read whole or streamed."""

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(response(200, b"", [("Transfer-Encoding", "chunked")]))
        for _ in range(100):
            await conn.send(b"1\r\nx\r\n")
            await asyncio.sleep(0.05)

    timeouts = Timeouts(connect=2, first_byte=1, idle=1, total=0.6)

    async def scenario() -> tuple[GatewayError, float]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            began = time.monotonic()
            if how == "read":
                error = await failure(fetch(t, server.url("/"), "POST", b"{}", timeouts=timeouts))
            else:
                error = await failure(streamed(t, server.url("/"), timeouts))
            return error, time.monotonic() - began

    error, took = run(scenario())
    assert type(error) is UpstreamTimeoutError
    assert 0.5 <= took < 2.5, took


async def streamed(transport: AnyTransport, url: str, timeouts: Timeouts) -> list[bytes]:
    answer = await transport.send(UpstreamRequest("POST", url, {}, b"{}"), timeouts)
    try:
        return [chunk async for chunk in answer.content.iter_any()]
    finally:
        answer.close()


CUT_ANSWERS = {
    "before-answering": b"",
    "mid-status-line": b"HTTP/1.1 20",
    "mid-headers": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Len",
    "short-length-body": response(200, b"0123456789")[:-4],
    "chunked-no-last-chunk": response(
        200, chunked([b"abc", b"def"]), [("Transfer-Encoding", "chunked")]
    )[:-5],
    "chunked-mid-chunk": response(200, b"", [("Transfer-Encoding", "chunked")]) + b"10\r\nonly-8-b",
    "gzip-mid-body": response(200, gzipped(b"x" * 5000), [("Content-Encoding", "gzip")])[:-5],
}


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("sent", list(CUT_ANSWERS))
def test_an_answer_cut_short_closed_the_connection(
    transport_class: TransportClass, sent: str, how: str
) -> None:
    raw = CUT_ANSWERS[sent]
    if sent == "short-length-body":
        raw = raw.replace(b"Content-Length: 10", b"Content-Length: 100")

    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        await conn.send(raw)
        await asyncio.sleep(0.05)
        if how == "close":
            conn.close()
        else:
            conn.abort()
        return False

    async def scenario() -> GatewayError:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            return await failure(fetch(t, server.url("/"), "POST", b"{}"))

    error = run(scenario())
    if how == "close":
        assert closed_early(error), error
    else:
        # a 502 all the same (aiohttp names a reset before the headers "failed: ClientOSError")
        assert type(error) is UpstreamError, error


@pytest.mark.parametrize(
    "raw",
    [
        response(200, b"", [("Transfer-Encoding", "chunked")]) + b"zz\r\nabc\r\n0\r\n\r\n",
        response(200, b"", [("Transfer-Encoding", "chunked")]) + b"3\r\nabcXY0\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 abc OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        response(200, b"", [("Transfer-Encoding", "chunked")]) + b"f" * 24 + b"\r\nabc",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
    ],
    ids=[
        "bad-chunk-size",
        "bad-chunk-end",
        "not-http",
        "bad-status",
        "two-lengths",
        "neg-length",
        "huge-chunk-size",
        "header-no-colon",
        "huge-length",
    ],
)
def test_a_malformed_answer_is_an_upstream_error(
    transport_class: TransportClass, raw: bytes
) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(raw)
        await asyncio.sleep(1)

    async def scenario() -> GatewayError:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            return await failure(fetch(t, server.url("/"), "POST", b"{}"))

    error = run(scenario())
    # an error the gateway can show (502), not a timeout, not a stack trace
    assert type(error) is UpstreamError, error
    assert str(error).startswith("upstream prov ")


def test_a_truncated_stream_yields_what_came_then_fails(transport_class: TransportClass) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        await conn.send(response(200, b"", [("Transfer-Encoding", "chunked")]))
        await conn.send(b"7\r\nevent 1\r\n")
        await asyncio.sleep(0.05)
        await conn.send(b"7\r\nevent 2\r\n3\r\nev")
        return False

    async def scenario() -> tuple[list[bytes], GatewayError]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            got = await t.send(UpstreamRequest("POST", server.url("/"), {}, b"{}"))
            chunks: list[bytes] = []

            async def drain() -> None:
                async for chunk in got.content.iter_any():
                    chunks.append(chunk)

            error = await failure(drain())
            got.close()
            return chunks, error

    chunks, error = run(scenario())
    assert b"".join(chunks).startswith(b"event 1event 2")
    assert closed_early(error), error


@pytest.mark.parametrize("shape", ["many-lines", "one-endless-line", "endless-trailers"])
def test_an_endless_header_block_is_refused_not_buffered(
    transport_class: TransportClass, shape: str, request: pytest.FixtureRequest
) -> None:
    """An upstream that never ends its headers must not fill the gateway's memory until the
    first-byte timeout (300 s by default): the answer is refused once its head is too big."""
    written = [0]
    limit = 16 << 20

    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        start = {
            "many-lines": b"",
            "one-endless-line": b"X-Endless: ",
            "endless-trailers": b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n",
        }[shape]
        await conn.send(b"HTTP/1.1 200 OK\r\n" + start)
        one_line = shape == "one-endless-line"
        piece = b"a" * 65536 if one_line else (b"X-Pad: " + b"a" * 1000 + b"\r\n") * 64
        with contextlib.suppress(ConnectionError):
            while written[0] < limit:
                conn.writer.write(piece)
                await conn.writer.drain()
                written[0] += len(piece)
        return False

    timeouts = Timeouts(connect=2, first_byte=1, idle=1, total=8)

    async def scenario() -> tuple[GatewayError, float]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            began = time.monotonic()
            error = await failure(fetch(t, server.url("/"), timeouts=timeouts))
            return error, time.monotonic() - began

    error, took = run(scenario())
    assert type(error) is UpstreamError, f"{error!r} after {took:.1f} s, {written[0] >> 20} MiB"
    assert written[0] < 8 << 20, f"{written[0] >> 20} MiB of headers taken in"


def test_a_tls_handshake_that_never_ends_is_a_connect_timeout(
    transport_class: TransportClass,
) -> None:
    """TCP accepted, not a byte of TLS back (a stalled middlebox): the connect timeout or,
    at the latest, the total one ends it."""

    async def silent(conn: RawConnection) -> None:
        await conn.peer_closed(5.0)

    timeouts = Timeouts(connect=0.5, first_byte=5, idle=5, total=1.5)

    async def scenario() -> tuple[GatewayError, float]:
        async with RawServer(silent) as server, started(transport_class, timeouts) as t:
            began = time.monotonic()
            url = f"https://127.0.0.1:{server.port}/v1/x"
            error = await failure(fetch(t, url, "POST", b"{}"))
            return error, time.monotonic() - began

    error, took = run(scenario())
    assert type(error) is UpstreamTimeoutError, error
    assert took < 2.5, took
