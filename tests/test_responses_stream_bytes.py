"""The Responses stream's bytes written without the encoder's general way: the response shell
(`shell_bytes`), a message's done events, and the last event made of bytes already written,
must be the bytes the encoder gives for the same objects. And the Anthropic decoder's bulk
read of a run of text deltas must read what the generic decoder reads, however it is cut."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from mini_llm.dialects.openai_responses.response import ResponseFrame, shell
from mini_llm.dialects.openai_responses.stream import ResponsesEventWriter, shell_bytes
from mini_llm.providers.anthropic_answer import AnthropicStreamTranslator
from mini_llm.providers.anthropic_stream import AnthropicStreamDecoder
from mini_llm.providers.base import SSEDecoder

REQUESTS: list[dict[str, Any]] = [
    {},
    {"model": "m", "input": "hi", "stream": True},
    {"instructions": "Be terse.", "max_output_tokens": 64, "store": False},
    {
        "instructions": 'ünï "quoted" \\ </script>\u2028',
        "max_output_tokens": 5,
        "parallel_tool_calls": False,
        "previous_response_id": "resp_1",
        "temperature": 0.25,
        "tool_choice": {"type": "function", "name": "f"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "top_p": 0.5,
        "truncation": "auto",
        "user": "u-1",
        "reasoning": {"effort": "high", "summary": "auto"},
        "text": {"format": {"type": "json_object"}},
        "metadata": {"k": "v"},
        "store": True,
    },
    {"temperature": None, "tools": None, "reasoning": "bad", "text": "bad", "metadata": {}},
    {"reasoning": {}, "user": "", "top_p": 1, "temperature": 2},
]


@pytest.mark.parametrize("status", ["in_progress", "completed"])
@pytest.mark.parametrize("request_body", REQUESTS)
def test_shell_bytes_are_the_encoded_shell(request_body: dict[str, Any], status: str) -> None:
    frame = ResponseFrame("resp_ab\u00e9", 1700000000, "anthropic/claude-x", request_body)
    assert shell_bytes(frame, status) == msgspec.json.encode(shell(frame, status))


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}


USAGE = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
STREAMS: dict[str, list[dict[str, Any]]] = {
    "text": [_chunk({"role": "assistant", "content": ""}), _chunk({"content": 'hé "}}\n'})],
    "refusal then text": [_chunk({"refusal": "no"}), _chunk({"content": "but"})],
    "text, tools": [
        _chunk({"content": "calling"}),
        _chunk({"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f"}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}),
        _chunk({}, "tool_calls"),
    ],
    "reasoning, text, max tokens": [
        _chunk({"reasoning_content": "think"}),
        _chunk({"content": "out"}),
        _chunk({}, "length"),
    ],
    "nothing": [],
}


@pytest.mark.parametrize("usage", [None, USAGE])
@pytest.mark.parametrize("name", sorted(STREAMS))
def test_done_events_and_the_last_are_the_encoded_objects(
    name: str, usage: dict[str, Any] | None
) -> None:
    frame = ResponseFrame("resp_1", 1700000000, "m", {"instructions": "x"}, encrypted=True)
    writer = ResponsesEventWriter(frame)
    chunks = list(STREAMS[name])
    if usage is not None:
        chunks.append({"id": "c", "choices": [], "usage": usage})
    events = [writer.feed_batch(chunks), *writer.finish()]
    payloads = [
        line[6:] for event in events for line in event.split(b"\n") if line.startswith(b"data: ")
    ]
    response = writer.response()
    last = json.loads(payloads[-1])
    assert last["type"] in ("response.completed", "response.incomplete")
    expected_last = {"type": last["type"], "sequence_number": last["sequence_number"]}
    assert payloads[-1] == msgspec.json.encode({**expected_last, "response": response})
    items = [json.loads(p) for p in payloads if b'"response.output_item.done"' in p]
    assert [i["item"] for i in items] == response["output"]
    for payload in payloads:  # every event as the encoder lays its object out
        assert payload == msgspec.json.encode(json.loads(payload))
    numbers = [json.loads(p)["sequence_number"] for p in payloads]
    assert numbers == list(range(len(numbers)))


def _event(kind: str, data: dict[str, Any]) -> bytes:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), text.encode())


def _text(text: str) -> bytes:
    delta = {"type": "text_delta", "text": text}
    return _event(
        "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
    )


START = [
    _event(
        "message_start",
        {
            "type": "message_start",
            "message": {"id": "msg_1", "model": "c", "usage": {"input_tokens": 2}},
        },
    ),
    _event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
]
END = [
    _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
    _event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}}),
    _event("message_stop", {"type": "message_stop"}),
]
TRICKY = [
    "a}}",
    '"}}\n\n',
    "}}\\n\\n",
    "event: content_block_delta\ndata: x",
    "ünï🙂",
    "\\",
    '"',
    "",
    "end",
]


def _decoded(decoder: Any, parts: list[bytes]) -> tuple[list[Any], str | None]:
    text: list[str] = []
    others: list[Any] = []
    try:
        for part in parts:
            for chunk in decoder.feed(part):
                choices = chunk.get("choices") or []
                delta = choices[0]["delta"] if len(choices) == 1 else {}
                if list(delta) == ["content"] and not choices[0]["finish_reason"]:
                    text.append(delta["content"])
                else:
                    others.append(chunk)
        decoder.finish()
    except Exception as e:
        return [text, others], type(e).__name__
    return ["".join(text), others], None


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
def test_a_run_cut_at_any_event_boundary_reads_as_the_generic_decoder(line_end: bytes) -> None:
    events = [e.replace(b"\n", line_end) for e in [*START, *map(_text, TRICKY), *END]]
    whole = b"".join(events)
    bounds = [sum(len(e) for e in events[:n]) for n in range(1, len(events))]
    cuts = [*bounds, *(b - 3 for b in bounds), *(b + 1 for b in bounds)]
    for cut in cuts:
        parts = [whole[:cut], whole[cut:]]
        got = _decoded(AnthropicStreamDecoder(), parts)
        assert got == _decoded(SSEDecoder(AnthropicStreamTranslator()), parts), cut
        assert got[0][0] == "".join(TRICKY)


def test_the_run_of_a_read_is_read_in_bulk() -> None:
    """(So that the test above reads runs in bulk, not only block by block.)"""
    whole = b"".join([*START, *map(_text, TRICKY), *END])
    blocks = AnthropicStreamDecoder()._blocks(whole)
    assert [b for b in blocks if isinstance(b, list)] == [TRICKY]
    assert len(blocks) == len(START) + 1 + len(END)


@pytest.mark.parametrize(
    "texts",
    [
        [b"\xc3", b"\xa9", b"ok"],  # a character cut across two deltas: each invalid UTF-8
        [b"a\\", b'"b', b"c"],  # an escape that would run into the next delta
        [b'a","b', b"c", b"d"],  # two strings in one delta
        [b"a\tb", b"c", b"d"],  # a raw control character
        [b"caf\xc3\xa9", b"\\u00e9", b"\\n\\\\"],  # UTF-8 and escapes, all valid
        [b"plain", b"ascii", b"text"],
    ],
)
def test_a_run_of_raw_strings_reads_as_the_generic_decoder(texts: list[bytes]) -> None:
    raw = [_text("X").replace(b'"X"', b'"' + t + b'"') for t in texts]
    whole = b"".join([*START, *raw, *END])
    for parts in ([whole], [whole[:200], whole[200:]]):
        got = _decoded(AnthropicStreamDecoder(), parts)
        assert got == _decoded(SSEDecoder(AnthropicStreamTranslator()), parts)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (None, None),
        (
            {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32},
            (12, 0, 0, 20, 0),
        ),
        (  # cached tokens from the details, else from Anthropic's cache reads
            {
                "prompt_tokens": 30,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 7},
                "cache_read_input_tokens": 9,
                "cache_creation_input_tokens": 4,
                "completion_tokens_details": {"reasoning_tokens": 3},
            },
            (30, 7, 4, 5, 3),
        ),
        (
            {
                "prompt_tokens": 30,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 0},
                "cache_read_input_tokens": 9,
            },
            (30, 9, 0, 5, 0),
        ),
        (  # counts not as they should be: floats cut, negatives and others 0
            {
                "prompt_tokens": 3.7,
                "completion_tokens": -2,
                "prompt_tokens_details": {"cached_tokens": "5"},
                "cache_read_input_tokens": 2.0,
                "cache_creation_input_tokens": True,
                "completion_tokens_details": {"reasoning_tokens": -1},
            },
            (3, 2, 0, 0, 0),
        ),
    ],
)
def test_responses_usage_reads_each_count(usage: Any, expected: Any) -> None:
    from mini_llm.dialects.openai_responses.response import responses_usage

    got = responses_usage(usage)
    if expected is None:
        assert got is None
        return
    prompt, cached, written, completion, reasoning = expected
    assert got == {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def test_sequence_numbers_past_the_looked_up_ones_are_written_right() -> None:
    """Counts are looked up below 4096 and formatted above: a long answer's events number
    0, 1, 2, ... all the way (and every index with them)."""
    request = {"model": "m", "input": "hi", "stream": True}
    writer = ResponsesEventWriter(ResponseFrame("resp_long", 1700000000, "m", request))
    out = [writer.plain("a", None, None)]
    for _ in range(5000):
        more = writer.more_text("b")
        assert more is not None
        out.append(more)
    out.append(writer.plain("c", "stop", {"prompt_tokens": 1, "completion_tokens": 5002}))
    out += writer.finish()
    events = [e for e in b"".join(out).split(b"\n\n") if e]
    numbers = [json.loads(e.split(b"data: ", 1)[1])["sequence_number"] for e in events]
    assert numbers == list(range(len(events)))
    assert len(events) > 5000
    last = json.loads(events[-1].split(b"data: ", 1)[1])["response"]
    assert last["output"][0]["content"][0]["text"] == "a" + "b" * 5000 + "c"
    assert last["usage"]["output_tokens"] == 5002
