"""In-process micro-benchmarks: the Responses → Anthropic translation, stream and whole answer.

Stream: the bytes `mock_upstream.py` sends for a streamed Anthropic answer (message_start, a
text block of 20 `text_delta` events, its stop, message_delta, message_stop) go through what
the gateway runs for them: the Anthropic decoder (SSE parser + stream translator) → canonical
chunks → the Responses event writer, with the pipeline's async generator layers
(`canonical_chunks`, the dialect's `events`). No sockets: what is measured is the
translation's own CPU per request.

Whole answer (`--whole`): the benchmark's Responses request (JSON bytes) decoded, parsed and
made canonical, the Anthropic request built and encoded; the mock's Anthropic JSON answer
decoded to the canonical answer, then rendered as the Responses JSON answer.

    python bench/micro_responses.py [--seconds 3] [--reads event|whole|two|three] [--whole]
                                    [--digest]

`--reads event`: one upstream read per SSE event (what the mock sends, each event its own
segment); `whole`: the whole stream in one read (what the gateway mostly reads at low
concurrency: the mock's events come coalesced); `two`: cut after the 17th text delta (the
gateway under callgrind, about two reads a stream); `three`: after the 5th and the 11th text
delta (at 16 streams at once the gateway reads a stream in 2 to 3 parts, cut at events).
`--digest` prints a SHA-256 of the client
bytes (ids and the clock fixed; with `--whole` the upstream request's bytes too), to check
that a change left the output byte-identical.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import mock_upstream
import msgspec

from mini_llm.call import Answer
from mini_llm.dialects.openai_responses import OpenAIResponsesDialect
from mini_llm.formats import RESPONSES
from mini_llm.gateway.pipeline import canonical_chunks
from mini_llm.providers.anthropic import ANTHROPIC_WIRE
from mini_llm.providers.base import UpstreamModel, native_format
from mini_llm.state.responses import MemoryResponseStore

BODY: dict[str, Any] = {
    "model": "anthropic/claude-bench",
    "instructions": "You are a terse assistant.",
    "input": [{"role": "user", "content": "Say hello to the benchmark in twenty tokens."}],
    "max_output_tokens": 64,
    "store": False,
    "stream": True,
}


def upstream_events() -> list[bytes]:
    """The SSE events of the mock's Anthropic stream, without the HTTP chunked framing."""
    events: list[bytes] = []
    for frame in mock_upstream._anthropic_stream():
        if frame.startswith(b"HTTP/"):
            frame = frame.split(b"\r\n\r\n", 1)[1]
        frame = frame.removesuffix(b"0\r\n\r\n")
        size, _, rest = frame.partition(b"\r\n")
        events.append(rest[: int(size, 16)])
    return events


def _cut(*at: int) -> Callable[[list[bytes]], list[bytes]]:
    """The stream's events read in parts, cut before the events at `at`."""

    def cut(events: list[bytes]) -> list[bytes]:
        bounds = [0, *at, len(events)]
        return [b"".join(events[a:b]) for a, b in itertools.pairwise(bounds)]

    return cut


# how the upstream's bytes are read (events 0 and 1 are message_start and the text block's
# start, then the 20 text deltas)
CUTS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "event": lambda events: events,
    "whole": _cut(),
    "two": _cut(19),
    "three": _cut(7, 13),
}

WHOLE_BODY = msgspec.json.encode({k: v for k, v in BODY.items() if k != "stream"})
_UPSTREAM = UpstreamModel("anthropic", "http://127.0.0.1:1", "claude-bench", {})


def upstream_answer() -> bytes:
    """The mock's Anthropic JSON answer, without its HTTP head."""
    return mock_upstream._anthropic_json().split(b"\r\n\r\n", 1)[1]


def whole(dialect: OpenAIResponsesDialect, answer: bytes) -> bytes:
    """One whole answer's translation: the upstream request's bytes and the client's."""
    call = dialect.parse(msgspec.json.decode(WHOLE_BODY), {})
    endpoint = ANTHROPIC_WIRE.endpoints[RESPONSES]
    call.canonical()
    body, native = call.body_for(native_format(ANTHROPIC_WIRE, endpoint))
    request = endpoint.request(_UPSTREAM, body, native, call.stream)
    done = Answer(None, False, completion=endpoint.parse(answer), endpoint=endpoint)
    return request.body + b"\n" + dialect.whole(call, done)


async def _reads(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def one(dialect: OpenAIResponsesDialect, parts: list[bytes]) -> bytes:
    """One stream, as the pipeline runs it when no policy reads the stream (`direct_events`,
    else the dialect's `events` over `canonical_chunks`)."""
    call = dialect.parse(dict(BODY), {})
    answer = Answer(None, False, stream=_reads(parts), endpoint=ANTHROPIC_WIRE.endpoints[RESPONSES])
    events = dialect.direct_events(call, answer)
    if events is None:
        events = dialect.events(call, answer, canonical_chunks(answer))
    out: list[bytes] = []
    async for data in events:
        out.append(data)
    return b"".join(out)


async def general(dialect: OpenAIResponsesDialect, parts: list[bytes]) -> bytes:
    """One stream through canonical chunks (the pipeline's way when a policy reads them)."""
    call = dialect.parse(dict(BODY), {})
    answer = Answer(None, False, stream=_reads(parts), endpoint=ANTHROPIC_WIRE.endpoints[RESPONSES])
    out: list[bytes] = []
    async for data in dialect.events(call, answer, canonical_chunks(answer)):
        out.append(data)
    return b"".join(out)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--reads", choices=tuple(CUTS), default="event")
    ap.add_argument("--whole", action="store_true")
    ap.add_argument("--digest", action="store_true")
    args = ap.parse_args()
    dialect = OpenAIResponsesDialect(
        MemoryResponseStore(), clock=lambda: 1700000000.0, new_id=lambda p: p + "_fixed"
    )
    if args.whole:
        measure_whole(dialect, args.seconds, args.digest)
        return
    parts = CUTS[args.reads](upstream_events())
    if args.digest:
        print(hashlib.sha256(await one(dialect, parts)).hexdigest())
        return
    for _ in range(200):  # warm up
        await one(dialect, parts)
    best = float("inf")
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline:
        n = 500
        t0 = time.process_time()
        for _ in range(n):
            await one(dialect, parts)
        best = min(best, (time.process_time() - t0) / n)
    print(f"reads={args.reads}: {best * 1e6:.1f} µs per stream (best of batches of 500)")


def measure_whole(dialect: OpenAIResponsesDialect, seconds: float, digest: bool) -> None:
    answer = upstream_answer()
    if digest:
        print(hashlib.sha256(whole(dialect, answer)).hexdigest())
        return
    for _ in range(200):  # warm up
        whole(dialect, answer)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        n = 500
        t0 = time.process_time()
        for _ in range(n):
            whole(dialect, answer)
        best = min(best, (time.process_time() - t0) / n)
    print(f"whole answer: {best * 1e6:.1f} µs per request (best of batches of 500)")


if __name__ == "__main__":
    asyncio.run(main())
