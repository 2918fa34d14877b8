"""The upstream HTTP/1.1 transports against their one contract, adversarially.

Every test that states what a transport must do runs against both: the aiohttp `HttpTransport`
and `mini_llm.http1.Http1Transport`, so the new client is held to what the old one does. The
upstreams are raw asyncio servers (`raw_http_server`) scripted per test: exact bytes, cut
anywhere, delayed, closed; connections and requests are counted on the server's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import random
import select
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from mini_llm.errors import (
    GatewayError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeoutError,
)
from mini_llm.gateway.app import GATEWAY
from mini_llm.providers.base import UpstreamRequest, UpstreamResponse
from mini_llm.resilience import Timeouts
from mini_llm.upstream import HttpTransport, upstream_failure

from .conftest import GatewayFactory
from .harness import LoopThread, RunningApp
from .raw_http_server import (
    RawConnection,
    RawRequest,
    RawServer,
    chunked,
    deflate,
    gzipped,
    make_tls,
    response,
    serve_each,
)

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


def _http1() -> TransportClass:
    try:
        from mini_llm.http1 import Http1Transport  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        pytest.skip("mini_llm.http1 (Http1Transport) is not merged into this branch yet")
    return Http1Transport  # type: ignore[no-any-return,unused-ignore]


@pytest.fixture(params=["aiohttp", "http1"])
def transport_class(request: pytest.FixtureRequest) -> TransportClass:
    return HttpTransport if request.param == "aiohttp" else _http1()


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


# the request as sent ---------------------------------------------------------------------------


def test_request_line_headers_and_body_as_given(transport_class: TransportClass) -> None:
    body = b'{"model":"m","messages":[]}'
    headers = {
        "Content-Type": "application/json",
        "X-Api-Key": "sk-secret-0001",
        "anthropic-version": "2023-06-01",
        "x-Mixed-CASE": "Value With  Spaces",
    }

    async def scenario() -> RawRequest:
        async with RawServer(serve_each(ok(b"{}"))) as server, started(transport_class) as t:
            status, _, data = await fetch(t, server.url("/v1/messages"), "POST", body, headers)
            assert (status, data) == (200, b"{}")
            server.check()
            (request,) = server.requests
            assert request.header("Host") == f"127.0.0.1:{server.port}"
            return request

    request = run(scenario())
    assert (request.method, request.target, request.version) == ("POST", "/v1/messages", "HTTP/1.1")
    assert request.header("User-Agent") == UA
    assert request.header("Content-Length") == str(len(body))
    assert request.header("Transfer-Encoding") is None
    assert request.body == body
    for name, value in headers.items():
        assert request.all(name) == [value]
        assert f"\r\n{name}: ".encode() in request.head, f"{name} not sent as given"


@pytest.mark.parametrize(
    "target",
    [
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
        "/v1/models/a%2Fb%3Ac/x%20y?q=%20a+b&empty=&flag&k=%E2%82%AC",
        "/model/anthropic.claude-3-5%3A0/converse-stream",
        "/v1//double/./dot/../up/?x=1&x=2",
        "/%7Euser/%41%42?%3D=%26",
    ],
)
def test_path_and_query_sent_byte_for_byte(transport_class: TransportClass, target: str) -> None:
    async def scenario() -> str:
        async with RawServer(serve_each(ok(b"ok"))) as server, started(transport_class) as t:
            await fetch(t, server.url(target))
            return server.requests[0].target

    assert run(scenario()) == target


def test_host_header_names_the_host_as_given_with_its_port(transport_class: TransportClass) -> None:
    async def scenario() -> tuple[str | None, int]:
        async with RawServer(serve_each(ok(b"ok"))) as server, started(transport_class) as t:
            assert (await fetch(t, server.url("/x", host="localhost")))[0] == 200
            return server.requests[0].header("Host"), server.port

    host, port = run(scenario())
    assert host == f"localhost:{port}"


def test_an_empty_body_sends_no_body(transport_class: TransportClass) -> None:
    async def scenario() -> list[RawRequest]:
        async with RawServer(serve_each(ok(b"a"))) as server, started(transport_class) as t:
            await fetch(t, server.url("/models"))
            assert (await fetch(t, server.url("/next"), "POST", b"x"))[2] == b"a"
            return server.requests

    first, second = run(scenario())
    assert first.method == "GET" and first.body == b""
    assert first.header("Content-Length") in (None, "0")
    assert first.header("Transfer-Encoding") is None
    assert second.body == b"x" and second.connection == first.connection


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Evil", "a\r\nInjected: yes"),
        ("X-Evil", "a\nInjected: yes"),
        ("X-Evil", "a\rb"),
        ("X-Evil", "a\x00b"),
        ("X-Evil\r\nInjected", "yes"),
        ("X-Evil\n", "yes"),
        ("X-\x00Evil", "yes"),
    ],
)
def test_a_header_with_cr_lf_or_nul_is_refused_before_anything_is_sent(
    transport_class: TransportClass, name: str, value: str
) -> None:
    received = bytearray()

    async def record(conn: RawConnection) -> None:
        while data := await conn.reader.read(65536):
            received.extend(data)

    async def scenario() -> None:
        async with RawServer(record) as server, started(transport_class) as t:
            request = UpstreamRequest("POST", server.url("/v1/x"), {name: value}, b"{}")
            with pytest.raises((ValueError, GatewayError)):
                answer = await t.send(request)
                answer.close()
            await asyncio.sleep(0.1)  # anything written would have arrived by now

    run(scenario())
    assert bytes(received) == b"", "bytes were sent for a refused request"


# answers: framing, keep-alive ------------------------------------------------------------------


def test_connections_are_kept_alive_and_reused(transport_class: TransportClass) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> None:
        body = f"answer to {request.target}".encode()
        await conn.send(response(200, body, [("Content-Type", "text/plain; charset=utf-8")]))

    async def scenario() -> int:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            for i in range(5):
                status, headers, data = await fetch(t, server.url(f"/r{i}"), "POST", b"{}")
                assert (status, data) == (200, f"answer to /r{i}".encode())
                assert headers.get("content-type") == headers.get("Content-Type")
                assert headers.get("CONTENT-TYPE") == "text/plain; charset=utf-8"
            return server.accepted

    assert run(scenario()) == 1


@pytest.mark.parametrize("server_closes", [True, False], ids=["server-closes", "server-waits"])
def test_connection_close_from_the_server_is_honoured(
    transport_class: TransportClass, server_closes: bool
) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        await conn.send(response(200, request.target.encode(), [("Connection", "close")]))
        if not server_closes:
            # the client must close: nothing more may come on this connection
            assert await conn.peer_closed(3.0), "the client kept a Connection: close connection"
        return False

    async def scenario() -> int:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            for i in range(3):
                assert (await fetch(t, server.url(f"/{i}")))[2] == f"/{i}".encode()
            server.check()
            return server.accepted

    assert run(scenario()) == 3


def test_an_http_1_0_answer_is_not_reused(transport_class: TransportClass) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        await conn.send(response(200, b"old", version="HTTP/1.0"))
        return False

    async def scenario() -> int:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            for _ in range(2):
                assert (await fetch(t, server.url("/")))[2] == b"old"
            return server.accepted

    assert run(scenario()) == 2


@pytest.mark.parametrize("how", ["read", "iter_any"])
def test_a_body_delimited_by_the_close(transport_class: TransportClass, how: str) -> None:
    body = b"".join(b"line %d\n" % i for i in range(200))

    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        await conn.send(response(200, body, length=False), pieces=333, pause=0.002)
        return False

    async def scenario() -> int:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            for _ in range(2):
                got = await t.send(UpstreamRequest("GET", server.url("/"), {}, b""))
                data = await got.read() if how == "read" else b"".join(await stream(got))
                got.release()
                assert data == body
            return server.accepted

    assert run(scenario()) == 2


def test_chunked_with_extensions_and_trailers(transport_class: TransportClass) -> None:
    parts = [b"data: one\n\n", b"data: two\n\n", b"x" * 4000]
    raw = response(
        200,
        chunked(parts, extension=';name="v";flag', trailers="X-Trailer: t\r\nX-Other: o\r\n"),
        [("Transfer-Encoding", "chunked")],
    )

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(raw)

    async def scenario() -> int:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            for _ in range(3):
                assert (await fetch(t, server.url("/")))[2] == b"".join(parts)
            return server.accepted

    assert run(scenario()) == 1


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_every_byte_boundary_of_a_chunked_answer(
    transport_class: TransportClass, loop: str
) -> None:
    """The header block split mid-line, the chunk sizes, data and CRLFs split anywhere: one
    answer per cut, all on one kept-alive connection."""
    parts = [b"data: {}\n\n", b"ab", b"c" * 17]
    raw = response(
        200,
        chunked(parts, extension=";e=1", trailers="T: 1\r\n"),
        [("Transfer-Encoding", "chunked")],
    )
    cuts = iter(range(1, len(raw)))

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(raw, pieces=[next(cuts)], pause=0.002)

    async def scenario() -> int:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            for cut in range(1, len(raw)):
                data = (await fetch(t, server.url(f"/{cut}")))[2]
                assert data == b"".join(parts), f"cut at byte {cut}: {data!r}"
            return server.accepted

    assert run(scenario(), uvloop=loop == "uvloop") == 1


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_an_answer_in_one_byte_reads_streams(transport_class: TransportClass, framing: str) -> None:
    body = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\ndata: [DONE]\n\n'
    if framing == "chunked":
        raw = response(200, chunked([body[:20], body[20:]]), [("Transfer-Encoding", "chunked")])
    else:
        raw = response(200, body)

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(raw, pieces=1, pause=0.0005)

    async def scenario() -> list[bytes]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            chunks = await stream(await t.send(UpstreamRequest("GET", server.url("/"), {}, b"")))
            assert (await fetch(t, server.url("/")))[2] == body  # and the connection is sound
            assert server.accepted == 1
            return chunks

    chunks = run(scenario())
    assert b"".join(chunks) == body
    assert len(chunks) > 3, "the body was not handed on as it arrived"


def test_a_streamed_chunk_is_handed_on_before_the_next_is_sent(
    transport_class: TransportClass,
) -> None:
    handed = asyncio.Event()

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(response(200, b"", [("Transfer-Encoding", "chunked")], length=False))
        await conn.send(b"a\r\ndata: one\n\r\n")
        # the second waits until the client has the first: a buffering client deadlocks
        await asyncio.wait_for(handed.wait(), 5)
        await conn.send(b"a\r\ndata: two\n\r\n0\r\n\r\n")

    async def scenario() -> list[bytes]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            got = await t.send(UpstreamRequest("POST", server.url("/"), {}, b"{}"))
            chunks = []
            async for chunk in got.content.iter_any():
                chunks.append(chunk)
                handed.set()
            got.release()
            return chunks

    assert b"".join(run(scenario())) == b"data: one\ndata: two\n"


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        ("HEAD", response(200, b"", [("Content-Length", "100"), ("Content-Type", "x/y")])),
        ("GET", response(204, b"", length=False)),
        ("GET", response(204, b"", [("Content-Length", "0")])),
        ("GET", response(304, b"", [("Content-Length", "50"), ("ETag", '"e"')], reason="NM")),
        ("GET", response(304, b"", [("Transfer-Encoding", "chunked")], reason="NM")),
    ],
    ids=["head", "204", "204-length-0", "304-length", "304-chunked"],
)
def test_answers_without_a_body(transport_class: TransportClass, method: str, raw: bytes) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(raw if request.target == "/empty" else response(200, b"after"))

    async def scenario() -> int:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            status, _, data = await fetch(t, server.url("/empty"), method)
            assert data == b""
            assert status == int(raw.split(b" ")[1])
            assert (await fetch(t, server.url("/next")))[2] == b"after"
            return server.accepted

    # Http1Transport drops the connection after a HEAD (llhttp cannot be told that the answer
    # has no body; the gateway sends no HEAD): a fresh one is fine, a hang or a wrong answer not
    assert run(scenario()) == 1 or method == "HEAD"


def test_bytes_after_a_complete_answer_never_answer_the_next_request(
    transport_class: TransportClass,
) -> None:
    """An upstream sends more than it framed: the surplus must not be taken for the answer to
    the next request (that would hand one request's answer to another)."""

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        if request.target == "/first":
            await conn.send(response(200, b"first") + response(200, b"WRONG"))
        else:
            await conn.send(response(200, request.target.encode()))

    async def scenario() -> None:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            assert (await fetch(t, server.url("/first")))[2] == b"first"
            await asyncio.sleep(0.05)
            second = await outcome(fetch(t, server.url("/second")))
            # failing is acceptable, answering wrongly is not
            if isinstance(second, GatewayError):
                assert isinstance(second, UpstreamError), second
            else:
                assert second[2] == b"/second", second

    run(scenario())


# compression -----------------------------------------------------------------------------------


def raw_deflate(data: bytes) -> bytes:
    return deflate(data, raw=True)


CODINGS = {"gzip": gzipped, "deflate": deflate, "raw-deflate": raw_deflate}


@pytest.mark.parametrize("coding", list(CODINGS))
@pytest.mark.parametrize("framing", ["length", "chunked-1-byte"])
def test_compressed_answers_are_decoded(
    transport_class: TransportClass, coding: str, framing: str
) -> None:
    body = b'{"id":"x","choices":[{"message":{"content":"' + b"word " * 3000 + b'"}}]}'
    packed = CODINGS[coding](body)
    name = coding.removeprefix("raw-")
    if framing == "length":
        raw = response(200, packed, [("Content-Encoding", name)])
        pieces, pause = 0, 0.0
    else:
        cut = [packed[i : i + 7] for i in range(0, len(packed), 7)]
        raw = response(
            200, chunked(cut), [("Content-Encoding", name), ("Transfer-Encoding", "chunked")]
        )
        pieces, pause = 1, 0.0

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(raw, pieces=pieces, pause=pause)

    async def scenario() -> tuple[bytes, bytes]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            whole = (await fetch(t, server.url("/")))[2]
            streamed = await stream(await t.send(UpstreamRequest("GET", server.url("/"), {}, b"")))
            assert server.accepted == 1
            return whole, b"".join(streamed)

    whole, streamed = run(scenario())
    assert whole == body
    assert streamed == body


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


@pytest.mark.parametrize("sent", [b"", b"HTTP/1.1 200 OK\r\nContent-Le"], ids=["nothing", "half"])
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


def test_the_whole_call_is_bounded_by_total(transport_class: TransportClass) -> None:
    """An answer that keeps trickling (never silent for `first_byte`) still ends at `total`."""

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(response(200, b"", [("Transfer-Encoding", "chunked")]))
        for _ in range(100):
            await conn.send(b"1\r\nx\r\n")
            await asyncio.sleep(0.05)

    timeouts = Timeouts(connect=2, first_byte=1, idle=1, total=0.6)

    async def scenario() -> tuple[GatewayError, float]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            began = time.monotonic()
            error = await failure(fetch(t, server.url("/"), "POST", b"{}", timeouts=timeouts))
            return error, time.monotonic() - began

    error, took = run(scenario())
    assert type(error) is UpstreamTimeoutError
    assert 0.5 <= took < 2.5, took


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
    ],
    ids=["bad-chunk-size", "bad-chunk-end", "not-http", "bad-status", "two-lengths", "neg-length"],
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


# the pool --------------------------------------------------------------------------------------


def test_a_full_pool_makes_the_next_request_wait_then_proceed(
    transport_class: TransportClass,
) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await asyncio.sleep(0.4)
        await conn.send(response(200, request.target.encode()))

    async def scenario() -> tuple[list[float], int]:
        async with (
            RawServer(serve_each(answer)) as server,
            started(transport_class, pool_per_host=2) as t,
        ):
            began = time.monotonic()

            async def one(i: int) -> float:
                assert (await fetch(t, server.url(f"/{i}"), "POST", b"{}"))[2] == f"/{i}".encode()
                return time.monotonic() - began

            return sorted(await asyncio.gather(*(one(i) for i in range(3)))), server.accepted

    took, accepted = run(scenario())
    assert accepted == 2
    assert took[1] < 0.75 <= took[2] < 2.0, took  # the third waited for a connection


@pytest.mark.parametrize("how", ["close-unread", "close-mid-stream", "error-status"])
def test_answers_closed_early_give_their_connection_back(
    transport_class: TransportClass, how: str
) -> None:
    """With one connection per host, each early close must free it: nothing deadlocks."""

    async def answer(conn: RawConnection, request: RawRequest) -> bool | None:
        if request.target == "/ok":
            await conn.send(response(200, b"fine"))
            return None
        if how == "error-status":
            await conn.send(response(429, b'{"error":{}}' * 1000, [("Retry-After", "1")]))
            return None
        await conn.send(response(200, b"", [("Transfer-Encoding", "chunked")]))
        for _ in range(200):  # until the client goes
            await conn.send(b"5\r\nchunk\r\n")
            await asyncio.sleep(0.01)
        return False

    async def scenario() -> None:
        async with (
            RawServer(serve_each(answer)) as server,
            started(transport_class, pool_per_host=1) as t,
        ):
            for _ in range(3):
                got = await t.send(UpstreamRequest("POST", server.url("/endless"), {}, b"{}"))
                if how == "close-mid-stream":
                    await anext(aiter(got.content.iter_any()))
                got.close()
                assert (await fetch(t, server.url("/ok"), "POST", b"{}"))[2] == b"fine"

    run(scenario(), timeout=10)


def test_closing_a_stream_drops_its_connection(transport_class: TransportClass) -> None:
    dropped = asyncio.Event()

    async def answer(conn: RawConnection, request: RawRequest) -> bool | None:
        if request.target == "/next":
            await conn.send(response(200, b"next"))
            return None
        await conn.send(response(200, b"", [("Transfer-Encoding", "chunked")]))
        await conn.send(b"6\r\nfirst\n\r\n")
        if await conn.peer_closed(3.0):
            dropped.set()
        return False

    async def scenario() -> tuple[int, list[int]]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            got = await t.send(UpstreamRequest("POST", server.url("/sse"), {}, b"{}"))
            async for chunk in got.content.iter_any():
                assert chunk == b"first\n"
                break
            got.close()
            await asyncio.wait_for(dropped.wait(), 3)
            assert (await fetch(t, server.url("/next")))[2] == b"next"
            return server.accepted, [r.connection for r in server.requests]

    accepted, connections = run(scenario())
    assert accepted == 2
    assert connections == [1, 2]


@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_connection_the_upstream_closed_while_idle_is_not_used(
    transport_class: TransportClass, how: str
) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        await conn.send(response(200, request.target.encode()))  # keep-alive, says the answer
        await asyncio.sleep(0.05)
        if how == "close":
            conn.close()
        else:
            conn.abort()
        return False

    async def scenario() -> int:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            for i in range(3):
                assert (await fetch(t, server.url(f"/{i}"), "POST", b"{}"))[2] == f"/{i}".encode()
                await asyncio.sleep(0.2)
            return server.accepted

    assert run(scenario()) == 3


@pytest.mark.parametrize(
    "partial",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\npartial", b"HTTP/1.1 2", b"H"],
    ids=["mid-body", "mid-status", "one-byte"],
)
def test_a_failure_after_answer_bytes_on_a_reused_connection_is_not_resent(
    transport_class: TransportClass, partial: bytes
) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        if len(conn.requests) == 1:
            await conn.send(response(200, b"first"))
            return True
        await conn.send(partial)
        await asyncio.sleep(0.02)
        return False

    async def scenario() -> tuple[GatewayError, int, int]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            assert (await fetch(t, server.url("/1"), "POST", b"{}"))[2] == b"first"
            error = await failure(fetch(t, server.url("/2"), "POST", b'{"n":2}'))
            await asyncio.sleep(0.2)  # a resend would have arrived by now
            return error, len(server.requests), server.accepted

    error, requests, accepted = run(scenario())
    assert closed_early(error), error
    assert (requests, accepted) == (2, 1)


def test_a_reused_connection_closed_without_an_answer_fails_or_answers_rightly(
    transport_class: TransportClass,
) -> None:
    """The race a client cannot avoid: the upstream closes the idle connection just as a
    request goes out on it. Nothing came back; the request may be failed (no POST is
    ever sent twice on its own) or resent once on a fresh connection — never answered
    with another request's answer, never hanging."""

    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        if conn.number == 1 and len(conn.requests) == 2:
            return False  # read, then closed without a byte
        await conn.send(response(200, request.body))
        return True

    async def scenario() -> tuple[Any, int]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            assert (await fetch(t, server.url("/"), "POST", b"one"))[2] == b"one"
            second = await outcome(fetch(t, server.url("/"), "POST", b"two"))
            return second, len(server.requests)

    second, requests = run(scenario())
    if isinstance(second, GatewayError):
        assert closed_early(second), second
        assert requests == 2
    else:
        assert second[2] == b"two"
        assert requests == 3


# concurrency and size --------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_many_concurrent_requests_each_get_their_own_answer(
    transport_class: TransportClass, loop: str
) -> None:
    rng = random.Random(7)

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        rid = request.header("X-Request-Id") or "?"
        body = b'{"id":"%s","echo":"%s"}' % (rid.encode(), request.body)
        raw = response(200, body, [("X-Request-Id", rid)])
        await asyncio.sleep(rng.random() * 0.01)
        await conn.send(raw, pieces=rng.choice([0, 1, 7, 40]))

    async def scenario() -> int:
        async with (
            RawServer(serve_each(answer)) as server,
            started(transport_class, pool_per_host=16) as t,
        ):

            async def one(i: int) -> None:
                rid = f"req-{i}"
                status, headers, data = await fetch(
                    t, server.url(f"/v1/{i}"), "POST", b"%d" % i, {"X-Request-Id": rid}
                )
                assert status == 200
                assert headers.get("x-request-id") == rid
                assert data == b'{"id":"%s","echo":"%d"}' % (rid.encode(), i)

            await asyncio.gather(*(one(i) for i in range(200)))
            return server.accepted

    accepted = run(scenario(), uvloop=loop == "uvloop")
    assert 1 <= accepted <= 16


# aiohttp warns of a large `bytes` body (the gateway sends bytes): not what is tested here
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
def test_eight_mib_each_way(transport_class: TransportClass) -> None:
    sent = random.Random(1).randbytes(8 << 20)

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        digest = hashlib.sha256(request.body).hexdigest()
        await conn.send(response(200, request.body[::-1], [("X-Digest", digest)]))

    async def scenario() -> tuple[str | None, bytes]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            _, headers, data = await fetch(t, server.url("/big"), "POST", sent)
            return headers.get("x-digest"), data

    digest, data = run(scenario(), timeout=30)
    assert digest == hashlib.sha256(sent).hexdigest()
    assert data == sent[::-1]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_stream_read_slowly_is_not_buffered_whole(
    transport_class: TransportClass, loop: str
) -> None:
    """50 MiB offered, the client reading one chunk then pausing: the upstream's writes block
    (flow control) instead of the client's memory taking the whole answer."""
    total = 50 << 20
    piece = b"x" * (64 << 10)
    written = [0]

    async def answer(conn: RawConnection, request: RawRequest) -> bool:
        await conn.send(response(200, b"", [("Content-Length", str(total))]))
        while written[0] < total:
            conn.writer.write(piece)
            await conn.writer.drain()
            written[0] += len(piece)
        return False

    async def scenario() -> tuple[int, int]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            got = await t.send(UpstreamRequest("GET", server.url("/huge"), {}, b""))
            chunks = aiter(got.content.iter_any())
            received = len(await anext(chunks))
            await asyncio.sleep(0.5)  # a slow consumer
            stalled_at = written[0]
            async for chunk in chunks:
                received += len(chunk)
            got.release()
            return stalled_at, received

    stalled_at, received = run(scenario(), timeout=30, uvloop=loop == "uvloop")
    assert received == total
    assert stalled_at < 24 << 20, f"{stalled_at >> 20} MiB written while the client paused"


# TLS -------------------------------------------------------------------------------------------

# Run in a child process: `ssl.create_default_context()` reads SSL_CERT_FILE, and aiohttp makes
# its context when it is imported, so the test CA must be trusted before the process starts.
TLS_SCRIPT = """
import asyncio, json, sys
from tests.raw_http_server import RawServer, response, serve_each, server_tls
from mini_llm.providers.base import UpstreamRequest
from mini_llm.resilience import Timeouts
from mini_llm.upstream import upstream_failure
kind, certs = sys.argv[1], json.loads(sys.argv[2])
if kind == "aiohttp":
    from mini_llm.upstream import HttpTransport as Transport
else:
    from mini_llm.http1 import Http1Transport as Transport

async def answer(conn, request):
    await conn.send(response(200, b"secure " + request.target.encode()))

async def one(pem, host, path):
    seen = []
    async with RawServer(serve_each(answer), server_tls(pem, seen)) as server:
        t = Transport(Timeouts(connect=3, first_byte=5, idle=5, total=10), 0, "ua", 4)
        await t.start()
        try:
            out = []
            for _ in range(2):
                r = await t.send(UpstreamRequest("GET", server.url(path, host=host), {}, b""))
                out.append((await r.read()).decode())
                r.release()
            return {"ok": out, "accepted": server.accepted, "sni": seen}
        except Exception as e:
            error = upstream_failure(e, "prov")
            return {"error": type(error).__name__, "message": str(error), "port": server.port}
        finally:
            await t.close()

async def main():
    return {
        "ip": await one(certs["server"], "127.0.0.1", "/a"),
        "name": await one(certs["server"], "localhost", "/b"),
        "wrong-name": await one(certs["wrong-name"], "127.0.0.1", "/c"),
        "untrusted": await one(certs["untrusted"], "localhost", "/d"),
    }

print(json.dumps(asyncio.run(asyncio.wait_for(main(), 20))))
"""


def test_https_with_a_trusted_ca_hostname_checks_and_sni(
    transport_class: TransportClass, tmp_path: Path
) -> None:
    kind = "aiohttp" if transport_class is HttpTransport else "http1"
    certs = make_tls(str(tmp_path))
    env = {**os.environ, "SSL_CERT_FILE": certs["ca"], "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", TLS_SCRIPT, kind, json.dumps(certs)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(Path(__file__).resolve().parent.parent),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["ip"] == {"ok": ["secure /a"] * 2, "accepted": 1, "sni": [None]}
    assert results["name"] == {"ok": ["secure /b"] * 2, "accepted": 1, "sni": ["localhost"]}
    for refused in ("wrong-name", "untrusted"):
        error = results[refused]
        assert error["error"] == "UpstreamConnectionError", error
        assert "unreachable at" in error["message"] and str(error["port"]) in error["message"]


# end to end: the gateway over a raw upstream, driven by the official client ----------------------

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
CUT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "cut"}]
KEY = "sk-e2e-upstream-key-0001"


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


SSE_EVENTS = [
    _event({"role": "assistant", "content": ""}),
    _event({"content": "Hel"}),
    _event({"content": "lo, wor"}),
    _event({"content": "ld"}),
    _event({}, "stop"),
    b"data: "
    + json.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        }
    ).encode()
    + b"\n\n",
    b"data: [DONE]\n\n",
]
COMPLETION = {
    "id": "chatcmpl-zip",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "zipped " * 400},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 400, "total_tokens": 403},
}


def _sse_in_odd_splits() -> bytes:
    stream = b"".join(SSE_EVENTS)
    cuts = [0, 7, 8, 61, 200, 201, 333, len(stream) - 3, len(stream)]  # chunks across events
    parts = [stream[a:b] for a, b in itertools.pairwise(cuts)]
    headers = [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]
    return response(200, chunked(parts, extension=";x=y"), headers)


async def _scripted_openai(conn: RawConnection, request: RawRequest) -> bool:
    if request.target != "/v1/chat/completions":
        await conn.send(response(404, b'{"error":{"message":"no such path"}}'))
        return True
    body = json.loads(request.body)
    prompt = body["messages"][0]["content"]
    if body.get("stream") and prompt == "cut":
        head = [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]
        events = chunked(SSE_EVENTS[:3])
        await conn.send(response(200, events[: events.rindex(b"0\r\n")] + b"40\r\ndata: {", head))
        return False  # closed mid-stream: the chunked body never ends
    if body.get("stream"):
        await conn.send(_sse_in_odd_splits(), pieces=5, pause=0.0005)
        return True
    data = json.dumps(COMPLETION).encode()
    if prompt == "cut":
        await conn.send(response(200, data, [("Content-Type", "application/json")])[:-50])
        return False
    packed = gzipped(data)
    head = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    await conn.send(response(200, packed, head), pieces=[10, 100, len(packed) // 2])
    return True


@pytest.fixture(params=["aiohttp", "builtin"])
def raw_gateway(
    request: pytest.FixtureRequest, loop_thread: LoopThread, make_gateway: GatewayFactory
) -> Iterator[tuple[RunningApp, RawServer]]:
    """A gateway whose `openai` provider is a raw scripted upstream, through one client."""
    expected = HttpTransport if request.param == "aiohttp" else _http1()
    server = RawServer(serve_each(_scripted_openai))
    loop_thread.run(server.__aenter__())
    try:
        gateway = make_gateway(
            {
                "OPENAI_BASE_URL": server.url("/v1"),
                "OPENAI_API_KEY": KEY,
                "MINI_LLM_RETRY_ATTEMPTS": "1",
                "MINI_LLM_HTTP_CLIENT": request.param,
            }
        )
        assert type(gateway.app[GATEWAY].http) is expected
        yield gateway, server
        server.check()
    finally:
        loop_thread.run(server.stop())


def test_gateway_relays_a_stream_cut_in_odd_places(
    raw_gateway: tuple[RunningApp, RawServer],
) -> None:
    gateway, server = raw_gateway
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    for _ in range(2):
        chunks = list(
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER, stream=True)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello, world"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    first = server.requests[0]
    assert first.header("Authorization") == f"Bearer {KEY}"
    assert first.header("Host") == f"127.0.0.1:{server.port}"


def test_gateway_decodes_a_gzipped_answer(raw_gateway: tuple[RunningApp, RawServer]) -> None:
    gateway, _ = raw_gateway
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    completion = client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert completion.choices[0].message.content == "zipped " * 400
    assert completion.usage is not None and completion.usage.completion_tokens == 400


def test_gateway_reports_a_cut_stream_in_the_clients_dialect(
    raw_gateway: tuple[RunningApp, RawServer],
) -> None:
    gateway, _ = raw_gateway
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=CUT, stream=True
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "Hello, wor"  # what came before the cut, then the error
    assert "closed the connection" in str(info.value)
    assert KEY not in str(info.value)


def test_gateway_reports_a_cut_answer_as_a_502(raw_gateway: tuple[RunningApp, RawServer]) -> None:
    gateway, _ = raw_gateway
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=CUT)
    assert info.value.status_code == 502
    error = info.value.body
    assert isinstance(error, dict) and set(error) >= {"message", "type", "code"}
    assert "closed the connection" in error["message"]
