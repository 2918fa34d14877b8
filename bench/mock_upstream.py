"""A fast mock LLM upstream for the benchmark: raw asyncio protocol + httptools (+ uvloop).

It speaks the OpenAI (`/v1/chat/completions`, `/v1/responses`) and Anthropic (`/v1/messages`)
wire formats,
JSON and SSE. Streams are 20 content chunks + a finish event (+ `[DONE]` for OpenAI), each
written to the socket separately, with a turn of the event loop between writes so that they
leave as separate segments. Answers are prebuilt bytes: the mock costs about 10 µs of CPU per
JSON answer, so that it is never what a benchmark measures.

Usage: python bench/mock_upstream.py [--port 0] [--delay-ms 0]
It prints `listening <port>` once bound; it stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
from collections.abc import Callable
from typing import cast

import httptools

CHUNKS = 20
_WORD = "tok "


def _http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _sse(data: object, event: str | None = None) -> bytes:
    text = json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def _json_answer(body: object) -> bytes:
    raw = json.dumps(body, separators=(",", ":")).encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(
        raw
    )
    return head + raw


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def _openai_json() -> bytes:
    return _json_answer(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "gpt-4o-mini",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": _WORD * CHUNKS},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 32},
        }
    )


def _openai_stream() -> list[bytes]:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000}
    base["model"] = "gpt-4o-mini"
    events = []
    for i in range(CHUNKS):
        delta = {"role": "assistant", "content": _WORD} if i == 0 else {"content": _WORD}
        events.append(
            _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        )
    events.append(
        _sse(
            {
                **base,
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 32},
            }
        )
    )
    events.append(b"data: [DONE]\n\n")
    frames = [_http_chunk(e) for e in events]
    frames[-1] += b"0\r\n\r\n"
    frames[0] = _STREAM_HEAD + frames[0]
    return frames


def _anthropic_json() -> bytes:
    return _json_answer(
        {
            "id": "msg_bench",
            "type": "message",
            "role": "assistant",
            "model": "claude-bench",
            "content": [{"type": "text", "text": _WORD * CHUNKS}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": CHUNKS},
        }
    )


def _anthropic_stream() -> list[bytes]:
    events = [
        _sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_bench",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-bench",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
            "message_start",
        ),
        _sse(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
            "content_block_start",
        ),
    ]
    for _ in range(CHUNKS):
        events.append(
            _sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": _WORD},
                },
                "content_block_delta",
            )
        )
    events.append(_sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
    events.append(
        _sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": CHUNKS},
            },
            "message_delta",
        )
    )
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    frames = [_http_chunk(e) for e in events]
    frames[-1] += b"0\r\n\r\n"
    frames[0] = _STREAM_HEAD + frames[0]
    return frames


def _response_object(status: str, text: str) -> dict[str, object]:
    output = []
    if text:
        output = [
            {
                "type": "message",
                "id": "msg_bench",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ]
    return {
        "id": "resp_bench",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "model": "gpt-4o-mini",
        "output": output,
        "usage": {
            "input_tokens": 12,
            "output_tokens": CHUNKS,
            "total_tokens": 12 + CHUNKS,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }


def _responses_json() -> bytes:
    return _json_answer(_response_object("completed", _WORD * CHUNKS))


def _responses_stream() -> list[bytes]:
    """The Responses API's event sequence: created, in progress, one message item with one
    text part (20 deltas), its closing events, completed."""
    n = iter(range(1000))

    def event(kind: str, **fields: object) -> bytes:
        return _sse({"type": kind, "sequence_number": next(n), **fields}, kind)

    item = {"type": "message", "id": "msg_bench", "status": "in_progress", "role": "assistant"}
    part = {"type": "output_text", "text": "", "annotations": []}
    where = {"item_id": "msg_bench", "output_index": 0, "content_index": 0}
    events = [
        event("response.created", response=_response_object("in_progress", "")),
        event("response.in_progress", response=_response_object("in_progress", "")),
        event("response.output_item.added", output_index=0, item={**item, "content": []}),
        event("response.content_part.added", part=part, **where),
    ]
    events += [event("response.output_text.delta", delta=_WORD, **where) for _ in range(CHUNKS)]
    text = _WORD * CHUNKS
    done_part = {**part, "text": text}
    done_item = {**item, "status": "completed", "content": [done_part]}
    events += [
        event("response.output_text.done", text=text, **where),
        event("response.content_part.done", part=done_part, **where),
        event("response.output_item.done", output_index=0, item=done_item),
        event("response.completed", response=_response_object("completed", text)),
    ]
    frames = [_http_chunk(e) for e in events]
    frames[-1] += b"0\r\n\r\n"
    frames[0] = _STREAM_HEAD + frames[0]
    return frames


OPENAI_JSON = _openai_json()
OPENAI_STREAM = _openai_stream()
ANTHROPIC_JSON = _anthropic_json()
ANTHROPIC_STREAM = _anthropic_stream()
RESPONSES_JSON = _responses_json()
RESPONSES_STREAM = _responses_stream()
NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found"
)
_ROUTES = {
    b"/v1/chat/completions": (OPENAI_JSON, OPENAI_STREAM),
    b"/chat/completions": (OPENAI_JSON, OPENAI_STREAM),
    b"/v1/messages": (ANTHROPIC_JSON, ANTHROPIC_STREAM),
    b"/messages": (ANTHROPIC_JSON, ANTHROPIC_STREAM),
    b"/v1/responses": (RESPONSES_JSON, RESPONSES_STREAM),
    b"/responses": (RESPONSES_JSON, RESPONSES_STREAM),
}


_STREAMS: set[asyncio.Future[None]] = set()  # running streams, kept from the garbage collector


def _wants_stream(body: bytes) -> bool:
    return b'"stream":true' in body or b'"stream": true' in body


class MockProtocol(asyncio.Protocol):
    delay = 0.0

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        path = self.url.split(b"?", 1)[0]
        route = _ROUTES.get(path)
        if route is None:
            self._send([NOT_FOUND], keep_alive)
            return
        answer = route[1] if _wants_stream(b"".join(self.body)) else [route[0]]
        if self.delay > 0:
            asyncio.get_running_loop().call_later(self.delay, self._send, answer, keep_alive)
        else:
            self._send(answer, keep_alive)

    def _send(self, frames: list[bytes], keep_alive: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if len(frames) == 1:
            transport.write(frames[0])
            if not keep_alive:
                transport.close()
            return
        task = asyncio.ensure_future(self._stream(frames, keep_alive))
        _STREAMS.add(task)
        task.add_done_callback(_STREAMS.discard)

    async def _stream(self, frames: list[bytes], keep_alive: bool) -> None:
        transport = self.transport
        for frame in frames:
            if transport is None or transport.is_closing():
                return
            transport.write(frame)
            await asyncio.sleep(0)
        if not keep_alive and transport is not None:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(port: int, delay_ms: float, on_ready: Callable[[int], None]) -> None:
    MockProtocol.delay = delay_ms / 1000
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, "127.0.0.1", port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    on_ready(bound)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    main_coro = serve(args.port, args.delay_ms, lambda p: print(f"listening {p}", flush=True))
    try:
        import uvloop
    except ImportError:
        asyncio.run(main_coro)
    else:
        uvloop.run(main_coro)


if __name__ == "__main__":
    main()
