"""The Gemini wire format, pure: golden fixtures in, canonical dicts out (no server)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from mini_llm.canonical import token_count
from mini_llm.config import ProviderConfig
from mini_llm.errors import InvalidRequestError, UpstreamError
from mini_llm.formats import CHAT
from mini_llm.providers.base import Credential, UpstreamModel
from mini_llm.providers.gemini import GEMINI_WIRE, clean_schema, to_gemini_request
from mini_llm.providers.gemini_answer import GeminiStreamTranslator, gemini_usage

from .fixture_files import load_bytes, load_events, load_json


def test_request_matches_golden() -> None:
    fixture = load_json("gemini", "request_full.json")
    assert to_gemini_request(fixture["canonical"]) == fixture["gemini"]


def test_clean_schema_keeps_only_what_gemini_accepts() -> None:
    schema = {
        "$schema": "x",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "a": {"type": "array", "items": {"type": "object", "additionalProperties": {}}}
        },
        "required": ["a", "gone"],
        "strict": True,
    }
    assert clean_schema(schema) == {
        "type": "object",
        "properties": {"a": {"type": "array", "items": {"type": "object"}}},
        "required": ["a"],
    }


def test_url_and_key_placement() -> None:
    config = ProviderConfig(
        "gemini", "gemini", "https://generativelanguage.googleapis.com/v1beta", keys=("AIzaKEY",)
    )
    to = UpstreamModel("gemini", config.base_url, "gemini-2.5-pro", GEMINI_WIRE.headers({}))
    key = Credential("AIzaKEY")
    body = {"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]}
    endpoint = GEMINI_WIRE.endpoints[CHAT]
    plain = GEMINI_WIRE.sign(endpoint.request(to, dict(body), False, False), key)
    streamed = GEMINI_WIRE.sign(endpoint.request(to, dict(body), False, True), key)
    base = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro"
    assert plain.url == base + ":generateContent"
    assert streamed.url == base + ":streamGenerateContent?alt=sse"
    assert plain.headers["x-goog-api-key"] == "AIzaKEY"
    assert "AIzaKEY" not in plain.url and "AIzaKEY" not in streamed.url
    assert "model" not in msgspec.json.decode(plain.body)


def test_response_with_thoughts_and_function_calls() -> None:
    answer = GEMINI_WIRE.endpoints[CHAT].parse(load_bytes("gemini", "response_function_call.json"))
    (choice,) = answer["choices"]
    message = choice["message"]
    assert choice["finish_reason"] == "tool_calls"
    assert message["content"] == "Let me check."
    assert message["reasoning_content"] == "Planning the lookup."
    first, second = message["tool_calls"]
    assert first["id"] == "call_gemini_abc123_0"  # made up, from the response's id
    assert first["extra_content"] == {"google": {"thought_signature": "c2lnLTE="}}
    assert second["id"] == "fc-2"
    assert msgspec.json.decode(second["function"]["arguments"]) == {"city": "Rome"}
    assert answer["usage"] == {
        "prompt_tokens": 30,
        "completion_tokens": 20,
        "total_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 10},
        "completion_tokens_details": {"reasoning_tokens": 8},
    }
    assert answer["id"] == "abc123"


def test_safety_finish_is_content_filter() -> None:
    answer = GEMINI_WIRE.endpoints[CHAT].parse(load_bytes("gemini", "response_safety.json"))
    assert answer["choices"][0]["finish_reason"] == "content_filter"


def test_a_thought_signature_goes_back_with_its_call() -> None:
    answer = GEMINI_WIRE.endpoints[CHAT].parse(load_bytes("gemini", "response_function_call.json"))
    message = answer["choices"][0]["message"]
    follow_up = {
        "messages": [
            {"role": "user", "content": "weather?"},
            message,
            {"role": "tool", "tool_call_id": message["tool_calls"][0]["id"], "content": "18C"},
            {"role": "tool", "tool_call_id": "fc-2", "content": "21C"},
        ]
    }
    contents = to_gemini_request(follow_up)["contents"]
    model_parts = contents[1]["parts"]
    assert model_parts[1]["thoughtSignature"] == "c2lnLTE="
    assert message["tool_calls"][0]["id"].startswith("call_gemini_")
    assert "id" not in model_parts[1]["functionCall"]  # ids we made up never go upstream
    assert model_parts[2]["functionCall"]["id"] == "fc-2"
    results = [p["functionResponse"] for p in contents[2]["parts"]]
    assert results == [
        {"name": "get_weather", "response": {"result": "18C"}},
        {"name": "get_weather", "response": {"result": "21C"}, "id": "fc-2"},
    ]


def test_stream_text_then_call_then_usage() -> None:
    translator = GeminiStreamTranslator()
    chunks: list[dict[str, Any]] = []
    for event in load_events("gemini", "stream_text_and_call.sse"):
        chunks += translator.feed(event)
    chunks += translator.finish()
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "The weather is nice."
    (call,) = [t for d in deltas for t in d.get("tool_calls", [])]
    assert (call["index"], call["function"]["name"]) == (0, "get_weather")
    assert call["id"] == "call_gemini_r1_0"
    assert msgspec.json.decode(call["function"]["arguments"]) == {"city": "Oslo"}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 16


def test_stream_without_finish_reason_is_an_error() -> None:
    translator = GeminiStreamTranslator()
    for event in load_events("gemini", "stream_text_and_call.sse")[:2]:
        translator.feed(event)
    with pytest.raises(UpstreamError, match="ended before"):
        translator.finish()


def test_error_body() -> None:
    info = GEMINI_WIRE.error_info(400, load_bytes("gemini", "error_invalid_argument.json"))
    assert info.message.startswith("Invalid JSON payload received.")
    assert info.code == "invalid_argument"


def _stream(name: str) -> list[dict[str, Any]]:
    translator = GeminiStreamTranslator()
    chunks: list[dict[str, Any]] = []
    for event in load_events("gemini", name):
        chunks += translator.feed(event)
    return chunks + translator.finish()


def _has_ref(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "$ref" in schema or any(_has_ref(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_ref(v) for v in schema)
    return False


@pytest.mark.parametrize("case", ["self_reference", "mutual_reference", "root_reference"])
def test_a_recursive_schema_is_cut_where_it_repeats(case: str) -> None:
    fixture = load_json("gemini", "schema_recursive.json")[case]
    cleaned = clean_schema(fixture["schema"])
    assert cleaned == fixture["cleaned"]
    assert not _has_ref(cleaned)


def test_a_recursive_tool_schema_makes_a_small_request() -> None:
    schema = load_json("gemini", "schema_recursive.json")["self_reference"]["schema"]
    tool = {"type": "function", "function": {"name": "walk", "parameters": schema}}
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    encoded = msgspec.json.encode(to_gemini_request(body))
    assert b"$ref" not in encoded and b"$defs" not in encoded
    assert len(encoded) < 1000


def _exploding_schema(levels: int) -> dict[str, Any]:
    """No cycle, but every definition uses the next one twice: 2**levels nodes once inlined."""
    defs: dict[str, Any] = {
        f"L{i}": {
            "type": "object",
            "properties": {"a": {"$ref": f"#/$defs/L{i + 1}"}, "b": {"$ref": f"#/$defs/L{i + 1}"}},
        }
        for i in range(levels)
    }
    defs[f"L{levels}"] = {"type": "string"}
    return {"type": "object", "properties": {"x": {"$ref": "#/$defs/L0"}}, "$defs": defs}


def test_a_schema_that_expands_without_bound_is_refused() -> None:
    small = {"type": "object", "properties": {"q": {"type": "string"}}}
    tools = [
        {"type": "function", "function": {"name": "fine", "parameters": small}},
        {"type": "function", "function": {"name": "bomb", "parameters": _exploding_schema(40)}},
    ]
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": tools}
    with pytest.raises(InvalidRequestError, match="'bomb'") as caught:
        to_gemini_request(body)
    assert caught.value.param == "tools.1.function.parameters"
    assert caught.value.status == 400


def test_a_schema_nested_too_deep_is_refused() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(200):
        schema = {"type": "object", "properties": {"x": schema}}
    tool = {"type": "function", "function": {"name": "deep", "parameters": schema}}
    body = {"messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    with pytest.raises(InvalidRequestError, match="'deep'") as caught:
        to_gemini_request(body)
    assert caught.value.param == "tools.0.function.parameters"


def test_made_up_call_ids_differ_between_responses() -> None:
    raw = load_bytes("gemini", "response_calls_without_ids.json")  # no responseId either
    first = GEMINI_WIRE.endpoints[CHAT].parse(raw)["choices"][0]["message"]["tool_calls"]
    second = GEMINI_WIRE.endpoints[CHAT].parse(raw)["choices"][0]["message"]["tool_calls"]
    ids = [c["id"] for c in first + second]
    assert len(set(ids)) == 4
    assert all(re.fullmatch(r"call_gemini_[A-Za-z0-9_-]+", i) for i in ids)
    answer = load_json("gemini", "response_calls_without_ids.json")
    for turn in ("t1", "t2"):
        answer["responseId"] = turn
        calls = GEMINI_WIRE.endpoints[CHAT].parse(msgspec.json.encode(answer))["choices"][0]
        ids = [c["id"] for c in calls["message"]["tool_calls"]]
        assert ids == [f"call_gemini_{turn}_0", f"call_gemini_{turn}_1"]
    answer["responseId"] = "a/b c"  # only characters every client accepts in an id
    calls = GEMINI_WIRE.endpoints[CHAT].parse(msgspec.json.encode(answer))["choices"][0]
    assert calls["message"]["tool_calls"][0]["id"] == "call_gemini_abc_0"


def test_made_up_call_ids_never_go_back_to_gemini() -> None:
    raw = load_bytes("gemini", "response_calls_without_ids.json")
    message = GEMINI_WIRE.endpoints[CHAT].parse(raw)["choices"][0]["message"]
    results = [
        {"role": "tool", "tool_call_id": call["id"], "content": "18C"}
        for call in message["tool_calls"]
    ]
    body = {"messages": [{"role": "user", "content": "weather?"}, message, *results]}
    model, answers = to_gemini_request(body)["contents"][1:]
    assert [p["functionCall"] for p in model["parts"]] == [
        {"name": "get_weather", "args": {"city": "Paris"}},
        {"name": "get_weather", "args": {"city": "Rome"}},
    ]
    assert [p["functionResponse"] for p in answers["parts"]] == [
        {"name": "get_weather", "response": {"result": "18C"}},
        {"name": "get_weather", "response": {"result": "18C"}},
    ]


@pytest.mark.parametrize(
    "reason", ["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"]
)
def test_a_broken_tool_call_is_a_retryable_upstream_error(reason: str) -> None:
    answer = load_json("gemini", "response_malformed_function_call.json")
    answer["candidates"][0]["finishReason"] = reason
    with pytest.raises(UpstreamError, match=reason):
        GEMINI_WIRE.endpoints[CHAT].parse(msgspec.json.encode(answer))


def test_a_broken_tool_call_after_text_keeps_the_text() -> None:
    answer = load_json("gemini", "response_malformed_function_call.json")
    answer["candidates"][0]["content"] = {"role": "model", "parts": [{"text": "Sorry."}]}
    (choice,) = GEMINI_WIRE.endpoints[CHAT].parse(msgspec.json.encode(answer))["choices"]
    assert (choice["message"]["content"], choice["finish_reason"]) == ("Sorry.", "stop")


def test_a_broken_tool_call_in_a_stream_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="MALFORMED_FUNCTION_CALL"):
        _stream("stream_malformed_function_call.sse")


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("IMAGE_PROHIBITED_CONTENT", "content_filter"),
        ("IMAGE_RECITATION", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("LANGUAGE", "content_filter"),
        ("MAX_TOKENS", "length"),
        ("SOMETHING_NEW", "stop"),
        ({"not": "a string"}, "stop"),
    ],
)
def test_finish_reasons(reason: Any, finish: str) -> None:
    answer = load_json("gemini", "response_safety.json")
    answer["candidates"][0]["finishReason"] = reason
    answer["candidates"][0]["content"]["parts"] = [{"text": "x"}]
    (choice,) = GEMINI_WIRE.endpoints[CHAT].parse(msgspec.json.encode(answer))["choices"]
    assert choice["finish_reason"] == finish


def test_counts_that_are_not_numbers_count_zero() -> None:
    chunks = _stream("stream_odd_usage.sse")
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 0,
        "completion_tokens": 4,
        "total_tokens": 4,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    nan = gemini_usage({"promptTokenCount": float("nan"), "totalTokenCount": float("inf")})
    assert (nan["prompt_tokens"], nan["total_tokens"]) == (0, 0)


@pytest.mark.parametrize(
    ("value", "count"),
    [(3, 3), (3.9, 3), (-1, 0), (True, 0), ("7", 0), (None, 0), (float("nan"), 0), ([1], 0)],
)
def test_token_count(value: Any, count: int) -> None:
    assert token_count(value) == count
