"""Hostile input (issue #18): deep nesting, lying Content-Encoding, slow request heads,
connection caps, a full upstream pool, the HTTP layer's own errors."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from mini_llm.config import Settings
from mini_llm.gateway.body import MAX_NESTING, nesting_exceeds
from mini_llm.providers.base import UpstreamRequest
from mini_llm.routing.policies import Timeouts
from mini_llm.upstream import HttpTransport

from .harness import LoopThread, RunningApp, gateway_settings
from .served_gateway import ServedGateway, exchange, read_answer

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
ANTHROPIC_PATHS = (MESSAGES, COUNT)


def request_bytes(
    path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> bytes:
    fields = {"Host": "gateway", "Content-Type": "application/json", "Connection": "close"}
    fields["Content-Length"] = str(len(body))
    fields.update(headers or {})
    head = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body


def valid_body(path: str, extra: bytes = b"") -> bytes:
    """A request the `mock/echo` model answers, with `extra` (`,"name":value`) added."""
    if path == CHAT:
        start = b'{"model":"mock/echo","messages":[{"role":"user","content":"hi"}]'
    else:
        start = b'{"model":"mock/echo","max_tokens":16,"messages":[{"role":"user","content":"hi"}]'
    return start + extra + b"}"


def nested_body(path: str, depth: int) -> bytes:
    """A valid request whose containers nest `depth` deep, the body itself counting 1."""
    inner = depth - 1
    return valid_body(path, b',"x":' + b"[" * inner + b"]" * inner)


def assert_error(path: str, status: int, body: bytes, expected: int, code: str | None) -> str:
    """The body is an error in the endpoint's dialect; returns its message."""
    assert status == expected, body[:300]
    data = json.loads(body)
    if path in ANTHROPIC_PATHS:
        assert data["type"] == "error"
        assert set(data["error"]) == {"type", "message"}
        assert data["error"]["type"] in ("invalid_request_error", "request_too_large")
    else:
        assert set(data) == {"error"}
        assert set(data["error"]) == {"message", "type", "param", "code"}
        if code is not None:
            assert data["error"]["code"] == code
    return str(data["error"]["message"])


@pytest.fixture(scope="module")
def served(loop_thread: LoopThread) -> Iterator[ServedGateway]:
    running = ServedGateway(loop_thread, gateway_settings({"MINI_LLM_MAX_BODY_BYTES": "1048576"}))
    yield running
    running.stop()


def send(loop: LoopThread, served: ServedGateway, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    return loop.run(exchange(served.port, raw))


# 1. deep nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, MESSAGES, COUNT])
@pytest.mark.parametrize("depth", [10, 127, 128, 129, 1000, 100_000])
def test_nesting_is_bounded(
    loop_thread: LoopThread,
    served: ServedGateway,
    caplog: pytest.LogCaptureFixture,
    path: str,
    depth: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    status, _, body = send(loop_thread, served, request_bytes(path, nested_body(path, depth)))
    if depth <= MAX_NESTING:
        assert status == 200, body[:300]
    else:
        message = assert_error(path, status, body, 400, "invalid_json")
        assert f"deeper than {MAX_NESTING}" in message
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text


def test_nesting_scan_is_exact_for_json() -> None:
    def depth_of(value: Any) -> int:
        if isinstance(value, list):
            return 1 + max(map(depth_of, value), default=0)
        if isinstance(value, dict):
            return 1 + max(map(depth_of, value.values()), default=0)
        return 0

    tricky = ['"[{"', '"\\\\"', '"\\"[["', '\\\\\\"]', "]}", "", 1, None]
    values: list[Any] = [
        {"a": [[["[" * 200]]]},
        [{"k[": tricky}] * 50,
        {"s": "\\" * 7 + '"' + "[" * 300},
        [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]] * 20,
    ]
    value: Any = tricky
    for level in range(140):
        value = [value, tricky] if level % 2 else {"[": value, "{": "}"}
        values.append(value)
    for value in values:
        raw = json.dumps(value).encode()
        depth = depth_of(value)
        for bound in (0, 1, 5, 8, 9, 20, 128, 139, 140):
            assert nesting_exceeds(raw, bound) is (depth > bound), (depth, bound)


def test_nesting_scan_never_underestimates_malformed_text() -> None:
    """A parser recursing into these would go deeper than 128 before finding the fault."""
    deep = b"[" * 130
    for raw in [b"[" * 200, b"[[]," + b"{" * 130, b'{"a":"\\\\",' + deep, b"[1,2" + deep]:
        assert nesting_exceeds(raw, 128), raw
    assert not nesting_exceeds(b"[" * 100 + b"]" * 300, 128)


# 2. lying Content-Encoding -------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, MESSAGES, COUNT])
def test_compressed_bodies_are_accepted(
    loop_thread: LoopThread, served: ServedGateway, path: str
) -> None:
    body = valid_body(path)
    raw_deflate = zlib.compressobj(wbits=-15)
    for encoding, data in [
        ("gzip", gzip.compress(body)),
        ("GZip ", gzip.compress(body[:20]) + gzip.compress(body[20:])),  # two members
        ("x-gzip", gzip.compress(body)),
        ("deflate", zlib.compress(body)),
        ("deflate", raw_deflate.compress(body) + raw_deflate.flush()),
        ("identity", body),
    ]:
        raw = request_bytes(path, data, {"Content-Encoding": encoding})
        status, _, answer = send(loop_thread, served, raw)
        assert status == 200, (encoding, answer[:300])


@pytest.mark.parametrize("path", [CHAT, MESSAGES, COUNT])
def test_lying_content_encoding_is_a_clean_error(
    loop_thread: LoopThread, served: ServedGateway, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    body = valid_body(path)
    bomb = gzip.compress(b" " * 5_000_000)  # about 5 KB that inflate to 5 MB (limit: 1 MB)
    assert len(bomb) < 65536
    cases: list[tuple[str, bytes, int, str | None]] = [
        ("gzip", body, 400, "invalid_content_encoding"),
        ("deflate", body, 400, "invalid_content_encoding"),
        ("gzip", gzip.compress(body)[:-12], 400, "invalid_content_encoding"),  # cut short
        ("deflate", zlib.compress(body) + b"garbage", 400, "invalid_content_encoding"),
        ("deflate", b"", 400, None),
        ("gzip", b"", 400, None),
        ("gzip", bomb, 413, "request_too_large"),
        ("deflate", zlib.compress(b" " * 5_000_000), 413, "request_too_large"),
        ("br", body, 415, "unsupported_content_encoding"),
        ("zstd", body, 415, "unsupported_content_encoding"),
        ("gzip, deflate", gzip.compress(body), 415, "unsupported_content_encoding"),
        ("compress", body, 415, "unsupported_content_encoding"),
    ]
    for encoding, data, expected, code in cases:
        raw = request_bytes(path, data, {"Content-Encoding": encoding})
        status, headers, answer = send(loop_thread, served, raw)
        assert_error(path, status, answer, expected, code)
        if expected == 415:
            assert headers["accept-encoding"] == "gzip, deflate"
    assert "Traceback" not in caplog.text


# 3. slow request heads, connection caps -----------------------------------------------------


def test_slow_heads_are_closed_at_the_header_timeout(loop_thread: LoopThread) -> None:
    settings = gateway_settings({"MINI_LLM_HEADER_TIMEOUT": "1.5"})
    served = ServedGateway(loop_thread, settings)
    head = request_bytes("/v1/models", b"", method="GET")

    async def slow_client() -> float:
        """Sends a head a byte per 0.5 s; how long the gateway kept the connection open."""
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        started = time.monotonic()
        try:
            for byte in head:
                writer.write(bytes([byte]))
                await asyncio.sleep(0.5)
                if reader.at_eof() or writer.is_closing():
                    break
                if time.monotonic() - started > 10:
                    raise AssertionError("the slow head was never cut off")
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, no answer
            return time.monotonic() - started
        finally:
            writer.close()

    async def scenario() -> tuple[list[float], int]:
        slow = [asyncio.create_task(slow_client()) for _ in range(50)]
        await asyncio.sleep(0.5)
        normal = await exchange(served.port, head)
        return list(await asyncio.gather(*slow)), normal[0]

    try:
        held, normal_status = loop_thread.run(scenario(), timeout=30)
        assert normal_status == 200
        assert all(1.4 <= seconds <= 3.5 for seconds in held), held
    finally:
        served.stop()


def test_keep_alive_is_not_a_header_timeout(loop_thread: LoopThread) -> None:
    """An idle kept-alive connection stays open; its next request's head is timed from its
    first byte."""
    served = ServedGateway(loop_thread, gateway_settings({"MINI_LLM_HEADER_TIMEOUT": "0.5"}))
    get = b"GET /v1/models HTTP/1.1\r\nHost: gateway\r\n\r\n"

    async def scenario() -> tuple[int, int, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        try:
            writer.write(get)
            first = await asyncio.wait_for(read_answer(reader), 5)
            await asyncio.sleep(1.0)  # idle, twice the header timeout
            writer.write(get)
            second = await asyncio.wait_for(read_answer(reader), 5)
            writer.write(get[:10])  # a next head that stalls
            rest = await asyncio.wait_for(reader.read(), 5)
            return first[0], second[0], rest
        finally:
            writer.close()

    try:
        assert loop_thread.run(scenario()) == (200, 200, b"")
    finally:
        served.stop()


@pytest.mark.parametrize(
    "env",
    [{"MINI_LLM_MAX_CONNECTIONS_PER_CLIENT": "5"}, {"MINI_LLM_MAX_CONNECTIONS": "5"}],
    ids=["per-client", "total"],
)
def test_connections_over_a_cap_are_refused(
    loop_thread: LoopThread, caplog: pytest.LogCaptureFixture, env: dict[str, str]
) -> None:
    served = ServedGateway(loop_thread, gateway_settings(env))
    get = b"GET /v1/models HTTP/1.1\r\nHost: gateway\r\n\r\n"

    async def scenario() -> tuple[list[int], bytes, int]:
        held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(5)]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            refused = await asyncio.wait_for(reader.read(), 5)  # closed at once, unanswered
            writer.close()
            statuses = []
            for held_reader, held_writer in held:  # the five admitted still work
                held_writer.write(get)
                statuses.append((await asyncio.wait_for(read_answer(held_reader), 5))[0])
        finally:
            for _, held_writer in held:
                held_writer.close()
        await asyncio.sleep(0.2)  # the closes reach the gateway: a new connection is admitted
        after = await exchange(served.port, request_bytes("/v1/models", b"", method="GET"))
        return statuses, refused, after[0]

    try:
        assert loop_thread.run(scenario()) == ([200] * 5, b"", 200)
        assert served.runner.guard.open <= 1
        assert "refused 1 connection(s) over the caps" in caplog.text
    finally:
        served.stop()


def test_connection_settings() -> None:
    defaults = Settings()
    assert (defaults.header_timeout, defaults.max_connections) == (10.0, 8192)
    assert (defaults.max_connections_per_client, defaults.pool_size) == (1024, 0)
    assert defaults.pool_per_host == 1024
    settings = gateway_settings(
        {
            "MINI_LLM_HEADER_TIMEOUT": "2.5",
            "MINI_LLM_MAX_CONNECTIONS": "0",
            "MINI_LLM_MAX_CONNECTIONS_PER_CLIENT": "7",
            "MINI_LLM_POOL_PER_HOST": "3",
        }
    )
    assert (settings.header_timeout, settings.max_connections) == (2.5, 0)
    assert (settings.max_connections_per_client, settings.pool_per_host) == (7, 3)


# 4. upstream pool ----------------------------------------------------------------------------


def test_a_full_pool_makes_requests_wait_and_says_so(
    loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.6)
        return web.Response(body=b"{}")

    app = web.Application()
    app.router.add_post("/slow", slow)
    upstream = RunningApp(loop_thread, app)
    transport = HttpTransport(Timeouts(), 0, "test", pool_per_host=2)

    async def one() -> float:
        started = time.monotonic()
        response = await transport.send(UpstreamRequest("POST", upstream.url + "/slow", {}, b"{}"))
        await response.read()
        response.release()
        return time.monotonic() - started

    async def scenario() -> list[float]:
        await transport.start()
        try:
            return sorted(await asyncio.gather(one(), one(), one()))
        finally:
            await transport.close()

    caplog.set_level(logging.WARNING, logger="mini_llm.upstream")
    try:
        durations = loop_thread.run(scenario())
    finally:
        upstream.stop()
    assert durations[1] < 1.1 <= durations[2], durations  # the third waited for a connection
    assert "for a pooled connection to 127.0.0.1" in caplog.text
    assert "pool_per_host 2" in caplog.text


# the HTTP layer's own errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nabc\r\n0\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n",
    ],
    ids=["content-length", "chunk-size", "request-line", "long-header"],
)
def test_malformed_http_is_a_json_error_both_dialects_read(
    loop_thread: LoopThread, served: ServedGateway, caplog: pytest.LogCaptureFixture, raw: bytes
) -> None:
    status, headers, body = send(loop_thread, served, raw)
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    data = json.loads(body)
    assert data["type"] == "error"  # Anthropic's shape
    assert data["error"]["type"] == "invalid_request_error"
    assert data["error"]["message"].startswith("Malformed HTTP request")
    assert data["error"]["code"] == "invalid_http_request"  # and what OpenAI clients read
    assert "param" in data["error"]
    assert "Traceback" not in caplog.text
