"""Anthropic's `cache_control` through the canonical form: kept for Anthropic (and Claude on
Vertex), a `cachePoint` after its block for Bedrock's Converse (golden fixture from the
Converse API reference's placement rules), left out and named in `x-mini-llm-dropped` for
OpenAI and Gemini; end to end through the official clients against the mock Bedrock, whose
cache points report cache writes, then reads."""

from __future__ import annotations

import copy
import json
from typing import Any

import anthropic
import openai

from mini_llm.canonical import Usage, has_cache_control, without_cache_control
from mini_llm.dialects.anthropic.request import dropped_fields, to_canonical_request
from mini_llm.providers.anthropic import to_anthropic_request
from mini_llm.providers.base import Credential, UpstreamModel, UpstreamRequest
from mini_llm.providers.bedrock import to_converse_request
from mini_llm.providers.bedrock_answer import converse_usage
from mini_llm.providers.gemini import GeminiGenerate
from mini_llm.providers.openai import OpenAIChat
from mini_llm.providers.sigv4 import SigV4Signer
from mini_llm.providers.vertex import VertexClaude
from mini_llm.schema.anthropic import validate_messages_request

from .conftest import GatewayFactory
from .fixture_files import load_json
from .upstreams import bedrock_upstream as mock
from .upstreams.bedrock_upstream import BedrockUpstream
from .upstreams.openai_upstream import OpenAIUpstream

CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
EPHEMERAL = {"type": "ephemeral"}


def _canonical(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    dropped: list[str] = []
    canonical = to_canonical_request(validate_messages_request(body), dropped, body)
    dropped_fields(body, dropped)
    return canonical, dropped


def _golden() -> dict[str, Any]:
    body: dict[str, Any] = load_json("bedrock", "cache_control.messages.json")
    return body


def _to(model: str = CLAUDE) -> UpstreamModel:
    return UpstreamModel("p", "http://127.0.0.1:9", model, {})


def _marks(value: Any) -> int:
    """How many `cache_control` keys a JSON value holds, at any depth."""
    if isinstance(value, dict):
        return int("cache_control" in value) + sum(_marks(v) for v in value.values())
    if isinstance(value, list):
        return sum(_marks(v) for v in value)
    return 0


# pure translations ---------------------------------------------------------------------------


def test_breakpoints_become_cache_points_after_their_blocks() -> None:
    canonical, dropped = _canonical(_golden())
    assert dropped == []
    assert to_converse_request(canonical, CLAUDE) == load_json(
        "bedrock", "cache_control.converse.json"
    )


def test_anthropic_gets_its_breakpoints_back_where_they_were() -> None:
    body = _golden()
    canonical, _ = _canonical(body)
    out = to_anthropic_request(canonical, False)
    assert out["system"] == body["system"]
    assert out["tools"] == body["tools"]
    assert out["messages"] == body["messages"]
    # Claude on Vertex speaks the same format: the breakpoints are kept there too
    request = VertexClaude().request(_to("claude-sonnet-4-5@20250929"), canonical, False, False)
    sent = json.loads(request.body)
    assert sent["messages"] == body["messages"] and sent["tools"] == body["tools"]
    assert request.dropped == ()


def test_content_parts_and_mid_conversation_system_messages_carry_them() -> None:
    png = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {
                "role": "system",
                "content": [{"type": "text", "text": "rules", "cache_control": EPHEMERAL}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": png, "cache_control": EPHEMERAL},
                    {"type": "text", "text": "what is it?"},
                ],
            },
        ],
    }
    canonical, dropped = _canonical(body)
    assert dropped == []
    system, user = canonical["messages"]
    assert system["content"] == [{"type": "text", "text": "rules", "cache_control": EPHEMERAL}]
    assert [part.get("cache_control") for part in user["content"]] == [None, EPHEMERAL, None]
    converse = to_converse_request(canonical, CLAUDE)
    assert converse["system"] == [{"text": "rules"}, {"cachePoint": {"type": "default"}}]
    (turn,) = converse["messages"]
    assert [next(iter(block)) for block in turn["content"]] == [
        "text",
        "image",
        "cachePoint",
        "text",
    ]
    # without a breakpoint the text stays one string, as before
    plain, _ = _canonical(
        {**body, "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}
    )
    assert plain["messages"] == [{"role": "user", "content": "x"}]


def test_marks_on_whole_messages_and_on_tool_parts_as_openai_clients_send_them() -> None:
    canonical: dict[str, Any] = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "rules", "cache_control": EPHEMERAL},
            {"role": "user", "content": "q", "cache_control": {"type": "ephemeral", "ttl": "5m"}},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
                "cache_control": EPHEMERAL,
            },
            {
                "role": "tool",
                "tool_call_id": "c1",
                "content": [{"type": "text", "text": "r", "cache_control": EPHEMERAL}],
            },
        ],
    }
    converse = to_converse_request(canonical, CLAUDE)
    point = {"cachePoint": {"type": "default"}}
    assert converse["system"] == [{"text": "rules"}, point]
    user, assistant, result = converse["messages"]
    assert user["content"] == [{"text": "q"}, {"cachePoint": {"type": "default", "ttl": "5m"}}]
    assert assistant["content"][-1] == point and "toolUse" in assistant["content"][0]
    assert result["content"][-1] == point and "toolResult" in result["content"][0]
    anthropic_body = to_anthropic_request(canonical, False)
    assert anthropic_body["system"] == [
        {"type": "text", "text": "rules", "cache_control": EPHEMERAL}
    ]
    marks = [
        block.get("cache_control") for m in anthropic_body["messages"] for block in m["content"]
    ]
    assert marks == [{"type": "ephemeral", "ttl": "5m"}, EPHEMERAL, None]
    (inner,) = anthropic_body["messages"][2]["content"][0]["content"]
    assert inner["cache_control"] == EPHEMERAL  # inside the tool result, where it was
    request = OpenAIChat().request(_to("gpt-4o"), canonical, False, False)
    assert _marks(json.loads(request.body)) == 0 and request.dropped == ("cache_control",)


def test_a_tool_results_last_part_lends_it_its_breakpoint_and_others_are_named() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [
            {"type": "text", "text": "a"},
            {"type": "text", "text": "b", "cache_control": EPHEMERAL},
        ],
    }
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [result]}]}
    canonical, dropped = _canonical(body)
    assert canonical["messages"][0]["cache_control"] == EPHEMERAL and dropped == []
    result["content"][0]["cache_control"] = EPHEMERAL  # type: ignore[index]
    canonical, dropped = _canonical(body)
    assert canonical["messages"][0]["cache_control"] == EPHEMERAL
    assert dropped == ["cache_control"]


def test_breakpoints_on_blocks_translation_drops_are_named() -> None:
    body = {
        "model": "m",
        "max_tokens": 5,
        "messages": [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": "t",
                        "signature": "s",
                        "cache_control": EPHEMERAL,
                    },
                    {"type": "text", "text": "a"},
                ],
            },
        ],
        "tools": [
            {"type": "web_search_20250305", "name": "web_search", "cache_control": EPHEMERAL}
        ],
    }
    canonical, dropped = _canonical(body)
    assert dropped == ["cache_control", "tools.web_search_20250305"]
    assert _marks(canonical) == 0


def test_openai_and_gemini_leave_them_out_and_name_them() -> None:
    canonical, _ = _canonical(_golden())
    before = copy.deepcopy(canonical)
    assert has_cache_control(canonical) and _marks(canonical) == 4
    request = OpenAIChat().request(_to("gpt-4o"), canonical, False, False)
    sent = json.loads(request.body)
    assert _marks(sent) == 0 and request.dropped == ("cache_control",)
    # only the marks went: the rest of the request is the canonical one
    assert sent == {**without_cache_control(before), "model": "gpt-4o"}
    # the body shared by the route's targets keeps its marks (each target sets its model)
    assert {**canonical, "model": before["model"]} == before
    request = GeminiGenerate().request(_to("gemini-2.5-flash"), canonical, False, False)
    assert _marks(json.loads(request.body)) == 0 and request.dropped == ("cache_control",)
    # a model that refuses reasoning_effort: both named, in the order met
    request = OpenAIChat().request(
        _to("gpt-4o"), {**canonical, "reasoning_effort": "low"}, False, False
    )
    assert request.dropped == ("cache_control", "reasoning_effort")
    # an OpenAI client's own body to an OpenAI-format server travels untouched
    native = {
        "model": "x",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "q", "cache_control": EPHEMERAL}]}
        ],
    }
    request = OpenAIChat().request(_to("gpt-4o"), native, True, False)
    assert _marks(json.loads(request.body)) == 1 and request.dropped == ()


def test_a_signed_request_keeps_what_its_builder_dropped() -> None:
    request = UpstreamRequest(
        "POST",
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse",
        {},
        b"{}",
        ("cache_control",),
    )
    signer = SigV4Signer("us-east-1", "bedrock", lambda: 1_700_000_000.0)
    keys = Credential("secret", {"access_key_id": "AKID", "secret_access_key": "secret"})
    assert signer.sign(request, keys).dropped == ("cache_control",)
    assert signer.sign(request, Credential("token", {"kind": "bearer"})).dropped == (
        "cache_control",
    )


def test_converse_cache_usage_with_its_writes_per_ttl() -> None:
    # TokenUsage as the Converse reference shapes it: cacheDetails sorted 1h before 5m
    usage = converse_usage(
        {
            "inputTokens": 20,
            "outputTokens": 7,
            "totalTokens": 1527,
            "cacheReadInputTokens": 300,
            "cacheWriteInputTokens": 1200,
            "cacheDetails": [{"ttl": "1h", "inputTokens": 1000}, {"ttl": "5m", "inputTokens": 200}],
        }
    )
    assert usage["prompt_tokens"] == 1520 and usage["prompt_tokens_details"] == {
        "cached_tokens": 300
    }
    assert usage["cache_creation_input_tokens"] == 1200
    assert usage["cache_creation_1h_input_tokens"] == 1000
    figures = Usage.from_canonical(usage)
    assert (figures.input_tokens, figures.cached_input_tokens) == (20, 300)
    assert (figures.cache_write_tokens, figures.cache_write_1h_tokens) == (1200, 1000)
    plain = converse_usage({"inputTokens": 5, "outputTokens": 1, "cacheWriteInputTokens": 9})
    assert "cache_creation_1h_input_tokens" not in plain and plain["prompt_tokens"] == 14


# the gateway against the mock Bedrock ---------------------------------------------------------


def _env(url: str, **extra: str) -> dict[str, str]:
    return {
        "AWS_REGION": mock.REGION,
        "AWS_ACCESS_KEY_ID": mock.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": mock.SECRET_KEY,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
        **extra,
    }


def _points(body: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    return mock.cache_points(body)


def test_anthropic_client_caches_on_bedrock(
    make_gateway: GatewayFactory, bedrock_upstream: BedrockUpstream, bedrock_upstream_url: str
) -> None:
    gateway = make_gateway(_env(bedrock_upstream_url))
    client = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    body = _golden()
    body["model"] = "bedrock/us." + CLAUDE
    first = client.messages.with_raw_response.create(**body)
    assert "cache_control" not in first.headers.get("x-mini-llm-dropped", "")
    message = first.parse()
    sent = bedrock_upstream.requests[-1].body
    assert [(where, at) for where, at, _ in _points(sent)] == [
        ("toolConfig.tools", 2),
        ("system", 2),
        ("messages.1.content", 2),
        ("messages.2.content", 1),
    ]
    written = message.usage.cache_creation_input_tokens
    assert written and written > 0 and message.usage.cache_read_input_tokens == 0
    assert message.usage.input_tokens == mock.USAGE["inputTokens"]
    # the same prefix again, streamed: read from the cache, reported in message_delta's usage
    with client.messages.stream(**body) as stream:
        again = stream.get_final_message()
    assert again.usage.cache_read_input_tokens == written
    assert again.usage.cache_creation_input_tokens == 0
    assert bedrock_upstream.refused == 0


def test_openai_client_breakpoints_reach_bedrock_and_cached_tokens_come_back(
    make_gateway: GatewayFactory, bedrock_upstream: BedrockUpstream, bedrock_upstream_url: str
) -> None:
    gateway = make_gateway(_env(bedrock_upstream_url))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    long_text = "The house style, at length. " * 40
    messages: Any = [
        {
            "role": "system",
            "content": [{"type": "text", "text": long_text, "cache_control": EPHEMERAL}],
        },
        {"role": "user", "content": "hello"},
    ]
    answers = [
        client.chat.completions.create(model="bedrock/" + CLAUDE, messages=messages)
        for _ in range(2)
    ]
    system = bedrock_upstream.requests[-1].body["system"]
    assert system == [{"text": long_text}, {"cachePoint": {"type": "default"}}]
    first, second = (answer.usage for answer in answers)
    assert first is not None and second is not None
    assert first.prompt_tokens_details is not None and second.prompt_tokens_details is not None
    assert first.prompt_tokens_details.cached_tokens == 0
    assert (
        second.prompt_tokens_details.cached_tokens
        == len(json.dumps([[], [{"text": long_text}]])) // 4
    )
    assert (
        second.prompt_tokens
        == mock.USAGE["inputTokens"] + second.prompt_tokens_details.cached_tokens
    )


def test_mock_bedrock_refuses_cache_points_converse_would() -> None:
    point = {"cachePoint": {"type": "default"}}
    body: dict[str, Any] = {"messages": [{"role": "user", "content": [{"text": "x"}, point] * 5}]}
    assert "exceeds the maximum allowed (4)" in str(mock.cache_problem(body))
    body = {
        "messages": [
            {"role": "user", "content": [{"text": "x"}, {"cachePoint": {"type": "ephemeral"}}]}
        ]
    }
    assert "[default]" in str(mock.cache_problem(body))
    body = {
        "system": [{"text": "s"}, {"cachePoint": {"type": "default"}}],
        "messages": [
            {
                "role": "user",
                "content": [{"text": "x"}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
            }
        ],
    }
    assert "longer TTL" in str(mock.cache_problem(body))
    body["messages"][0]["content"][1]["cachePoint"]["ttl"] = "5m"
    assert mock.cache_problem(body) is None


def test_an_openai_model_gets_no_breakpoint_and_the_client_is_told(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        {"OPENAI_BASE_URL": openai_upstream_url, "OPENAI_API_KEY": "sk-test-aaaa"}
    )
    client = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    body = _golden()
    body["model"] = "openai/gpt-4o"
    raw = client.messages.with_raw_response.create(**body)
    assert raw.headers["x-mini-llm-dropped"] == "cache_control"
    assert raw.parse().content
    sent = openai_upstream.requests[-1].body
    assert _marks(sent) == 0
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool", "user"]
