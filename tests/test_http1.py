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
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

import pytest

from mini_llm.errors import (
    GatewayError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeoutError,
)
from mini_llm.providers.base import UpstreamRequest, UpstreamResponse
from mini_llm.resilience import Timeouts
from mini_llm.upstream import HttpTransport, upstream_failure

from .raw_http_server import (
    RawConnection,
    RawRequest,
    RawServer,
    chunked,
    deflate,
    gzipped,
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
            status, _, _ = await fetch(t, server.url("/x", host="localhost"))
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

    assert run(scenario()) == 1


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
            try:
                data = (await fetch(t, server.url("/second")))[2]
            except Exception as e:  # failing is acceptable, answering wrongly is not
                assert isinstance(upstream_failure(e, "prov"), UpstreamError)
            else:
                assert data == b"/second"

    run(scenario())


# compression -----------------------------------------------------------------------------------

CODINGS = {"gzip": gzipped, "deflate": deflate, "raw-deflate": lambda d: deflate(d, raw=True)}


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
