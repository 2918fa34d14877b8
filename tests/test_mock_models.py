"""The `mock` provider's models: the pure answers of mock_models.py, then each model through a
real gateway with the official `openai` client (/v1/chat/completions) and `anthropic` client
(/v1/messages), streamed and not."""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import openai
import pytest

from mini_llm.providers.mock_models import (
    MOCK_MODELS,
    SLOW_WORD_DELAY,
    mock_completion,
    mock_failure,
    mock_stream,
)
from mini_llm.providers.schema_example import schema_example

from .conformance_drivers import AnthropicDriver, OpenAIDriver, Tool, Turn
from .conftest import GatewayFactory
from .harness import RunningApp

LOOKUP = Tool(
    "lookup",
    "Look a thing up",
    {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)
FORECAST = Tool(
    "forecast",
    "The weather to come",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 3, "maximum": 10},
            "where": {
                "type": "object",
                "properties": {"lat": {"type": "number"}, "exact": {"type": "boolean"}},
                "required": ["lat", "exact"],
            },
            "hours": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
            "note": {"type": "string"},  # not required: left out
        },
        "required": ["city", "unit", "days", "where", "hours"],
        "additionalProperties": False,
    },
)
FORECAST_ARGS = {
    "city": "mock",
    "unit": "celsius",
    "days": 3,
    "where": {"lat": 1.5, "exact": True},
    "hours": [1, 1],
}
USER = [Turn("user", "what now")]
Driver = OpenAIDriver | AnthropicDriver


def body(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], **fields}


def function(tool: Tool) -> dict[str, Any]:
    return {"type": "function", "function": {"name": tool.name, "parameters": tool.schema}}


# Pure: errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["error-200", "error-399", "error-600", "error-99", "error-5000"])
def test_error_models_outside_400_to_599_are_unknown_models(model: str) -> None:
    failure = mock_failure(body(model))
    assert failure is not None
    assert failure.status == 404
    assert failure.body["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("status", [400, 429, 503, 599])
def test_error_models_answer_their_status(status: int) -> None:
    failure = mock_failure(body(f"error-{status}"))
    assert failure is not None
    assert failure.status == status
    assert failure.body["error"]["code"] == f"mock_{status}"


def test_unknown_model_names_every_model_and_the_error_models() -> None:
    failure = mock_failure(body("nope"))
    assert failure is not None
    message = failure.body["error"]["message"]
    assert "`nope`" in message
    assert all(name in message for name in ("echo", "tools", "json", "slow"))
    assert "error-<status>" in message
    assert set(MOCK_MODELS) == {"echo", "tools", "json", "slow", "embed"}


def test_forcing_a_tool_that_is_not_offered_is_a_400() -> None:
    forced = {"type": "function", "function": {"name": "absent"}}
    failure = mock_failure(body("tools", tools=[function(LOOKUP)], tool_choice=forced))
    assert failure is not None
    assert failure.status == 400
    assert failure.body["error"]["param"] == "tool_choice"
    assert mock_failure(body("tools", tools=[function(LOOKUP)])) is None


def test_completion_needs_a_mock_model() -> None:
    with pytest.raises(ValueError, match="mock_failure"):
        mock_completion(body("nope"), "chatcmpl-x", 0)


# Pure: answers ----------------------------------------------------------------------------------


def test_tools_calls_the_forced_tool_with_arguments_from_its_schema() -> None:
    forced = {"type": "function", "function": {"name": "forecast"}}
    request = body("tools", tools=[function(LOOKUP), function(FORECAST)], tool_choice=forced)
    delay, answer = mock_completion(request, "chatcmpl-mock1f", 7)
    assert delay == 0
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["id"] == "call_mock1f"
    assert call["function"]["name"] == "forecast"
    assert json.loads(call["function"]["arguments"]) == FORECAST_ARGS
    assert answer["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("choice", [None, "auto", "required"])
def test_tools_calls_the_first_tool_unless_one_is_forced(choice: str | None) -> None:
    request = body("tools", tools=[function(LOOKUP), function(FORECAST)], tool_choice=choice)
    _, answer = mock_completion(request, "chatcmpl-a", 0)
    (call,) = answer["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "lookup"
    assert json.loads(call["function"]["arguments"]) == {"q": "mock"}


def test_tools_echoes_without_tools_or_under_tool_choice_none() -> None:
    for request in (body("tools"), body("tools", tools=[function(LOOKUP)], tool_choice="none")):
        _, answer = mock_completion(request, "chatcmpl-a", 0)
        assert answer["choices"][0]["message"]["content"] == "hello there"
        assert answer["choices"][0]["finish_reason"] == "stop"


def test_tools_quotes_the_tool_results_since_the_last_assistant_turn() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "look"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "42"}]},
    ]
    request = {"model": "tools", "messages": messages, "tools": [function(LOOKUP)]}
    _, answer = mock_completion(request, "chatcmpl-a", 0)
    assert answer["choices"][0]["message"]["content"] == "The tool answered: 42"
    assert answer["choices"][0]["finish_reason"] == "stop"
    # an Anthropic user turn with a tool result and text: the text comes after the result
    request["messages"] = [*messages, {"role": "user", "content": "and?"}]
    _, answer = mock_completion(request, "chatcmpl-a", 0)
    assert answer["choices"][0]["message"]["content"] == "The tool answered: 42"
    # a new question after the answer calls the tool again
    answered = {"role": "assistant", "content": "The tool answered: 42"}
    request["messages"] = [*messages, answered, {"role": "user", "content": "again"}]
    _, answer = mock_completion(request, "chatcmpl-a", 0)
    assert answer["choices"][0]["finish_reason"] == "tool_calls"


def test_tool_call_streams_the_way_openai_does() -> None:
    request = body("tools", tools=[function(FORECAST)], stream_options={"include_usage": True})
    steps = mock_stream(request, "chatcmpl-mock2", 7)
    chunks = [chunk for _, chunk in steps]
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    (opening,) = first["tool_calls"]
    assert opening == {
        "index": 0,
        "id": "call_mock2",
        "type": "function",
        "function": {"name": "forecast", "arguments": ""},
    }
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-2]]
    assert len(fragments) > 1
    assert all(set(f) == {"index", "function"} and "name" not in f["function"] for f in fragments)
    assert json.loads("".join(f["function"]["arguments"] for f in fragments)) == FORECAST_ARGS
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


def test_a_stream_has_a_usage_chunk_only_when_asked() -> None:
    chunks = [chunk for _, chunk in mock_stream(body("echo"), "chatcmpl-a", 0)]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_json_answers_an_instance_of_the_schema() -> None:
    schema = {"name": "forecast", "schema": FORECAST.schema, "strict": True}
    request = body("json", response_format={"type": "json_schema", "json_schema": schema})
    _, answer = mock_completion(request, "chatcmpl-a", 0)
    assert json.loads(answer["choices"][0]["message"]["content"]) == FORECAST_ARGS
    assert answer["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("response_format", [{"type": "json_object"}, {"type": "text"}, None])
def test_json_answers_a_small_object_otherwise(response_format: dict[str, str] | None) -> None:
    _, answer = mock_completion(body("json", response_format=response_format), "chatcmpl-a", 0)
    assert json.loads(answer["choices"][0]["message"]["content"]) == {"answer": "hello there"}


def test_slow_sends_a_word_each_step_and_waits_as_long_whole() -> None:
    request = {"model": "slow", "messages": [{"role": "user", "content": "one two  three"}]}
    steps = mock_stream(request, "chatcmpl-a", 0)
    words = [(d, c["choices"][0]["delta"]["content"]) for d, c in steps[1:-1]]
    assert words == [
        (SLOW_WORD_DELAY, "one "),
        (SLOW_WORD_DELAY, "two  "),
        (SLOW_WORD_DELAY, "three"),
    ]
    delay, answer = mock_completion(request, "chatcmpl-a", 0)
    assert delay == pytest.approx(3 * SLOW_WORD_DELAY)
    assert answer["choices"][0]["message"]["content"] == "one two  three"


# Pure: schema_example ---------------------------------------------------------------------------


def test_schema_example_follows_refs_and_ends_recursive_schemas() -> None:
    tree = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"$ref": "#/$defs/Name"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                },
                "required": ["name", "kids"],
            },
            "Name": {"type": "string", "minLength": 6},
        },
        "$ref": "#/$defs/Node",
    }
    value = schema_example(tree)
    depth = 0
    node = value
    while node["kids"]:
        assert node["name"] == "mockxx"
        (node,) = node["kids"]
        depth += 1
    assert 1 <= depth <= 8


def test_schema_example_choices_and_bounds() -> None:
    schema = {
        "type": "object",
        "properties": {
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "exclusiveMinimum": 4}]},
            "kind": {"const": "fixed"},
            "both": {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]},
                    {"properties": {"b": {"type": ["null", "number"], "maximum": 0}}},
                    {"required": ["b"]},
                ]
            },
            "when": {"type": "string", "format": "date-time"},
            "short": {"type": "string", "maxLength": 2},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "null"}]},
            "none": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
            "low": {"type": "integer", "exclusiveMaximum": 0},
        },
        "required": ["maybe", "kind", "both", "when", "short", "pair", "none", "low"],
    }
    assert schema_example(schema) == {
        "maybe": 5,
        "kind": "fixed",
        "both": {"a": True, "b": 0.0},
        "when": "2025-01-01T00:00:00Z",
        "short": "mo",
        "pair": ["mock", None],
        "none": [],
        "low": -1,
    }


# Through the gateway, both client dialects -------------------------------------------------------


@pytest.fixture
def gateway(make_gateway: GatewayFactory) -> RunningApp:
    return make_gateway()  # the mock provider needs no configuration


def driver_for(dialect: str, gateway: RunningApp) -> Driver:
    return OpenAIDriver(gateway.url) if dialect == "openai" else AnthropicDriver(gateway.url)


DIALECTS = ["openai", "anthropic"]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_mock_tools_through_the_gateway(gateway: RunningApp, dialect: str, stream: bool) -> None:
    driver = driver_for(dialect, gateway)
    tools = [LOOKUP, FORECAST]
    called = driver.ask("mock/tools", USER, tools=tools, force_tool="forecast", stream=stream)
    assert called.finish == "tool_calls"  # Anthropic: stop_reason tool_use
    ((ident, name, arguments),) = called.calls
    assert (name, arguments) == ("forecast", FORECAST_ARGS)
    assert called.usage is not None and called.usage[1] > 0
    first = driver.ask("mock/tools", USER, tools=tools, stream=stream)
    assert [c[1] for c in first.calls] == ["lookup"]

    turns = [*USER, Turn("assistant", calls=called.calls), Turn("tool", "21 C", call_id=ident)]
    answered = driver.ask("mock/tools", turns, tools=tools, stream=stream)
    assert answered.text == "The tool answered: 21 C"
    assert (answered.finish, answered.calls) == ("stop", [])
    assert answered.usage is not None and answered.usage[1] > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_mock_json_through_the_gateway(gateway: RunningApp, dialect: str, stream: bool) -> None:
    driver = driver_for(dialect, gateway)
    plain = driver.ask("mock/json", USER, stream=stream)  # json_object's answer
    assert json.loads(plain.text) == {"answer": "what now"}
    assert plain.finish == "stop"
    assert plain.usage is not None and plain.usage[1] > 0
    if dialect == "openai":  # the Messages API has no response_format
        shaped = driver.ask("mock/json", USER, json_schema=FORECAST.schema, stream=stream)
        assert json.loads(shaped.text) == FORECAST_ARGS


def test_mock_json_object_through_the_openai_client(gateway: RunningApp) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    completion = client.chat.completions.create(
        model="mock/json",
        messages=[{"role": "user", "content": "hi"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(completion.choices[0].message.content or "") == {"answer": "hi"}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_mock_slow_streams_a_word_every_100_ms(gateway: RunningApp, dialect: str) -> None:
    text = "one two three four"
    arrivals: list[tuple[float, str]] = []
    if dialect == "openai":
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        for chunk in client.chat.completions.create(
            model="mock/slow",
            messages=[{"role": "user", "content": text}],
            stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
            if chunk.usage is not None:
                assert chunk.usage.completion_tokens > 0
    else:
        messages = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0).messages
        with messages.stream(
            model="mock/slow", max_tokens=64, messages=[{"role": "user", "content": text}]
        ) as events:
            for event in events:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    arrivals.append((time.monotonic(), event.delta.text))
            assert events.get_final_message().usage.output_tokens > 0
    assert [piece for _, piece in arrivals] == ["one ", "two ", "three ", "four"]
    # each word waits 100 ms after the one before: the first to the last, at least 3 of them
    assert arrivals[-1][0] - arrivals[0][0] >= 3 * SLOW_WORD_DELAY - 0.02


@pytest.mark.parametrize("dialect", DIALECTS)
def test_mock_slow_whole_answer_waits_the_same(gateway: RunningApp, dialect: str) -> None:
    driver = driver_for(dialect, gateway)
    started = time.monotonic()
    result = driver.ask("mock/slow", [Turn("user", "one two three")])
    assert time.monotonic() - started >= 3 * SLOW_WORD_DELAY - 0.02
    assert result.text == "one two three"
    assert result.usage is not None and result.usage[1] > 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_mock_error_models_through_the_gateway(gateway: RunningApp, dialect: str) -> None:
    driver = driver_for(dialect, gateway)
    status, error = driver.error("mock/error-200")
    assert status == 404
    message = json.dumps(error)
    assert "error-<status>" in message and "tools" in message
    status, _ = driver.error("mock/error-422")  # a 4xx keeps its status and is not retried
    assert status == 422
