"""The upstream HTTP/1.1 transports against their one contract, adversarially: the request
as sent, the answer's framing and keep-alive, compression.

Every test runs against both transports, the aiohttp `HttpTransport` and
`mini_llm.http1.Http1Transport`, so the new client is held to what the old one does. The
upstreams are raw asyncio servers (`raw_http_server`) scripted per test: exact bytes, cut
anywhere, delayed, closed; connections and requests are counted on the server's side. Failures
are in `test_http1_failures.py`; the pool, reuse, concurrency and TLS in
`test_http1_connections.py`; the gateway end to end in `test_http1_gateway.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from mini_llm.errors import (
    GatewayError,
    UpstreamError,
)
from mini_llm.providers.base import UpstreamRequest
from mini_llm.resilience import Timeouts
from mini_llm.upstream import HttpTransport

from .raw_http_server import (
    UA,
    RawConnection,
    RawRequest,
    RawServer,
    TransportClass,
    chunked,
    deflate,
    fetch,
    gzipped,
    ok,
    outcome,
    response,
    run,
    serve_each,
    started,
    stream,
)

QUICK = Timeouts(connect=1, first_byte=0.5, idle=0.5, total=2)
"""For a request that should never be answered: a failing test fails fast."""


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


def test_host_header_of_an_ipv6_literal(transport_class: TransportClass) -> None:
    async def scenario() -> tuple[str | None, int]:
        try:
            server = RawServer(serve_each(ok(b"six")), bind="::1")
            await server.__aenter__()
        except OSError:
            pytest.skip("no IPv6 loopback here")
        try:
            async with started(transport_class) as t:
                assert (await fetch(t, server.url("/v6")))[2] == b"six"
            return server.requests[0].header("Host"), server.port
        finally:
            await server.stop()

    host, port = run(scenario())
    assert host == f"[::1]:{port}"


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


@pytest.mark.parametrize(
    "given",
    [
        {"Host": "api.example.com"},  # a SigV4 signature covers the host it names
        {"user-agent": "caller/2"},
        {"Accept-Encoding": "identity"},
        {"Content-Length": "2"},
    ],
    ids=["host", "user-agent", "accept-encoding", "content-length"],
)
def test_a_header_the_transport_adds_is_sent_once_as_given(
    transport_class: TransportClass, given: dict[str, str]
) -> None:
    async def scenario() -> RawRequest:
        async with RawServer(serve_each(ok(b"ok"))) as server, started(transport_class) as t:
            assert (await fetch(t, server.url("/v1/x"), "POST", b"{}", given))[2] == b"ok"
            return server.requests[0]

    request = run(scenario())
    ((name, value),) = given.items()
    assert request.all(name) == [value]
    assert request.body == b"{}"


@pytest.mark.parametrize(
    ("url", "target"),
    [("/x?", "/x?"), ("/x#fragment", "/x"), ("/x?a=1#f", "/x?a=1"), ("", "/")],
    ids=["empty-query", "fragment", "query-fragment", "no-path"],
)
def test_the_edges_of_a_url(transport_class: TransportClass, url: str, target: str) -> None:
    async def scenario() -> str:
        async with RawServer(serve_each(ok(b"ok"))) as server, started(transport_class) as t:
            await fetch(t, server.url("") + url)
            return server.requests[0].target

    sent = run(scenario())
    # an empty query may be dropped ("/x"), nothing else may change; a fragment never goes out
    assert sent == target or (url == "/x?" and sent == "/x"), sent


@pytest.mark.parametrize(
    "path", ["/a b", "/a\r\nX-Injected: 1", "/a\nb", "/a\x00b", "/a\tb"], ids=repr
)
def test_a_url_with_a_space_or_control_character_is_refused(
    transport_class: TransportClass, path: str, request: pytest.FixtureRequest
) -> None:
    """The gateway percent-encodes what it puts in a URL; a transport still refuses a target
    that would break the request line rather than send it, or send another one."""
    if transport_class is HttpTransport and "\x00" not in path:
        why = "aiohttp (URL encoded=True) sends a space, CR, LF or TAB in the target as it is"
        request.applymarker(pytest.mark.xfail(strict=True, reason=why))
    # urlsplit() silently deletes TAB, CR and LF (bpo-43882): the raw URL is checked first
    received = bytearray()

    async def record(conn: RawConnection) -> None:
        while data := await conn.reader.read(65536):
            received.extend(data)

    async def scenario() -> None:
        async with RawServer(record) as server, started(transport_class, QUICK) as t:
            with pytest.raises((ValueError, GatewayError)):
                answer = await t.send(UpstreamRequest("GET", server.url(path), {}, b""))
                answer.close()
            await asyncio.sleep(0.1)

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


@pytest.mark.parametrize(
    "interim",
    [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"],
    ids=["100", "103"],
)
def test_interim_answers_are_skipped(transport_class: TransportClass, interim: bytes) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(interim)
        await asyncio.sleep(0.01)
        await conn.send(response(201, b"final", [("X-Final", "1")], reason="Created"))

    async def scenario() -> tuple[int, Mapping[str, str], bytes, int]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            status, headers, data = await fetch(t, server.url("/"), "POST", b"{}")
            assert (await fetch(t, server.url("/"), "POST", b"{}"))[2] == b"final"
            return status, headers, data, server.accepted

    status, headers, data, accepted = run(scenario())
    assert (status, data, accepted) == (201, b"final", 1)
    assert headers.get("x-final") == "1"


@pytest.mark.parametrize(
    "status_line",
    [b"HTTP/1.1 200\r\n", b"HTTP/1.1 200 \r\n", b"HTTP/1.1 200 Fine And Dandy\r\n"],
    ids=["no-reason", "empty-reason", "long-reason"],
)
def test_status_lines_and_header_whitespace(
    transport_class: TransportClass, status_line: bytes, request: pytest.FixtureRequest
) -> None:
    raw = status_line + b"X-Padded:   value with  spaces \t\r\nContent-Length: 2\r\n\r\nok"

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(raw)

    async def scenario() -> tuple[int, Mapping[str, str], bytes]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            return await fetch(t, server.url("/"))

    status, headers, data = run(scenario())
    assert (status, data) == (200, b"ok")
    assert headers.get("x-padded") == "value with  spaces"


def test_a_length_and_chunked_together_is_never_read_by_the_length(
    transport_class: TransportClass,
) -> None:
    """Both framings (a smuggling shape): chunked wins (RFC 9112 6.3) or the answer is refused;
    the next request is answered rightly either way."""
    raw = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    )

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(raw if request.target == "/both" else response(200, b"clean"))

    async def scenario() -> tuple[Any, bytes]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            first = await outcome(fetch(t, server.url("/both")))
            return first, (await fetch(t, server.url("/next")))[2]

    first, second = run(scenario())
    if isinstance(first, GatewayError):
        assert type(first) is UpstreamError, first
    else:
        assert first[2] == b"hello"
    assert second == b"clean"


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
