"""The /v1/messages edge, pure: Anthropic requests to canonical, canonical answers and chunks
back to an Anthropic message and Anthropic events (no server)."""

from __future__ import annotations

from typing import Any

import msgspec

from mini_llm.dialects.anthropic.request import to_canonical_request
from mini_llm.dialects.anthropic.response import AnthropicEventWriter, to_anthropic_message
from mini_llm.schema.anthropic import validate_messages_request
from mini_llm.sse import SSEParser


def test_request_to_canonical() -> None:
    request = validate_messages_request(
        {
            "model": "openai/gpt-4o",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be kind."}],
            "stop_sequences": ["STOP"],
            "metadata": {"user_id": "u1"},
            "stream": True,
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "s1"},
                        {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"c": "P"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                        {"type": "text", "text": "and now?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
                        },
                    ],
                },
            ],
            "tools": [{"name": "w", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        }
    )
    canonical = to_canonical_request(request)
    assert canonical["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"c":"P"}'},
                }
            ],
            "thinking_blocks": [{"type": "thinking", "thinking": "hm", "signature": "s1"}],
            "reasoning_content": "hm",
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "and now?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
            ],
        },
    ]
    assert canonical["tool_choice"] == "required"
    assert canonical["parallel_tool_calls"] is False
    assert canonical["stop"] == ["STOP"]
    assert canonical["user"] == "u1"
    assert canonical["stream_options"] == {"include_usage": True}


def test_server_tools_are_dropped_by_name_not_refused() -> None:
    request = validate_messages_request(
        {
            "model": "openai/gpt-4o",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        }
    )
    dropped: list[str] = []
    canonical = to_canonical_request(request, dropped)
    assert "tools" not in canonical
    assert dropped == ["tools.web_search_20250305"]


def test_message_from_canonical() -> None:
    answer = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "message": {
                    "content": "ok",
                    "reasoning_content": "why",
                    "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": '{"a":1}'}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 6},
        },
    }
    message = to_anthropic_message(answer, "my-model")
    assert message["id"] == "msg_chatcmpl-1"
    assert message["model"] == "my-model"
    assert message["content"] == [
        {"type": "thinking", "thinking": "why", "signature": ""},
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {
        "input_tokens": 4,
        "output_tokens": 4,
        "cache_read_input_tokens": 6,
        "cache_creation_input_tokens": 0,
    }


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def test_event_writer_sequence() -> None:
    writer = AnthropicEventWriter("m")
    out: list[bytes] = []
    for chunk in [
        _chunk({"role": "assistant", "content": ""}),
        _chunk({"reasoning_content": "think"}),
        _chunk({"content": "Hi"}),
        _chunk(
            {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}}]}
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"x":'}}]}),
        _chunk(
            {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{}"}}]}
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        _chunk({}, "tool_calls"),
        {"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7}},
    ]:
        out += writer.feed(chunk)
    out += writer.finish()
    parser = SSEParser()
    events = [(e.event, msgspec.json.decode(e.data)) for e in parser.feed(b"".join(out))]
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start", "content_block_delta", "content_block_stop",  # thinking 0
        "content_block_start", "content_block_delta", "content_block_stop",  # text 1
        "content_block_start", "content_block_delta", "content_block_stop",  # tool a, 2
        "content_block_start", "content_block_delta",  # tool b, 3
        "content_block_delta",  # tool a's last arguments, still to its own index
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # fmt: skip
    late = events[12][1]
    assert late["index"] == 2 and late["delta"] == {
        "type": "input_json_delta",
        "partial_json": "1}",
    }
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["output_tokens"] == 7 and delta["usage"]["input_tokens"] == 5


def test_usage_that_is_not_numbers_counts_zero() -> None:
    from mini_llm.dialects.anthropic.response import anthropic_usage

    usage = anthropic_usage(
        {"prompt_tokens": "abc", "completion_tokens": None, "prompt_tokens_details": {"x": 1}}
    )
    assert usage == {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    assert anthropic_usage({"prompt_tokens": 10.0, "completion_tokens": 3})["input_tokens"] == 10


def _events(writer: AnthropicEventWriter, chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parser = SSEParser()
    raw = b"".join(b for chunk in chunks for b in writer.feed(chunk)) + b"".join(writer.finish())
    return [msgspec.json.decode(event.data) for event in parser.feed(raw)]


def test_tool_calls_without_index_are_told_apart_by_id() -> None:
    chunks = [
        _chunk(
            {
                "role": "assistant",
                "tool_calls": [{"id": "a", "function": {"name": "get", "arguments": '{"x":'}}],
            }
        ),
        _chunk({"tool_calls": [{"function": {"arguments": " 1}"}}]}),
        _chunk(
            {"tool_calls": [{"index": 0, "id": "g", "function": {"name": "put", "arguments": ""}}]}
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        _chunk({}, "stop"),  # a server that says stop after tool calls
    ]
    events = _events(AnthropicEventWriter("m"), chunks)
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert [(b["id"], b["name"]) for b in starts] == [("a", "get"), ("g", "put")]
    args: dict[int, str] = {}
    for e in events:
        if e["type"] == "content_block_delta":
            args[e["index"]] = args.get(e["index"], "") + e["delta"]["partial_json"]
    assert args == {0: '{"x": 1}', 1: "{}"}
    (delta,) = [e for e in events if e["type"] == "message_delta"]
    assert delta["delta"]["stop_reason"] == "tool_use"


def test_streamed_refusal_is_text() -> None:
    events = _events(
        AnthropicEventWriter("m"), [_chunk({"refusal": "I can't help with that."}, "stop")]
    )
    texts = [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"]
    assert texts == ["I can't help with that."]


def test_invented_tool_ids_do_not_repeat_across_answers() -> None:
    def answer(ident: str) -> dict[str, Any]:
        call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {"id": ident, "choices": [{"message": message, "finish_reason": "stop"}]}

    first = to_anthropic_message(answer("chatcmpl-1"), "m")
    second = to_anthropic_message(answer("chatcmpl-2"), "m")
    ids = {first["content"][0]["id"], second["content"][0]["id"]}
    assert len(ids) == 2
    assert all(i.startswith("toolu_") for i in ids)
    assert first["stop_reason"] == "tool_use"
