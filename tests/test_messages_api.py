"""Today's Messages API on /v1/messages: every request feature accepted; passed through to
Anthropic untouched; translated for other providers where they can take it, and dropped by
name (`x-mini-llm-dropped`) where they cannot; what agents depend on kept faithful (system
turns in place, effort, streamed tool calls, prompt-cache usage). And the mock Anthropic
upstream refuses what the real API refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from mini_llm.dialects.anthropic.request import dropped_fields, to_canonical_request
from mini_llm.schema.anthropic import validate_messages_request
from mini_llm.sse import SSEParser

from .conftest import GatewayFactory
from .fixture_files import load_json
from .harness import RunningApp, http
from .upstreams import openai_upstream as up
from .upstreams.anthropic_upstream import AnthropicUpstream, sign
from .upstreams.gemini_upstream import GeminiUpstream, response_json
from .upstreams.openai_upstream import OpenAIUpstream

CLAUDE_CODE_BETAS = "claude-code-20250219,context-management-2025-06-27,effort-2025-11-24"


def _canonical(body: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    dropped: list[str] = []
    canonical = to_canonical_request(validate_messages_request(body), dropped, body)
    dropped_fields(body, dropped)
    return canonical, dropped


def test_today_request_translates_to_the_golden_canonical_form() -> None:
    canonical, dropped = _canonical(load_json("anthropic", "request_today.json"))
    golden = load_json("anthropic", "request_today.canonical.json")
    assert canonical == golden["canonical"]
    assert dropped == golden["dropped"]


@pytest.mark.parametrize(
    ("thinking", "effort", "expected"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 5000}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 31999}, None, "high"),
        ({"type": "enabled", "budget_tokens": 31999}, "low", "low"),  # effort says more
        ({"type": "adaptive"}, None, None),  # the target's default
        ({"type": "adaptive"}, "medium", "medium"),
        ({"type": "adaptive", "display": "summarized"}, "max", "high"),
        ({"type": "between_tools"}, None, None),
        ({"type": "disabled"}, "high", None),
        (None, "low", "low"),
    ],
)
def test_thinking_and_effort_become_reasoning_effort(
    thinking: dict[str, Any] | None, effort: str | None, expected: str | None
) -> None:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "x"}],
    }
    if thinking is not None:
        body["thinking"] = thinking
    if effort is not None:
        body["output_config"] = {"effort": effort}
    canonical, dropped = _canonical(body)
    assert canonical.get("reasoning_effort") == expected
    assert dropped == []


def test_thinking_that_cannot_be_carried_is_named() -> None:
    body = {
        "model": "m",
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "x"}],
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "ludicrous", "format": {"type": "grammar"}},
    }
    canonical, dropped = _canonical(body)
    assert "reasoning_effort" not in canonical and "response_format" not in canonical
    assert dropped == ["output_config.effort", "thinking.display", "output_config.format"]


# Through the gateway ---------------------------------------------------------------------------


@pytest.fixture
def gateway(
    make_gateway: GatewayFactory,
    openai_upstream_url: str,
    anthropic_upstream_url: str,
    gemini_upstream_url: str,
) -> RunningApp:
    return make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-messages-openai-1111",
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-messages-3333",
            "GEMINI_BASE_URL": gemini_upstream_url,
            "GEMINI_API_KEY": "gemini-messages-4444",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
        }
    )


def post(
    gateway: RunningApp, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, str], bytes]:
    return http(
        "POST",
        gateway.url + "/v1/messages?beta=true",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", "anthropic-version": "2023-06-01", **headers},
    )


def events(data: bytes) -> list[dict[str, Any]]:
    parser = SSEParser()
    return [json.loads(e.data) for e in parser.feed(data) + parser.flush() if e.data]


def claude_code_like(model: str, stream: bool = False) -> dict[str, Any]:
    """What Claude Code 2.1 sends a model it does not know (trimmed)."""
    return {
        "model": model,
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            {
                "type": "text",
                "text": "You are a Claude agent.",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            },
            {"role": "system", "content": "Available agent types: claude."},
        ],
        "metadata": {"user_id": '{"device_id":"d1"}'},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
    }


def test_claude_code_request_reaches_an_openai_model_with_its_system_turn_in_place(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    status, headers, data = post(gateway, claude_code_like("openai/o3-mini"))
    assert status == 200, data
    sent = openai_upstream.requests[-1].body
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "system"]
    assert sent["messages"][2]["content"] == "Available agent types: claude."
    assert sent["reasoning_effort"] == "high"
    assert "thinking" not in sent and "context_management" not in sent
    assert headers["x-mini-llm-dropped"] == "context_management,cache_control"
    assert json.loads(data)["content"][0]["text"] == "hi"
    # a model that refuses reasoning_effort does not get it, and the client is told
    status, headers, data = post(gateway, claude_code_like("openai/gpt-4o-mini"))
    assert status == 200, data
    assert "reasoning_effort" not in openai_upstream.requests[-1].body
    assert headers["x-mini-llm-dropped"] == "context_management,cache_control,reasoning_effort"


def test_dropped_fields_are_named_on_a_stream_too(
    gateway: RunningApp, gemini_upstream: GeminiUpstream
) -> None:
    body = claude_code_like("gemini/gemini-2.5-flash", stream=True)
    body["container"] = "container_1"
    body["mcp_servers"] = [{"type": "url", "url": "https://mcp.example.com", "name": "x"}]
    status, headers, data = post(gateway, body)
    assert status == 200, data
    assert headers["x-mini-llm-dropped"] == "context_management,container,mcp_servers,cache_control"
    sent = gemini_upstream.requests[-1].body
    assert "French" not in json.dumps(sent)  # nothing invented
    assert "Available agent types" in json.dumps(sent["systemInstruction"])
    assert events(data)[-1] == {"type": "message_stop"}


def test_pass_through_to_anthropic_keeps_every_field_and_drops_nothing(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream
) -> None:
    body = claude_code_like("anthropic/claude-opus-4-5")
    status, headers, data = post(gateway, body, **{"anthropic-beta": CLAUDE_CODE_BETAS})
    assert status == 200, data
    sent = anthropic_upstream.requests[-1]
    assert sent.body == {**body, "model": "claude-opus-4-5"}
    assert sent.headers["anthropic-beta"] == CLAUDE_CODE_BETAS
    assert "x-mini-llm-dropped" not in headers


def test_the_full_today_request_is_never_a_400_anywhere(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream
) -> None:
    body = load_json("anthropic", "request_today.json")
    body["stream"] = False
    for model in ("openai/gpt-4o", "gemini/gemini-2.5-flash"):
        body["model"] = model
        status, headers, data = post(gateway, body)
        assert status == 200, (model, data)
        assert "tools.web_search_20250305" in headers["x-mini-llm-dropped"].split(",")


async def _cached_openai(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 7,
        "total_tokens": 1007,
        "prompt_tokens_details": {"cached_tokens": 900},
    }
    if body.get("stream"):
        chunks = [up.chunk_json(body, {"role": "assistant", "content": "ok"}, None)]
        chunks.append(up.chunk_json(body, {}, "stop"))
        last = up.chunk_json(body, {}, None)
        last["choices"], last["usage"] = [], usage
        chunks.append(last)
        return await up.send_stream(request, [*map(up.sse, chunks), b"data: [DONE]\n\n"])
    return web.json_response(up.completion_json(body, "ok", usage=usage))


@pytest.mark.parametrize("stream", [False, True])
def test_openai_cached_tokens_are_reported_as_cache_reads(
    gateway: RunningApp, openai_upstream: OpenAIUpstream, stream: bool
) -> None:
    openai_upstream.push(_cached_openai)
    status, _, data = post(gateway, claude_code_like("openai/gpt-4o-mini", stream=stream))
    assert status == 200, data
    if stream:
        usage = next(e for e in events(data) if e["type"] == "message_delta")["usage"]
    else:
        usage = json.loads(data)["usage"]
    assert usage["cache_read_input_tokens"] == 900
    assert usage["input_tokens"] == 100
    assert usage["cache_creation_input_tokens"] == 0


def test_gemini_cached_tokens_are_reported_as_cache_reads(
    gateway: RunningApp, gemini_upstream: GeminiUpstream
) -> None:
    async def cached(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        answer = response_json("gemini-2.5-flash", [{"text": "ok"}], "STOP", True)
        answer["usageMetadata"] = {
            "promptTokenCount": 500,
            "candidatesTokenCount": 3,
            "cachedContentTokenCount": 400,
            "totalTokenCount": 503,
        }
        return web.json_response(answer)

    gemini_upstream.push(cached)
    status, _, data = post(gateway, claude_code_like("gemini/gemini-2.5-flash"))
    assert status == 200, data
    usage = json.loads(data)["usage"]
    assert (usage["cache_read_input_tokens"], usage["input_tokens"]) == (400, 100)


def test_streamed_tool_use_from_an_openai_model(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    body = claude_code_like("openai/agent-reader", stream=True)
    body["messages"][0]["content"][0]["text"] = "Read /repo/notes.txt"
    body["tools"] = [
        {
            "name": "Read",
            "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
        }
    ]
    status, _, data = post(gateway, body)
    assert status == 200, data
    got = events(data)
    starts = [e for e in got if e["type"] == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["tool_use"]
    index = starts[0]["index"]
    partial = "".join(
        e["delta"]["partial_json"]
        for e in got
        if e["type"] == "content_block_delta" and e["index"] == index
    )
    assert json.loads(partial) == {"file_path": "/repo/notes.txt"}
    assert len([e for e in got if e["type"] == "content_block_delta"]) > 1  # streamed, in order
    delta = next(e for e in got if e["type"] == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"


# The mock Anthropic upstream refuses what the real API refuses --------------------------------


def _anthropic(model: str = "anthropic/claude-sonnet-4-5", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 2000,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


def test_mock_anthropic_refuses_a_changed_thinking_signature(gateway: RunningApp) -> None:
    thought = "Read it first."
    tool_loop: list[dict[str, Any]] = [
        {"role": "user", "content": "Read /r/a.txt"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": thought, "signature": sign(thought)},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "Read",
                    "input": {"file_path": "/r/a.txt"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x"}],
        },
    ]
    thinking = {"type": "enabled", "budget_tokens": 1024}
    status, _, data = post(gateway, _anthropic(messages=tool_loop, thinking=thinking))
    assert status == 200, data
    tool_loop[1]["content"][0]["thinking"] = "Something else."
    status, _, data = post(gateway, _anthropic(messages=tool_loop, thinking=thinking))
    assert status == 400 and b"signature" in data
    del tool_loop[1]["content"][0]
    status, _, data = post(gateway, _anthropic(messages=tool_loop, thinking=thinking))
    assert status == 400 and b"must start with a thinking block" in data


def test_mock_anthropic_refuses_a_fifth_cache_breakpoint(gateway: RunningApp) -> None:
    marked = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    body = _anthropic(system=[marked] * 4)
    assert post(gateway, body)[0] == 200
    body["messages"][0]["content"] = [marked]
    status, _, data = post(gateway, body)
    assert status == 400 and b"A maximum of 4 blocks with cache_control" in data


def test_mock_anthropic_refuses_beta_fields_without_their_beta(gateway: RunningApp) -> None:
    body = _anthropic(context_management={"edits": []}, output_config={"effort": "low"})
    status, _, data = post(gateway, body)
    assert status == 400 and b"context-management-2025-06-27" in data
    status, _, data = post(gateway, body, **{"anthropic-beta": CLAUDE_CODE_BETAS})
    assert status == 200, data


def test_effort_does_not_reach_an_openai_model_that_refuses_it() -> None:
    from mini_llm.formats import CHAT
    from mini_llm.providers.base import UpstreamModel
    from mini_llm.providers.openai import OPENAI_WIRE

    endpoint = OPENAI_WIRE.endpoints[CHAT]
    canonical = {"model": "x", "messages": [], "reasoning_effort": "high"}
    for model, kept in (("gpt-4o-mini", False), ("gpt-4.1", False), ("o3-mini", True)):
        to = UpstreamModel("openai", "http://127.0.0.1:9/v1", model, {})
        sent = json.loads(endpoint.request(to, canonical, False, False).body)
        assert ("reasoning_effort" in sent) is kept, model
    assert canonical["reasoning_effort"] == "high"  # the shared canonical form is untouched
    # a client's own OpenAI body passes through as it is, whatever it holds
    to = UpstreamModel("openai", "http://127.0.0.1:9/v1", "gpt-4o-mini", {})
    native = json.loads(endpoint.request(to, dict(canonical), True, False).body)
    assert native["reasoning_effort"] == "high"
