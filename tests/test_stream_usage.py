"""The pass-through usage taps: the lazy one (only usage events decoded, the text counted only
when no usage came) gives the same figures as decoding every event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mini_llm.canonical import Usage
from mini_llm.formats import ANTHROPIC, CHAT, OPENAI
from mini_llm.policies import stream_usage
from mini_llm.policies.base import RequestInfo
from mini_llm.policies.stream_usage import FullTap, LazyTap, make_tap, openai_chat_usage
from mini_llm.providers.openai import OPENAI_WIRE

ENDPOINT = OPENAI_WIRE.endpoints[CHAT]
USAGE = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


def event(chunk: dict[str, Any], sep: str = "\n") -> bytes:
    return f"data: {json.dumps(chunk)}{sep}{sep}".encode()


def chunk(text: str | None, usage: Any = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": text} if text is not None else {}
    out: dict[str, Any] = {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    out["usage"] = usage
    return out


def stream(with_usage: bool, sep: str = "\n") -> list[bytes]:
    reads = [event(chunk(piece), sep) for piece in ("Hello", ", ", "world")]
    reads.append(event(chunk(None, finish="stop"), sep))
    if with_usage:
        last = chunk(None, usage=USAGE)
        last["choices"] = []
        reads.append(event(last, sep))
    reads.append(f"data: [DONE]{sep}{sep}".encode())
    return reads


def info() -> RequestInfo:
    return RequestInfo("req_1", "/v1/chat/completions", "openai.chat")


def run(tap_kind: type[FullTap] | type[LazyTap], reads: list[bytes], complete: bool) -> RequestInfo:
    got = info()
    tap: FullTap | LazyTap
    if tap_kind is LazyTap:
        tap = LazyTap(ENDPOINT, got, openai_chat_usage)
    else:
        tap = FullTap(ENDPOINT, got, None)
    for data in reads:
        tap.feed(data)
    tap.close(complete)
    return got


@pytest.mark.parametrize("sep", ["\n", "\r\n"])
@pytest.mark.parametrize("with_usage", [True, False])
@pytest.mark.parametrize("cut", [None, 2])
def test_the_lazy_tap_reads_what_the_full_decode_reads(
    sep: str, with_usage: bool, cut: int | None
) -> None:
    reads = stream(with_usage, sep)
    if cut is not None:  # a cancelled stream: only the first reads went
        reads = reads[:cut]
    full = run(FullTap, reads, cut is None)
    lazy = run(LazyTap, reads, cut is None)
    assert lazy.usage == full.usage
    if with_usage and cut is None:
        assert lazy.usage == Usage(input_tokens=12, output_tokens=3)
    else:
        assert lazy.usage is None
        # the text is counted when no usage came: what settle() estimates from
        assert lazy.delivered == full.delivered == len("Hello, world"[: 7 if cut else 12])


def test_usage_null_on_every_chunk_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[bytes] = []
    real = stream_usage._decode

    def spy(data: bytes) -> Any:
        decoded.append(bytes(data))
        return real(data)

    monkeypatch.setattr(stream_usage, "_decode", spy)
    reads = stream(True)
    got = run(LazyTap, [b"".join(reads)], True)  # one read of many events
    assert got.usage == Usage(input_tokens=12, output_tokens=3)
    assert len(decoded) == 1 and b'"prompt_tokens"' in decoded[0]
    assert got.delivered == 0  # usage came: the text was never counted


def test_spacing_and_the_last_usage_win() -> None:
    first = b'data: {"choices":[],"usage" :  {"prompt_tokens":1,"completion_tokens":1}}\n\n'
    second = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}\n\n'
    assert openai_chat_usage(first + second) == {"prompt_tokens": 5, "completion_tokens": 7}
    assert openai_chat_usage(b'data: {"usage": null}\n\n') is None
    # usage inside the text (a string) is not a usage object
    assert openai_chat_usage(b'data: {"choices":[{"delta":{"content":"\\"usage\\""}}]}\n\n') is None


def test_an_unusual_event_goes_through_the_decoder() -> None:
    # a JSON object split over two data lines is valid SSE: the bytes search cannot read it
    split = b'data: {"choices":[],\ndata: "usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n'
    assert openai_chat_usage(split) is False
    got = run(LazyTap, [event(chunk("abc")), split, b"data: [DONE]\n\n"], True)
    assert got.usage == Usage(input_tokens=4, output_tokens=2)


def test_a_long_stream_without_usage_is_counted_as_it_goes() -> None:
    piece = "x" * 1000
    reads = [event(chunk(piece)) for _ in range(400)]  # ~430 KB, over KEEP_BYTES
    got = info()
    tap = LazyTap(ENDPOINT, got, openai_chat_usage)
    for data in reads:
        tap.feed(data)
        assert sum(map(len, tap._kept)) <= stream_usage.KEEP_BYTES + len(data)
    tap.close(False)
    assert got.delivered == 400 * 1000


def test_the_full_tap_is_used_where_no_reader_is_known_or_the_answer_is_wanted() -> None:
    from mini_llm.canonical import CompletionBuilder

    assert isinstance(make_tap(OPENAI, ENDPOINT, info(), None), LazyTap)
    assert isinstance(make_tap(OPENAI, ENDPOINT, info(), CompletionBuilder()), FullTap)
    assert isinstance(make_tap(ANTHROPIC, ENDPOINT, info(), None), FullTap)


WHOLE_USAGES: list[Any] = [
    USAGE,
    {},
    {"prompt_tokens": 40, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 30}},
    {
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 20, "audio_tokens": 0},
        "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": 60,
        "cache_creation_1h_input_tokens": 80,
    },
    {"prompt_tokens": 5, "prompt_tokens_details": None, "completion_tokens_details": None},
    # shapes the typed read refuses: the general reading decides, as before
    {"prompt_tokens": 12.0, "completion_tokens": 3},
    {"prompt_tokens": -4, "completion_tokens": "7"},
    {"prompt_tokens": True, "completion_tokens": None},
    {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": None}},
    {"prompt_tokens": 9, "prompt_tokens_details": [1]},
    {"prompt_tokens": 2**70, "completion_tokens": 1},
    None,
    [1, 2],
    "usage",
]


@pytest.mark.parametrize("usage", WHOLE_USAGES)
def test_a_whole_answer_usage_reads_as_the_canonical_reading(usage: Any) -> None:
    answer = {"id": "x", "choices": [{"message": {"content": '"usage": {'}}], "usage": usage}
    expected = Usage.from_canonical(usage) if isinstance(usage, dict) else None
    got = stream_usage.canonical_whole_usage(json.dumps(answer).encode())
    assert got == expected
    if isinstance(usage, dict) and usage.get("prompt_tokens") == 100:
        assert got == Usage(30, 50, 10, 60, 20, 60)  # the figures by hand


def test_a_whole_answer_without_usage_or_not_json() -> None:
    assert stream_usage.canonical_whole_usage(b'{"id": "x", "choices": []}') is None
    assert stream_usage.canonical_whole_usage(b'{"id": "x", "usage": {') is None
    assert stream_usage.canonical_whole_usage(b"[]") is None
