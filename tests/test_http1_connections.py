"""The upstream HTTP/1.1 transports' connections, against both (`HttpTransport`, aiohttp's,
and `Http1Transport`): the bounded pool, closed and stale connections, no request sent twice,
many concurrent requests, large bodies, flow control, TLS through a test CA; the gateway end to
end is in `test_http1_gateway.py`, the request and framing contract in `test_http1.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mini_llm.errors import GatewayError, UpstreamTimeoutError
from mini_llm.providers.base import UpstreamRequest
from mini_llm.resilience import Timeouts
from mini_llm.upstream import HttpTransport

from .raw_http_server import (
    FAST,
    UA,
    RawConnection,
    RawRequest,
    RawServer,
    TransportClass,
    closed_early,
    failure,
    fetch,
    gzipped,
    make_tls,
    outcome,
    response,
    run,
    serve_each,
    started,
    stream,
)

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


def test_the_wait_for_a_pooled_connection_is_bounded(transport_class: TransportClass) -> None:
    """One connection, held for 3 s: the next request's wait ends in a timeout (aiohttp bounds
    it by `total`, Http1Transport by `connect`), not after the holder is done."""

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await asyncio.sleep(3 if request.target == "/hold" else 0)
        await conn.send(response(200, b"ok"))

    timeouts = Timeouts(connect=0.3, first_byte=5, idle=5, total=0.6)

    async def scenario() -> tuple[GatewayError, float]:
        async with (
            RawServer(serve_each(answer)) as server,
            started(transport_class, pool_per_host=1) as t,
        ):
            holder = asyncio.ensure_future(fetch(t, server.url("/hold")))
            await asyncio.sleep(0.05)
            began = time.monotonic()
            error = await failure(fetch(t, server.url("/next"), timeouts=timeouts))
            took = time.monotonic() - began
            holder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await holder
            return error, took

    error, took = run(scenario())
    assert type(error) is UpstreamTimeoutError
    assert took < 1.5, took


def test_pool_size_bounds_connections_to_every_host_together(
    transport_class: TransportClass, request: pytest.FixtureRequest
) -> None:
    """`pool_size` 1, two hosts: the second waits for the first, then gets its turn (an idle
    connection to the first host must not keep the place forever)."""

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await asyncio.sleep(0.3)
        await conn.send(response(200, request.target.encode()))

    async def scenario() -> tuple[list[float], int, int]:
        async with (
            RawServer(serve_each(answer)) as one,
            RawServer(serve_each(answer)) as two,
            started(transport_class, Timeouts(connect=1.2), pool_size=1) as t,
        ):
            began = time.monotonic()

            async def get(server: RawServer, path: str) -> float:
                assert (await fetch(t, server.url(path)))[2] == path.encode()
                return time.monotonic() - began

            took = await asyncio.gather(get(one, "/a"), get(two, "/b"))
            return sorted(took), one.accepted, two.accepted

    took, accepted_one, accepted_two = run(scenario())
    assert (accepted_one, accepted_two) == (1, 1)
    assert took[0] < 0.55 <= took[1], took  # one after the other


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
                await asyncio.sleep(0.12)
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


def test_a_request_cancelled_while_awaiting_its_answer_drops_the_connection(
    transport_class: TransportClass,
) -> None:
    """The gateway cancels an attempt when its client goes away: the connection, whose answer
    may still come, must not go back to the pool, and its place must be free again."""
    dropped = asyncio.Event()

    async def answer(conn: RawConnection, request: RawRequest) -> bool | None:
        if request.target == "/hang":
            if await conn.peer_closed(3.0):
                dropped.set()
            return False
        await conn.send(response(200, b"fine"))
        return None

    async def scenario() -> tuple[bytes, int]:
        async with (
            RawServer(serve_each(answer)) as server,
            started(transport_class, pool_per_host=1) as t,
        ):
            task = asyncio.ensure_future(fetch(t, server.url("/hang"), "POST", b"{}"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(dropped.wait(), 3)
            data = (await fetch(t, server.url("/ok"), "POST", b"{}"))[2]
            return data, server.accepted

    assert run(scenario()) == (b"fine", 2)


def test_a_request_cancelled_while_waiting_for_the_pool_leaves_no_trace(
    transport_class: TransportClass,
) -> None:
    async def answer(conn: RawConnection, request: RawRequest) -> None:
        if request.target == "/slow":
            await asyncio.sleep(0.5)
        await conn.send(response(200, request.target.encode()))

    async def scenario() -> tuple[list[bytes], list[str], int]:
        async with (
            RawServer(serve_each(answer)) as server,
            started(transport_class, pool_per_host=1) as t,
        ):
            slow = asyncio.ensure_future(fetch(t, server.url("/slow"), "POST", b"{}"))
            await asyncio.sleep(0.05)
            waiting = asyncio.ensure_future(fetch(t, server.url("/never"), "POST", b"{}"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            later = asyncio.ensure_future(fetch(t, server.url("/later"), "POST", b"{}"))
            answers = [(await slow)[2], (await later)[2]]
            assert waiting.cancelled()
            return answers, [r.target for r in server.requests], server.accepted

    answers, targets, accepted = run(scenario())
    assert answers == [b"/slow", b"/later"]
    assert (targets, accepted) == (["/slow", "/later"], 1)


def test_closing_the_transport_closes_every_connection(
    transport_class: TransportClass, request: pytest.FixtureRequest
) -> None:
    closed: list[int] = []

    async def handler(conn: RawConnection) -> None:
        while (request := await conn.read_request()) is not None:
            if request.target == "/stream":
                await conn.send(response(200, b"", [("Transfer-Encoding", "chunked")]))
                await conn.send(b"5\r\nfirst\r\n")
                await conn.peer_closed(5.0)
                break
            await asyncio.sleep(0.05)  # both requests hold a connection at once
            await conn.send(response(200, b"idle"))
        closed.append(conn.number)

    async def scenario() -> tuple[list[int], Any, int]:
        async with RawServer(handler) as server:
            t = transport_class(FAST, 0, UA, pool_per_host=8)
            await t.start()
            try:
                await asyncio.gather(*(fetch(t, server.url("/idle")) for _ in range(2)))
                got = await t.send(UpstreamRequest("GET", server.url("/stream"), {}, b""))
                chunks = aiter(got.content.iter_any())
                assert await anext(chunks) == b"first"
            finally:
                await t.close()
            rest = await outcome(asyncio.wait_for(stream(got), 0.5))  # ends, whichever way
            got.close()
            for _ in range(40):
                if len(closed) == server.accepted:
                    break
                await asyncio.sleep(0.05)
            return sorted(closed), rest, server.accepted

    closed_numbers, rest, accepted = run(scenario())
    assert accepted >= 2
    assert closed_numbers == list(range(1, accepted + 1)), "a connection outlived the transport"
    assert not isinstance(rest, UpstreamTimeoutError), "a stream outlived its transport"


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


@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
def test_an_answer_before_the_whole_body_was_taken(transport_class: TransportClass) -> None:
    """An upstream refuses a large body at its headers (413) and closes: the client gets the
    413, not a write error."""

    async def handler(conn: RawConnection) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")
        await conn.send(response(413, b'{"error":"too large"}', [("Connection", "close")]))
        await asyncio.sleep(0.05)

    async def scenario() -> tuple[int, bytes]:
        async with RawServer(handler) as server, started(transport_class) as t:
            status, _, data = await fetch(t, server.url("/"), "POST", b"x" * (16 << 20))
            return status, data

    assert run(scenario()) == (413, b'{"error":"too large"}')


@pytest.mark.parametrize(
    ("loop", "late"),
    [("asyncio", False), ("uvloop", False), ("asyncio", True)],
    ids=["asyncio", "uvloop", "consumer-starts-late"],
)
def test_a_stream_read_slowly_is_not_buffered_whole(
    transport_class: TransportClass, loop: str, late: bool, request: pytest.FixtureRequest
) -> None:
    """50 MiB offered, the client reading one chunk then pausing (or taking its time before
    its first read): the upstream's writes block (flow control) instead of the client's
    memory taking the whole answer."""
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
            if late:
                await asyncio.sleep(0.5)
            chunks = aiter(got.content.iter_any())
            received = len(await anext(chunks))
            await asyncio.sleep(0.5)  # a slow consumer
            stalled_at = written[0]
            async for chunk in chunks:
                received += len(chunk)
            got.release()
            return stalled_at, received

    stalled_at, received = run(scenario(), timeout=30, uvloop=loop == "uvloop")
    assert stalled_at < 16 << 20, f"{stalled_at >> 20} MiB written while the client paused"
    assert received == total


@functools.cache
def _zeros_gzipped(size: int) -> bytes:
    return gzipped(b"\0" * size)


def test_a_compressed_stream_is_decoded_in_bounded_pieces(
    transport_class: TransportClass, request: pytest.FixtureRequest
) -> None:
    """32 MiB of zeros come as 32 KiB of gzip: decoding it all at once would hold the whole in
    memory past flow control (a decompression bomb: 1 MiB on the wire, 1 GiB in memory)."""
    size = 32 << 20
    packed = _zeros_gzipped(size)

    async def answer(conn: RawConnection, request: RawRequest) -> None:
        await conn.send(response(200, packed, [("Content-Encoding", "gzip")]))

    async def scenario() -> list[int]:
        async with RawServer(serve_each(answer)) as server, started(transport_class) as t:
            got = await t.send(UpstreamRequest("GET", server.url("/"), {}, b""))
            await asyncio.sleep(0.1)  # the whole compressed body has arrived
            sizes = [len(chunk) async for chunk in got.content.iter_any()]
            got.release()
            return sizes

    sizes = run(scenario())
    assert sum(sizes) == size
    assert max(sizes) <= 4 << 20, f"a piece of {max(sizes) >> 20} MiB"


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
