"""The Responses dialect's direct lane (`direct_events`): an Anthropic stream rendered with no
canonical chunk for a read that is one text delta must give the very bytes the general way
(`events` over the decoder's canonical chunks) gives, however the reads are cut."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mini_llm.call import Answer
from mini_llm.dialects.base import LastEvents
from mini_llm.dialects.openai_responses import OpenAIResponsesDialect
from mini_llm.formats import RESPONSES
from mini_llm.gateway.pipeline import canonical_chunks
from mini_llm.providers.anthropic import ANTHROPIC_WIRE
from mini_llm.providers.anthropic_stream import AnthropicStreamDecoder
from mini_llm.providers.openai import OPENAI_WIRE
from mini_llm.state.responses import MemoryResponseStore

from .fixture_files import FIXTURES

BODY: dict[str, Any] = {
    "model": "anthropic/claude-test",
    "input": "hi",
    "stream": True,
    "store": True,
}


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), json.dumps(data).encode())


def _compact(kind: str, data: dict[str, Any]) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), text.encode())


def _text(text: str, index: int = 0, ascii_only: bool = False) -> bytes:
    delta = {"type": "text_delta", "text": text}
    data: dict[str, Any] = {"type": "content_block_delta", "index": index, "delta": delta}
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=ascii_only)
    return b"event: content_block_delta\ndata: %s\n\n" % payload.encode()


def _start(index: int = 0) -> list[bytes]:
    message: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 7, "output_tokens": 1},
    }
    text_block = {"type": "text", "text": ""}
    block = {"type": "content_block_start", "index": index, "content_block": text_block}
    return [
        _compact("message_start", {"type": "message_start", "message": message}),
        _compact("content_block_start", block),
    ]


def _end(index: int = 0, stop: str = "end_turn") -> list[bytes]:
    usage = {"output_tokens": 9}
    delta = {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": usage}
    return [
        _compact("content_block_stop", {"type": "content_block_stop", "index": index}),
        _compact("message_delta", delta),
        _compact("message_stop", {"type": "message_stop"}),
    ]


def _text_block(text: str = "") -> dict[str, Any]:
    return {"type": "text", "text": text}


def _text_start(index: int) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": _text_block()}


_TOOL_START = {
    "type": "content_block_start",
    "index": 1,
    "content_block": {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}},
}
_THINKING_START = {
    "type": "content_block_start",
    "index": 0,
    "content_block": {"type": "thinking", "thinking": ""},
}


def _json_delta(partial: str) -> dict[str, Any]:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return {"type": "content_block_delta", "index": 1, "delta": delta}


def _thinking_delta(text: str) -> dict[str, Any]:
    delta = {"type": "thinking_delta", "thinking": text}
    return {"type": "content_block_delta", "index": 0, "delta": delta}


def _signature_delta() -> dict[str, Any]:
    delta = {"type": "signature_delta", "signature": "c2lnbmVk"}
    return {"type": "content_block_delta", "index": 0, "delta": delta}


TEXTS = ["Hel", "lo, ", "wörld ", '\u2028 "quoted" \\ back/slash\n', "", "tab\there", "🙂 <&>"]

STREAMS: dict[str, list[bytes]] = {
    "plain": [*_start(), *(_text(t) for t in TEXTS), *_end()],
    "ascii-escaped": [*_start(), *(_text(t, ascii_only=True) for t in TEXTS), *_end()],
    "index 12": [*_start(12), *(_text(t, 12) for t in TEXTS), *_end(12)],
    "spaced json": [
        *_start(),
        *(_event("content_block_delta", json.loads(_text(t)[33:-2])) for t in TEXTS),
        *_end(),
    ],
    "max tokens": [*_start(), _text("cut"), *_end(stop="max_tokens")],
    "ping between": [
        *_start(),
        _text("a"),
        _compact("ping", {"type": "ping"}),
        _text("b"),
        *_end(),
    ],
    "crlf": [e.replace(b"\n", b"\r\n") for e in [*_start(), *(_text(t) for t in TEXTS), *_end()]],
    "bad utf-8": [*_start(), _text("ok"), _text("x").replace(b'"x"', b'"\xff"'), *_end()],
    "line break before quote": [*_start(), _text("a").replace(b':"a"', b':\n"a"'), *_end()],
    "tool use fixture": [
        e + b"\n\n"
        for e in (FIXTURES / "anthropic" / "stream_tool_use.sse").read_bytes().split(b"\n\n")
        if e.strip()
    ],
    "error fixture": [
        e + b"\n\n"
        for e in (FIXTURES / "anthropic" / "stream_error.sse").read_bytes().split(b"\n\n")
        if e.strip()
    ],
    "cut short": [*_start(), _text("never ends")],
    # plain reads first, then a block the plain lane leaves to the chunks (`write`)
    "text then tool": [
        *_start(),
        _text("Let me look."),
        _compact("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _compact("content_block_start", _TOOL_START),
        _compact("content_block_delta", _json_delta('{"path":')),
        _compact("content_block_delta", _json_delta('"a.txt"}')),
        *_end(1, "tool_use"),
    ],
    "thinking then text": [
        _start()[0],
        _compact("content_block_start", _THINKING_START),
        _compact("content_block_delta", _thinking_delta("hmm")),
        _compact("content_block_delta", _signature_delta()),
        _compact("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _compact("content_block_start", _text_start(1)),
        _text("answer", 1),
        *_end(1),
    ],
    "two text blocks": [
        *_start(),
        _text("one "),
        _compact("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _compact("content_block_start", _text_start(1)),
        _text("two", 1),
        *_end(1),
    ],
    "error after text": [
        *_start(),
        _text("partial"),
        _compact("error", {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}),
    ],
    "stop with no delta": [*_start(), _text("a"), _end()[0], _end()[2]],
    "text after the delta": [*_start(), _text("a"), _end()[1], _text("late"), _end()[2]],
    "block begun with text": [
        _start()[0],
        _compact(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": _text_block("Hi")},
        ),
        _text(" there"),
        *_end(),
    ],
    "stop of an unknown block": [
        *_start(),
        _text("a"),
        _compact("content_block_stop", {"type": "content_block_stop", "index": 3}),
        *_end(),
    ],
    "two starts": [*_start(), _start()[0], _text("a"), *_end()],
}


def _cuts(events: list[bytes]) -> dict[str, list[bytes]]:
    """The same stream read three ways: an event a read, all in one, cut every 7 bytes."""
    whole = b"".join(events)
    return {
        "event a read": events,
        "one read": [whole],
        "7 bytes a read": [whole[i : i + 7] for i in range(0, len(whole), 7)],
        "two events a read": [b"".join(events[i : i + 2]) for i in range(0, len(events), 2)],
        "three events a read, one off": [events[0]]
        + [b"".join(events[i : i + 3]) for i in range(1, len(events), 3)],
        "101 bytes a read": [whole[i : i + 101] for i in range(0, len(whole), 101)],
    }


def _dialect() -> OpenAIResponsesDialect:
    return OpenAIResponsesDialect(
        MemoryResponseStore(), clock=lambda: 1700000000.0, new_id=lambda p: p + "_fixed"
    )


async def _reads(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _run(events: AsyncIterator[bytes]) -> tuple[list[bytes], str | None]:
    out: list[bytes] = []
    try:
        async for data in events:
            out.append(data)
    except Exception as e:  # the error response the pipeline would render
        return out, type(e).__name__ + ": " + str(e)
    return out, None


def _both(parts: list[bytes]) -> tuple[Any, Any, OpenAIResponsesDialect, OpenAIResponsesDialect]:
    endpoint = ANTHROPIC_WIRE.endpoints[RESPONSES]
    general, direct = _dialect(), _dialect()
    call = general.parse(dict(BODY), {})
    answer = Answer(None, False, stream=_reads(parts), endpoint=endpoint)
    expected = asyncio.run(_run(general.events(call, answer, canonical_chunks(answer))))
    call = direct.parse(dict(BODY), {})
    answer = Answer(None, False, stream=_reads(parts), endpoint=endpoint)
    events = direct.direct_events(call, answer)
    assert events is not None
    got = asyncio.run(_run(events))
    return expected, got, general, direct


@pytest.mark.parametrize("cut", sorted(_cuts([b""])))
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_direct_lane_gives_the_bytes_of_the_general_way(name: str, cut: str) -> None:
    parts = _cuts(STREAMS[name])[cut]
    expected, got, general, direct = _both(parts)
    assert b"".join(got[0]) == b"".join(expected[0])
    assert got[1] == expected[1]  # the same error, if any
    # the last events stay last; the events of the read that ended the answer join them
    # (one write fewer), so the direct lane never writes more often than the general way
    assert (type(got[0][-1]) is LastEvents) == (type(expected[0][-1]) is LastEvents)
    assert [type(e) for e in got[0][:-1]] == [bytes] * (len(got[0]) - 1)
    assert len(got[0]) <= len(expected[0])
    # what the store keeps is the same too
    kept = asyncio.run(general.store.get("", "resp_fixed"))
    also = asyncio.run(direct.store.get("", "resp_fixed"))
    assert (kept is None) == (also is None)
    if kept is not None and also is not None:
        assert (kept.response, kept.messages) == (also.response, also.messages)


def test_a_read_of_one_text_delta_makes_one_delta_event() -> None:
    parts = STREAMS["plain"]
    (_, _), (got, error), _, _ = _both(parts)
    assert error is None
    events = b"".join(got).split(b"\n\n")
    deltas = [e for e in events if e.startswith(b"event: response.output_text.delta")]
    assert len(deltas) == len([t for t in TEXTS if t])  # an empty delta makes no event
    texts = [json.loads(e.split(b"data: ", 1)[1])["delta"] for e in deltas]
    assert texts == [t for t in TEXTS if t]
    last = got[-1]
    assert type(last) is LastEvents
    assert last.find(b"event: response.completed") >= 0
    done = [e for e in events if e.startswith(b"event: response.output_text.done")]
    assert json.loads(done[0].split(b"data: ", 1)[1])["text"] == "".join(TEXTS)


@pytest.mark.parametrize("name", ["plain", "max tokens", "tool use fixture", "ping between"])
def test_the_read_that_ends_the_answer_goes_with_the_last_events(name: str) -> None:
    (expected, _), (got, error), _, _ = _both([b"".join(STREAMS[name])])
    assert error is None
    assert len(got) == 1 and type(got[0]) is LastEvents  # the whole answer: one write
    assert got[0] == b"".join(expected)
    events = STREAMS[name]
    (expected, _), (got, error), _, _ = _both([b"".join(events[:3]), b"".join(events[3:])])
    assert error is None
    assert len(got) == 2 and type(got[1]) is LastEvents
    assert b"".join(got) == b"".join(expected)


def test_the_decoder_text_lane_reads_only_a_whole_text_delta() -> None:
    decoder = AnthropicStreamDecoder()
    first, block = _start()
    assert decoder.text(first) is None  # before anything is parsed: the parser decides
    decoder.feed(first + block)
    assert decoder.text(_text("tok ")) == "tok "
    assert decoder.text(_text("é\n", ascii_only=True)) == "é\n"
    assert decoder.text(_text("a") + _text("b")) is None  # two events: `feed` reads them
    assert decoder.text(_text("a")[:-1]) is None  # not ended yet
    assert decoder.text(_text("a").replace(b'"a"', b'"\xff"')) is None
    assert decoder.text(_compact("ping", {"type": "ping"})) is None
    decoder.feed(_text("a")[:10])  # a part held by the parser: nothing is read around it
    assert decoder.text(_text("b")) is None


def test_no_direct_lane_without_a_text_lane_decoder() -> None:
    dialect = _dialect()
    call = dialect.parse(dict(BODY), {})
    endpoint = OPENAI_WIRE.endpoints[RESPONSES]
    answer = Answer(None, False, stream=_reads([]), endpoint=endpoint)
    assert dialect.direct_events(call, answer) is None
    assert dialect.direct_events(call, Answer(None, False, completion={})) is None


def _merged(chunks: list[dict[str, Any]]) -> list[Any]:
    """Chunks with consecutive text-only ones merged (a decoder may join the text deltas of
    one read into one chunk: the same text)."""
    out: list[Any] = []
    for chunk in chunks:
        choices = chunk.get("choices") or []
        delta = choices[0]["delta"] if len(choices) == 1 else None
        only_text = (
            delta is not None
            and list(delta) == ["content"]
            and choices[0]["finish_reason"] is None
            and "usage" not in chunk
        )
        if only_text and out and isinstance(out[-1], list):
            out[-1][1] += delta["content"]  # type: ignore[index]
        elif only_text:
            out.append(["text", delta["content"]])  # type: ignore[index]
        else:
            out.append(chunk)
    return out


def _decoded(decoder: Any, parts: list[bytes]) -> tuple[list[Any], str | None]:
    chunks: list[dict[str, Any]] = []
    try:
        for part in parts:
            chunks += decoder.feed(part)
        batch = decoder.finish()
        while batch:
            chunks += batch
            batch = decoder.finish()
    except Exception as e:
        return _merged(chunks), type(e).__name__ + ": " + str(e)
    return _merged(chunks), None


RUNS: dict[str, list[bytes]] = {
    **STREAMS,
    "long run": [*_start(), *(_text(f"t{i} ") for i in range(40)), *_end()],
    "run, ping, run": [
        *_start(),
        *(_text(t) for t in TEXTS),
        _compact("ping", {"type": "ping"}),
        *(_text(t) for t in TEXTS),
        *_end(),
    ],
    "a bad one mid-run": [
        *_start(),
        *(_text(t) for t in TEXTS),
        _text("x").replace(b'"x"', b'"x","y"'),
        *(_text(t) for t in TEXTS),
        *_end(),
    ],
    "two strings in one": [
        *_start(),
        _text("a"),
        _text("b").replace(b'"b"', b'"b" "c"'),
        _text("d"),
        _text("e"),
        *_end(),
    ],
    "text after the end": [*_start(), *_end(), *(_text(t) for t in TEXTS)],
}


@pytest.mark.parametrize("size", [0, 1, 5, 64, 333])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_decoder_reads_text_runs_as_the_generic_decoder_does(name: str, size: int) -> None:
    from mini_llm.providers.anthropic_answer import AnthropicStreamTranslator
    from mini_llm.providers.base import SSEDecoder

    whole = b"".join(RUNS[name])
    parts = [whole] if size == 0 else [whole[i : i + size] for i in range(0, len(whole), size)]
    got = _decoded(AnthropicStreamDecoder(), parts)
    expected = _decoded(SSEDecoder(AnthropicStreamTranslator()), parts)
    assert got == expected


def _read_as_the_writer(chunks: list[dict[str, Any]]) -> tuple[str, list[Any], Any]:
    """What the Responses writer reads of chunks: the text, the finish reasons, the usage."""
    text, finishes, usage = "", [], None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            text += (choice.get("delta") or {}).get("content") or ""
            if choice.get("finish_reason"):
                finishes.append(choice["finish_reason"])
    return text, finishes, usage


@pytest.mark.parametrize("size", [0, 7, 64])
@pytest.mark.parametrize("name", ["plain", "ascii-escaped", "index 12", "text after the end"])
def test_a_lean_decoder_gives_the_writer_what_the_full_one_does(name: str, size: int) -> None:
    whole = b"".join(RUNS[name])
    parts = [whole] if size == 0 else [whole[i : i + size] for i in range(0, len(whole), size)]
    lean, full = AnthropicStreamDecoder(), AnthropicStreamDecoder()
    lean.lean()
    lean_chunks: list[dict[str, Any]] = []
    full_chunks: list[dict[str, Any]] = []
    for part in parts:
        lean_chunks += lean.feed(part)
        full_chunks += full.feed(part)
    lean_chunks += lean.finish()
    full_chunks += full.finish()
    assert len(lean_chunks) == len(full_chunks)  # (the writer's first events: same reads)
    got = _read_as_the_writer(lean_chunks)
    assert got == _read_as_the_writer(full_chunks)
    assert got[1] == ["stop"] and got[2]["total_tokens"] == 16
    assert bool(got[0]) is (name != "text after the end")
    assert all("id" not in c and "model" not in c for c in lean_chunks)


def test_a_run_of_text_deltas_in_one_read_is_one_chunk() -> None:
    decoder = AnthropicStreamDecoder()
    decoder.feed(b"".join(_start()))
    chunks = decoder.feed(b"".join(_text(f"t{i} ") for i in range(30)))
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"content": "".join(f"t{i} " for i in range(30))}
    ]


@pytest.mark.parametrize("observed", [False, True])
def test_through_the_gateway_with_and_without_policies(
    make_gateway: Any,
    anthropic_upstream_url: str,
    anthropic_upstream: Any,
    monkeypatch: pytest.MonkeyPatch,
    observed: bool,
) -> None:
    """The official client reads the same stream whichever way the gateway makes it: the
    direct lane when no policy reads the stream, canonical chunks when one does (usage)."""
    import openai

    from .upstreams import anthropic_upstream as aup

    lanes: list[bool] = []
    direct_events = OpenAIResponsesDialect.direct_events

    def spy(self: OpenAIResponsesDialect, call: Any, answer: Answer) -> Any:
        events = direct_events(self, call, answer)
        lanes.append(events is not None)
        return events

    monkeypatch.setattr(OpenAIResponsesDialect, "direct_events", spy)
    flag = "true" if observed else "false"
    gateway = make_gateway(
        {
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-direct-4444",
            "MINI_LLM_USAGE": flag,
            "MINI_LLM_METRICS": flag,
            "MINI_LLM_LOG_LEVEL": "info" if observed else "warning",  # (the access log)
            "MINI_LLM_RETRY_ATTEMPTS": "1",
        }
    )
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    model = "anthropic/claude-sonnet-4-5"
    with client.responses.stream(model=model, input="say something long") as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas and "".join(deltas) == final.output_text
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.status == "completed" and final.usage is not None
    assert lanes == ([] if observed else [True])  # asked only when no policy reads it

    anthropic_upstream.push(aup.error_mid_stream("partial answer"))
    with client.responses.stream(model=model, input="x") as stream:
        kinds = [e.type for e in stream]
    assert kinds[-1] in ("error", "response.failed")
