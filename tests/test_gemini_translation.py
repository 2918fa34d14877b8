"""The Gemini wire format, pure: golden fixtures in, canonical dicts out (no server)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mini_llm.config import ProviderConfig
from mini_llm.errors import UpstreamError
from mini_llm.providers.base import Provider
from mini_llm.providers.gemini import GEMINI_WIRE, clean_schema, to_gemini_request
from mini_llm.providers.mock import MockTransport
from mini_llm.routing.keys import KeyEntry

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
    provider = Provider(config, GEMINI_WIRE, MockTransport())
    key = KeyEntry("AIzaKEY", GEMINI_WIRE.auth_headers(config, "AIzaKEY"))
    body = {"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]}
    plain = GEMINI_WIRE.chat_request(provider, body, key, False)
    streamed = GEMINI_WIRE.chat_request(provider, body, key, True)
    base = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro"
    assert plain.url == base + ":generateContent"
    assert streamed.url == base + ":streamGenerateContent?alt=sse"
    assert plain.headers["x-goog-api-key"] == "AIzaKEY"
    assert "AIzaKEY" not in plain.url and "AIzaKEY" not in streamed.url
    assert "model" not in msgspec.json.decode(plain.body)


def test_response_with_thoughts_and_function_calls() -> None:
    answer = GEMINI_WIRE.parse_chat_response(load_bytes("gemini", "response_function_call.json"))
    (choice,) = answer["choices"]
    message = choice["message"]
    assert choice["finish_reason"] == "tool_calls"
    assert message["content"] == "Let me check."
    assert message["reasoning_content"] == "Planning the lookup."
    first, second = message["tool_calls"]
    assert first["id"].startswith("call_gemini_")
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
    answer = GEMINI_WIRE.parse_chat_response(load_bytes("gemini", "response_safety.json"))
    assert answer["choices"][0]["finish_reason"] == "content_filter"


def test_a_thought_signature_goes_back_with_its_call() -> None:
    answer = GEMINI_WIRE.parse_chat_response(load_bytes("gemini", "response_function_call.json"))
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
    assert "id" not in model_parts[1]["functionCall"]  # ids we made up never go upstream
    assert model_parts[2]["functionCall"]["id"] == "fc-2"
    results = [p["functionResponse"] for p in contents[2]["parts"]]
    assert results == [
        {"name": "get_weather", "response": {"result": "18C"}},
        {"name": "get_weather", "response": {"result": "21C"}, "id": "fc-2"},
    ]


def test_stream_text_then_call_then_usage() -> None:
    translator = GEMINI_WIRE.stream_translator()
    chunks: list[dict[str, Any]] = []
    for event in load_events("gemini", "stream_text_and_call.sse"):
        chunks += translator.feed(event)
    chunks += translator.finish()
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content") or "" for d in deltas) == "The weather is nice."
    (call,) = [t for d in deltas for t in d.get("tool_calls", [])]
    assert (call["index"], call["function"]["name"]) == (0, "get_weather")
    assert msgspec.json.decode(call["function"]["arguments"]) == {"city": "Oslo"}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == 16


def test_stream_without_finish_reason_is_an_error() -> None:
    translator = GEMINI_WIRE.stream_translator()
    for event in load_events("gemini", "stream_text_and_call.sse")[:2]:
        translator.feed(event)
    with pytest.raises(UpstreamError, match="ended before"):
        translator.finish()


def test_error_body() -> None:
    info = GEMINI_WIRE.error_info(400, load_bytes("gemini", "error_invalid_argument.json"))
    assert info.message.startswith("Invalid JSON payload received.")
    assert info.code == "invalid_argument"
