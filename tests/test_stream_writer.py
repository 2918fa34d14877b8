"""`gateway.streaming.write_stream` and a stream's last events (`LastEvents`): they go out with
the end of the answer (one socket write), in order, and the dialect's work after them still
runs."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp import web

from mini_llm.dialects.base import LastEvents
from mini_llm.errors import GatewayError
from mini_llm.gateway.streaming import write_stream

from .harness import LoopThread, RunningApp


class _Errors:
    def error_event(self, error: GatewayError) -> bytes:
        return b"event: error\ndata: {}\n\n"


def _app(script: list[bytes], after: list[str]) -> web.Application:
    async def events() -> AsyncIterator[bytes]:
        for data in script:
            yield data
        after.append("ran")  # what a dialect does after its last event (a stored response)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await write_stream(request, events(), _Errors())

    app = web.Application()
    app.router.add_get("/s", handle)
    return app


def _raw_get(port: int) -> list[bytes]:
    """The answer's reads as they come (one recv each), until the connection closes."""
    reads: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET /s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        while data := conn.recv(65536):
            reads.append(data)
    return reads


@pytest.fixture
def served(loop_thread: LoopThread) -> Iterator[tuple[LoopThread, list[RunningApp]]]:
    apps: list[RunningApp] = []
    yield loop_thread, apps
    for app in apps:
        app.stop()


@pytest.mark.parametrize(
    ("script", "body"),
    [
        ([b"a\n", b"b\n", LastEvents(b"z\n")], b"a\nb\nz\n"),
        ([LastEvents(b"all\n")], b"all\n"),  # the whole stream at once: headers, events, end
        ([LastEvents(b"x\n"), b"y\n"], b"x\ny\n"),  # not the last after all: still in order
        ([b"a\n", LastEvents(b"")], b"a\n"),
    ],
)
def test_last_events_end_the_answer_and_the_events_run_to_their_end(
    served: tuple[LoopThread, list[RunningApp]], script: list[bytes], body: bytes
) -> None:
    loop, apps = served
    after: list[str] = []
    app = RunningApp(loop, _app(script, after))
    apps.append(app)
    reads = _raw_get(app.port)
    raw = b"".join(reads)
    head, _, chunked = raw.partition(b"\r\n\r\n")
    assert b"200 OK" in head and b"chunked" in head.lower()
    # de-chunk: the events in order, then the terminator
    out, rest = b"", chunked
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2 :]
    assert out == body
    assert after == ["ran"]
    if type(script[-1]) is LastEvents and script[-1]:
        # the last events close the chunked body: nothing after them but its end (they are
        # written with it; one write is what the benchmark's CPU figures show, not this)
        assert raw.endswith(script[-1] + b"\r\n0\r\n\r\n")
