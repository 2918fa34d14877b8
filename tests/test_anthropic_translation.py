"""The Anthropic wire format, pure: golden fixtures in, canonical dicts out (no server)."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from mini_llm.errors import (
    GatewayError,
    InvalidRequestError,
    ServiceUnavailableError,
    UpstreamError,
)
from mini_llm.formats import CHAT
from mini_llm.providers.anthropic import (
    ANTHROPIC_WIRE,
    default_max_tokens,
    from_anthropic_id,
    to_anthropic_id,
    to_anthropic_request,
)
from mini_llm.providers.anthropic_answer import AnthropicStreamTranslator
from mini_llm.providers.anthropic_stream import AnthropicStreamDecoder
from mini_llm.sse import SSEEvent, SSEParser

from .fixture_files import load_bytes, load_events, load_json


@pytest.mark.parametrize("name", ["request_full", "request_thinking", "request_json_schema"])
def test_request_matches_golden(name: str) -> None:
    fixture = load_json("anthropic", f"{name}.json")
    canonical = fixture["canonical"]
    assert to_anthropic_request(canonical, bool(canonical.get("stream"))) == fixture["anthropic"]


@pytest.mark.parametrize(
    "ident", ["call_abc", "toolu_01A09q90qw90lq917835lq9", "call.2:rome", "", "mllm_x", "é/ü"]
)
def test_tool_call_ids_round_trip_and_are_accepted(ident: str) -> None:
    mapped = to_anthropic_id(ident)
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", mapped)
    assert from_anthropic_id(mapped) == ident


def test_default_max_tokens_per_model() -> None:
    assert default_max_tokens("claude-3-haiku-20240307") == 4096
    assert default_max_tokens("claude-3-5-sonnet-latest") == 8192
    assert default_max_tokens("claude-sonnet-4-5") == 8192
    explicit = to_anthropic_request(
        {
            "model": "claude-3-haiku",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": 9,
        },
        False,
    )
    assert explicit["max_tokens"] == 9


def test_tool_choice_variants() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    base: dict[str, Any] = {"model": "claude-x", "messages": [{"role": "user", "content": "x"}]}

    def choice(value: Any) -> Any:
        return to_anthropic_request({**base, "tools": tools, "tool_choice": value}, False).get(
            "tool_choice"
        )

    assert choice("auto") == {"type": "auto"}
    assert choice("none") == {"type": "none"}
    assert choice({"type": "function", "function": {"name": "f"}}) == {"type": "tool", "name": "f"}
    with pytest.raises(InvalidRequestError) as info:
        choice("sometimes")
    assert info.value.param == "tool_choice"
    only_parallel = to_anthropic_request(
        {**base, "tools": tools, "parallel_tool_calls": False}, False
    )
    assert only_parallel["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_bad_arguments_name_the_field() -> None:
    body = {
        "model": "claude-x",
        "messages": [
            {
                "role": "assistant",
                "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{nope"}}],
            }
        ],
    }
    with pytest.raises(InvalidRequestError) as info:
        to_anthropic_request(body, False)
    assert info.value.param == "messages.0.tool_calls.0.function.arguments"


def test_message_with_tools_thinking_and_cache_usage() -> None:
    answer = ANTHROPIC_WIRE.endpoints[CHAT].parse(load_bytes("anthropic", "message_tool_use.json"))
    (choice,) = answer["choices"]
    message = choice["message"]
    assert choice["finish_reason"] == "tool_calls"
    assert message["content"] == "Checking both cities."
    assert message["reasoning_content"] == "The user wants weather."
    assert message["thinking_blocks"][0]["signature"] == "EqQBCgIYAhIM"
    calls = message["tool_calls"]
    assert [c["id"] for c in calls] == ["toolu_01A09q90qw90lq917835lq9", "call.2:rome"]
    assert msgspec.json.decode(calls[1]["function"]["arguments"]) == {"city": "Rome"}
    usage = answer["usage"]
    assert usage["prompt_tokens"] == 420
    assert usage["completion_tokens"] == 45
    assert usage["total_tokens"] == 465
    assert usage["prompt_tokens_details"] == {"cached_tokens": 300}
    assert usage["cache_creation_input_tokens"] == 100


def test_message_text_and_max_tokens_finish() -> None:
    answer = ANTHROPIC_WIRE.endpoints[CHAT].parse(load_bytes("anthropic", "message_text.json"))
    assert answer["choices"][0]["message"]["content"] == "Hello! How can I help?"
    assert answer["choices"][0]["finish_reason"] == "length"
    assert "tool_calls" not in answer["choices"][0]["message"]


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("refusal", "content_filter")],
)
def test_finish_reasons(stop: str, finish: str) -> None:
    raw = msgspec.json.encode(
        {"id": "m", "content": [], "stop_reason": stop, "usage": {"input_tokens": 1}}
    )
    assert ANTHROPIC_WIRE.endpoints[CHAT].parse(raw)["choices"][0]["finish_reason"] == finish


def test_json_answer_tool_becomes_text() -> None:
    raw = msgspec.json.encode(
        {
            "id": "m",
            "content": [
                {"type": "tool_use", "id": "t", "name": "mini_llm_json_answer", "input": {"a": 1}}
            ],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
    )
    choice = ANTHROPIC_WIRE.endpoints[CHAT].parse(raw)["choices"][0]
    assert choice["message"]["content"] == '{"a":1}'
    assert choice["finish_reason"] == "stop"


def _translate(events: list[SSEEvent]) -> list[dict[str, Any]]:
    translator = AnthropicStreamTranslator()
    chunks: list[dict[str, Any]] = []
    for event in events:
        chunks += translator.feed(event)
    return chunks + translator.finish()


def test_stream_with_thinking_and_two_tool_calls() -> None:
    chunks = _translate(load_events("anthropic", "stream_tool_use.sse"))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "I should call the tool."
    (blocks,) = [d["thinking_blocks"] for d in deltas if "thinking_blocks" in d]
    assert blocks == [
        {
            "index": 0,
            "type": "thinking",
            "thinking": "I should call the tool.",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA",
        }
    ]
    assert "".join(d.get("content") or "" for d in deltas) == "Okay, checking"
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    firsts = [c for c in calls if "id" in c]
    assert [(c["index"], c["id"], c["function"]["name"]) for c in firsts] == [
        (0, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather"),
        (1, "toolu_02", "get_time"),
    ]
    args0 = "".join(c["function"]["arguments"] for c in calls if c["index"] == 0)
    assert msgspec.json.decode(args0) == {"city": "Paris"}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls"
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["prompt_tokens"] == 480
    assert usage["completion_tokens"] == 89
    assert usage["prompt_tokens_details"]["cached_tokens"] == 8
    assert all(c["id"] == "msg_014p7gG3wDgGV9EUtLvnow3U" for c in chunks)


def test_stream_error_event_raises_clean_error() -> None:
    translator = AnthropicStreamTranslator()
    events = load_events("anthropic", "stream_error.sse")
    with pytest.raises(ServiceUnavailableError, match="Overloaded"):
        for event in events:
            translator.feed(event)


def test_stream_cut_short_raises() -> None:
    translator = AnthropicStreamTranslator()
    for event in load_events("anthropic", "stream_error.sse")[:3]:
        translator.feed(event)
    with pytest.raises(UpstreamError, match="ended before"):
        translator.finish()


def test_error_body() -> None:
    info = ANTHROPIC_WIRE.error_info(529, load_bytes("anthropic", "error_overloaded.json"))
    assert (info.message, info.type) == ("Overloaded", "overloaded_error")
    assert ANTHROPIC_WIRE.error_info(500, b"<html>").message == "upstream answered HTTP 500"


def test_streamed_tool_without_parameters_gets_empty_object_arguments() -> None:
    from mini_llm.providers.anthropic_answer import AnthropicStreamTranslator
    from mini_llm.sse import SSEEvent

    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"id": "msg_1", "model": "c", "usage": {"input_tokens": 3}},
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": ""},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use"},
                "usage": {"output_tokens": 5},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    translator = AnthropicStreamTranslator()
    chunks = [c for name, data in events for c in translator.feed(SSEEvent(json.dumps(data), name))]
    calls = [
        c
        for ch in chunks
        for choice in ch["choices"]
        for c in choice["delta"].get("tool_calls", [])
    ]
    assert "".join(c["function"]["arguments"] for c in calls) == "{}"


def test_two_thinking_blocks_stream_into_the_openai_accumulator() -> None:
    """The openai package's stream accumulator needs an `index` on list entries."""
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    from mini_llm.providers.anthropic_answer import AnthropicStreamTranslator
    from mini_llm.sse import SSEEvent

    def block(i: int, kind: str, extra: dict[str, str]) -> list[tuple[str, dict[str, object]]]:
        start = {
            "type": "content_block_start",
            "index": i,
            "content_block": {"type": kind, **extra},
        }
        return [
            ("content_block_start", start),
            ("content_block_stop", {"type": "content_block_stop", "index": i}),
        ]

    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"id": "msg_1", "model": "c", "usage": {"input_tokens": 3}},
            },
        ),
        *block(0, "redacted_thinking", {"data": "abc"}),
        *block(1, "thinking", {"thinking": "hm", "signature": "sig"}),
        *block(2, "text", {"text": "hi"}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 5},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    translator = AnthropicStreamTranslator()
    state = ChatCompletionStreamState()
    for name, data in events:
        for chunk in translator.feed(SSEEvent(json.dumps(data), name)):
            chunk["created"] = 1
            state.handle_chunk(ChatCompletionChunk.model_validate(chunk))
    message = state.get_final_completion().choices[0].message
    assert message.content == "hi"


def test_forced_tool_turns_thinking_off_and_sampling_fits_anthropic() -> None:
    base: dict[str, Any] = {"model": "claude-x", "messages": [{"role": "user", "content": "x"}]}
    schema = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    # JSON mode forces a tool: Anthropic refuses thinking with it
    json_mode = to_anthropic_request(
        {**base, "reasoning_effort": "high", "response_format": schema}, False
    )
    assert "thinking" not in json_mode
    assert json_mode["tool_choice"]["type"] == "tool"
    forced = to_anthropic_request(
        {**base, "reasoning_effort": "low", "tools": tools, "tool_choice": "required"}, False
    )
    assert "thinking" not in forced
    # thinking with a free tool choice stays, and then no sampling parameters go
    thinking = to_anthropic_request(
        {**base, "reasoning_effort": "low", "tools": tools, "temperature": 0.5, "top_k": 5}, False
    )
    assert thinking["thinking"]["type"] == "enabled"
    assert not {"temperature", "top_p", "top_k"} & set(thinking)
    # OpenAI's temperature goes up to 2, Anthropic's to 1; top_p does not go with it
    sampled = to_anthropic_request({**base, "temperature": 1.5, "top_p": 0.9}, False)
    assert sampled["temperature"] == 1.0
    assert "top_p" not in sampled
    assert to_anthropic_request({**base, "top_p": 0.9}, False)["top_p"] == 0.9


_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"m"}}\n\n'
)
_TEXT_DELTAS = [
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"tok "}}',
    b'{"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":"a\\"b\\\\c"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"\\u00e9\\n\\ud83d\\ude00"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"caf\xc3\xa9"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}',
    # other layouts: the SSE parser and the whole decode, to the same chunk
    b'{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "x"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x","more":1}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"},"z":{}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}},"b"}}',
    b'{"type":"content_block_delta","index":-1,"delta":{"type":"text_delta","text":"x"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":7}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"\xff"}}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"\ndata: }}',
    b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}}\nid: 3',
    b'{"type":"content_block_delta","index":',
    b'{"type":"content_block_delta","index":7',
]


def _by_decoder(data: bytes, size: int) -> list[dict[str, Any]]:
    decoder = AnthropicStreamDecoder()
    chunks: list[dict[str, Any]] = []
    for i in range(0, len(data), size):
        chunks += decoder.feed(data[i : i + size])
    return chunks


@pytest.mark.parametrize("data", _TEXT_DELTAS)
def test_text_delta_read_from_its_bytes_is_the_same_chunk(data: bytes) -> None:
    stream = _START + b"event: content_block_delta\ndata: " + data + b"\n\n"
    translator = AnthropicStreamTranslator()
    try:
        expected = [c for event in SSEParser().feed(stream) for c in translator.feed(event)]
    except UpstreamError:
        decoder = AnthropicStreamDecoder()
        assert len(decoder.feed(stream)) == 1  # message_start's chunk; the error comes next
        with pytest.raises(UpstreamError, match="malformed"):
            decoder.finish()
        return
    assert _by_decoder(stream, len(stream)) == expected
    assert _by_decoder(stream, 5) == expected
    text = json.loads(SSEParser().feed(stream)[1].data)["delta"]["text"]
    assert expected[1]["choices"][0]["delta"]["content"] == text


_MESSAGE_EVENTS = [
    # message_start: Anthropic's layout (read into the fields the translator takes), others
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_9","type":'
    b'"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,'
    b'"usage":{"input_tokens":12,"output_tokens":1,"cache_read_input_tokens":3}}}',
    b'event: message_start\ndata: {"type":"message_start","message":null}',
    b'event: message_start\ndata: {"type":"message_start"}',
    b'event: message_start\ndata: {"type":"message_start","message":{"id":null,"model":7}}',
    b'event: message_start\ndata: {"type":"message_start","message":{"usage":null}}',
    b'event: message_start\ndata: {"message":{"id":"msg_n","model":"m"}}',
    b'event: message_start\ndata: {"type":"ping","message":{"id":"msg_p"}}',
    b'event: message_start\ndata: {"type":"message_start","message":"text"}',
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"a"}}\nid: 4',
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"caf\xc3\xa9"}}',
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"\xff"}}',
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"a"}',
    # message_delta
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens",'
    b'"stop_sequence":null},"usage":{"output_tokens":20}}',
    b'event: message_delta\ndata: {"type":"message_delta","delta":null,"usage":null}',
    b'event: message_delta\ndata: {"type":"message_delta"}',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":3},'
    b'"usage":{"output_tokens":null,"input_tokens":5}}',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use"}}',
    b'event: message_delta\ndata: {"delta":{"stop_reason":"end_turn"}}',
    b'event: message_delta\ndata: {"type":"message_delta","delta":[1]}',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{}}\ndata: more',
    b'event: message_delta\ndata: {"type":"message_delta","usage":[["output_tokens",4]]}',
]


@pytest.mark.parametrize("event", _MESSAGE_EVENTS)
@pytest.mark.parametrize("lean", [False, True])
def test_message_events_read_from_their_bytes_are_what_the_translator_makes(
    event: bytes, lean: bool
) -> None:
    """`message_start` and `message_delta` in Anthropic's layout are read into only the fields
    the translator takes; any other layout or value, read whole: the same chunks, usage and
    errors either way."""
    stream = event + b'\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n'
    translator = AnthropicStreamTranslator()
    translator._bare = lean
    expected: list[dict[str, Any]] | Exception
    try:
        expected = [c for e in SSEParser().feed(stream) for c in translator.feed(e)]
    except Exception as e:  # what the translator raises for it, the decoder raises too
        expected = e
    decoder = AnthropicStreamDecoder()
    if lean:
        decoder.lean()
    try:
        chunks: list[dict[str, Any]] | Exception = decoder.feed(stream)
    except Exception as e:
        chunks = e
    if isinstance(expected, Exception):
        assert type(chunks) is type(expected)
    else:
        assert chunks == expected
        assert decoder._translator._usage == translator._usage


@pytest.mark.parametrize("name", ["stream_tool_use.sse", "stream_error.sse"])
@pytest.mark.parametrize("size", [1, 7, 37, 100_000])
def test_stream_decoder_gives_what_the_translator_gives(name: str, size: int) -> None:
    data = load_bytes("anthropic", name)
    events = SSEParser().feed(data)
    translator = AnthropicStreamTranslator()
    expected: list[dict[str, Any]] = []
    error: Exception | None = None
    try:
        for event in events:
            expected += translator.feed(event)
        expected += translator.finish()
    except GatewayError as e:
        error = e
    decoder = AnthropicStreamDecoder()
    chunks: list[dict[str, Any]] = []
    raised: Exception | None = None
    try:
        for i in range(0, len(data), size):
            chunks += decoder.feed(data[i : i + size])
        chunks += decoder.finish()
    except GatewayError as e:
        raised = e
    assert chunks == expected
    assert repr(raised) == repr(error)


def _text_delta(text: str) -> bytes:
    data = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": text},
    }
    return (
        b"event: content_block_delta\ndata: "
        + json.dumps(data, separators=(",", ":")).encode()
        + b"\n\n"
    )


def test_text_deltas_of_one_read_are_one_chunk_with_all_their_text() -> None:
    """Deltas that came together go on as one chunk (fewer events for the client, the same
    text); apart, each is its own."""
    deltas = [_text_delta(t) for t in ("Hel", 'lo, "wor', 'ld"\n', " ✓")]
    decoder = AnthropicStreamDecoder()
    assert len(decoder.feed(_START)) == 1
    together = decoder.feed(b"".join(deltas))
    assert [c["choices"][0]["delta"]["content"] for c in together] == ['Hello, "world"\n ✓']
    decoder = AnthropicStreamDecoder()
    decoder.feed(_START)
    apart = [c for d in deltas for c in decoder.feed(d)]
    assert "".join(c["choices"][0]["delta"]["content"] for c in apart) == 'Hello, "world"\n ✓'
    assert len(apart) == 4
    ping = b'event: ping\ndata: {"type":"ping"}\n\n'
    stop = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    decoder = AnthropicStreamDecoder()
    decoder.feed(_START)
    mixed = decoder.feed(deltas[0] + deltas[1] + ping + deltas[2] + stop + deltas[3])
    texts = [c["choices"][0]["delta"].get("content") for c in mixed]
    # a ping or a block's end makes no chunk: the run goes on across them
    assert texts == ['Hello, "world"\n ✓']
