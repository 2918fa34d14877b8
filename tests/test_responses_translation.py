"""The Responses dialect's pure translations against golden fixtures (tests/fixtures/responses/,
written from OpenAI's API reference and the `openai` package's own types), and every response
and event checked by those types."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from mini_llm.dialects.openai_responses.request import (
    decode_reasoning,
    encode_reasoning,
    to_canonical_request,
)
from mini_llm.dialects.openai_responses.response import ResponseFrame, to_response
from mini_llm.dialects.openai_responses.stream import ResponsesEventWriter
from mini_llm.errors import InvalidRequestError
from mini_llm.providers.openai_responses import ResponsesStreamReader, parse_response
from mini_llm.sse import SSEParser

from .fixture_files import load_json

_events: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def _frame(ident: str, request: dict[str, Any], encrypted: bool = True) -> ResponseFrame:
    return ResponseFrame(ident, 1741476542, str(request.get("model", "")), request, encrypted)


def test_request_items_to_canonical() -> None:
    body = load_json("responses", "request_items.json")
    assert to_canonical_request(body) == load_json("responses", "request_items.canonical.json")


def test_string_input_and_history() -> None:
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    body = {"model": "m", "input": "c", "instructions": "be kind"}
    assert to_canonical_request(body, history)["messages"] == [
        {"role": "system", "content": "be kind"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]


@pytest.mark.parametrize(
    ("body", "param", "named"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0]", "web_search"),
        ({"tools": [{"type": "file_search", "vector_store_ids": []}]}, "tools[0]", "file_search"),
        (
            {"input": [{"type": "web_search_call", "id": "ws_1"}]},
            "input[0].type",
            "web_search_call",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input[0].type", "item_reference"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "input[0].content[0].type",
            "input_audio",
        ),
        ({"conversation": "conv_1"}, "conversation", "conversation"),
        ({"background": True}, "background", "background"),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_it(
    body: dict[str, Any], param: str, named: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        to_canonical_request({"model": "m", "input": "x", **body})
    assert caught.value.param == param
    assert named in caught.value.message
    assert caught.value.http_status == 400


def test_reasoning_content_round_trip() -> None:
    blocks = [{"type": "thinking", "thinking": "t", "signature": "s", "index": 3}]
    encoded = encode_reasoning(blocks)
    assert encoded is not None and encoded.startswith("mllm1:")
    assert decode_reasoning(encoded) == [{"type": "thinking", "thinking": "t", "signature": "s"}]
    assert encode_reasoning([{"type": "thinking", "thinking": "unsigned"}]) is None
    assert decode_reasoning("gAAAAABopenai-encrypted") == []  # OpenAI's own: not ours to read


def test_answer_to_response() -> None:
    answer = load_json("responses", "answer_reasoning_tools.canonical.json")
    request = {
        "model": "anthropic/claude-sonnet-4-5",
        "instructions": "You are a weather bot.",
        "reasoning": {"effort": "medium", "summary": "auto"},
    }
    response = to_response(answer, _frame("resp_abc", request))
    assert response == load_json("responses", "answer_reasoning_tools.response.json")
    parsed = Response.model_validate(response)
    assert parsed.output_text == "Checking both."


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_incomplete(finish: str, reason: str) -> None:
    answer = {
        "choices": [{"message": {"role": "assistant", "content": "cut"}, "finish_reason": finish}]
    }
    response = to_response(answer, _frame("resp_1", {"model": "m"}))
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": reason}
    Response.model_validate(response)


def test_refusal() -> None:
    answer = {"choices": [{"message": {"role": "assistant", "refusal": "no"}}]}
    response = to_response(answer, _frame("resp_1", {"model": "m"}))
    (item,) = response["output"]
    assert item["content"] == [{"type": "refusal", "refusal": "no"}]
    Response.model_validate(response)


def _written(chunks: list[dict[str, Any]], frame: ResponseFrame) -> list[dict[str, Any]]:
    writer = ResponsesEventWriter(frame)
    data = b"".join(e for c in chunks for e in writer.feed(c)) + b"".join(writer.finish())
    events = []
    for event in SSEParser().feed(data):
        payload = json.loads(event.data)
        assert event.event == payload["type"]
        _events.validate_python(payload)  # the openai package's own event types
        events.append(payload)
    return events


def test_stream_events() -> None:
    chunks = load_json("responses", "stream_text_call.chunks.json")
    events = _written(chunks, _frame("resp_s", {"model": "m"}))
    expected = load_json("responses", "stream_text_call.events.json")
    assert [e["type"] for e in events] == [kind for kind, _ in expected]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event, (_, fields) in zip(events, expected, strict=True):
        for name, value in fields.items():
            if name == "response":
                for key, inner in value.items():
                    assert event["response"][key] == inner, (event["type"], key)
            else:
                assert event[name] == value, (event["type"], name)
    final = Response.model_validate(events[-1]["response"])
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]


def test_stream_that_ends_at_max_tokens_is_incomplete() -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": "cut"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
    ]
    events = _written(chunks, _frame("resp_i", {"model": "m"}))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_failed_stream() -> None:
    writer = ResponsesEventWriter(_frame("resp_f", {"model": "m"}))
    data = b"".join(writer.feed({"choices": [{"index": 0, "delta": {"content": "a"}}]}))
    data += b"".join(writer.fail("overloaded", "Overloaded"))
    events = [json.loads(e.data) for e in SSEParser().feed(data)]
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "Overloaded"}
    _events.validate_python(events[-1])


def test_native_response_read_back_for_usage() -> None:
    response = load_json("responses", "answer_reasoning_tools.response.json")
    answer = parse_response(json.dumps(response).encode())
    assert answer["usage"]["prompt_tokens"] == 120
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}
    assert answer["usage"]["completion_tokens_details"] == {"reasoning_tokens": 12}
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert len(answer["choices"][0]["message"]["tool_calls"]) == 2


def test_native_stream_read_back() -> None:
    chunks = load_json("responses", "stream_text_call.chunks.json")
    writer = ResponsesEventWriter(_frame("resp_s", {"model": "m"}))
    data = b"".join(e for c in chunks for e in writer.feed(c)) + b"".join(writer.finish())
    reader = ResponsesStreamReader()
    out = [c for event in SSEParser().feed(data) for c in reader.feed(event)]
    assert reader.finish() == []
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in out if c["choices"]) == (
        "Hello"
    )
    assert out[-1]["usage"]["total_tokens"] == 12


def test_text_deltas_between_parts_and_items_keep_their_text() -> None:
    """Text deltas (written from a template made once per part) interleaved with a refusal,
    a tool call and more text: every event is the openai package's, every text whole."""
    pieces = ['He said "hi"\n', "wörld ", "\\ end"] * 50
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in pieces
    ]
    chunks += [
        {"choices": [{"index": 0, "delta": {"refusal": "no"}}]},
        {"choices": [{"index": 0, "delta": {"content": "again"}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "function": {"name": "f", "arguments": "{}"},
                            }
                        ]
                    },
                }
            ]
        },
        {"choices": [{"index": 0, "delta": {"content": "after"}, "finish_reason": "stop"}]},
    ]
    events = _written(chunks, _frame("resp_t", {"model": "m"}))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == [*pieces, "again", "after"]
    assert {(d["output_index"], d["content_index"]) for d in deltas} == {(0, 0), (0, 2), (2, 0)}
    done = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    assert done == ["".join(pieces), "again", "after"]
    final = Response.model_validate(events[-1]["response"])
    assert final.output_text == "".join(pieces) + "again" + "after"
    message = events[-1]["response"]["output"][0]
    assert [p.get("text", p.get("refusal")) for p in message["content"]] == [
        "".join(pieces),
        "no",
        "again",
    ]
