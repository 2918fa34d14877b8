"""/v1/messages behaviour beyond the conformance cases: pass-through, keys, count_tokens,
validation, errors in the middle of streams. Real servers on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from .conftest import GatewayFactory
from .harness import RunningApp, http
from .upstreams import anthropic_upstream as aup
from .upstreams.anthropic_upstream import AnthropicUpstream, sign
from .upstreams.gemini_upstream import GeminiUpstream
from .upstreams.scenario import decide

KEY = "sk-ant-gateway-key-9999"


@pytest.fixture
def gateway(
    make_gateway: GatewayFactory, anthropic_upstream_url: str, gemini_upstream_url: str
) -> RunningApp:
    return make_gateway(
        {
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": KEY,
            "GEMINI_BASE_URL": gemini_upstream_url,
            "GEMINI_API_KEY": "gemini-gateway-key-8888",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
        }
    )


def post(gateway: RunningApp, path: str, body: object, **headers: str) -> tuple[int, bytes]:
    status, _, data = http(
        "POST",
        gateway.url + path,
        json.dumps(body).encode(),
        {"Content-Type": "application/json", **headers},
    )
    return status, data


def test_pass_through_is_byte_for_byte_and_uses_gateway_key(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream
) -> None:
    body = {
        "model": "anthropic/claude-sonnet-4-5",
        "max_tokens": 20,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
            }
        ],
        "some_future_field": {"kept": True},
    }
    status, data = post(gateway, "/v1/messages", body, **{"x-api-key": "client-key"})
    assert status == 200
    expected = aup.message_json({**body, "model": "claude-sonnet-4-5"}, decide(aup.ask_of(body)))
    # the answer names the model the client asked for (what Claude Code checks for its
    # thinking blocks); everything else is the upstream's, unchanged
    assert json.loads(data) == {**expected, "model": "anthropic/claude-sonnet-4-5"}
    (seen,) = anthropic_upstream.requests
    assert seen.body == {**body, "model": "claude-sonnet-4-5"}  # unknown fields travel untouched
    assert seen.headers["x-api-key"] == KEY
    assert seen.headers["anthropic-version"] == "2023-06-01"


def test_pass_through_stream_bytes_untouched(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream
) -> None:
    body = {
        "model": "claude-sonnet-4-5",  # a bare claude* name is detected as anthropic
        "max_tokens": 20,
        "stream": True,
        "messages": [{"role": "user", "content": "stream me"}],
    }
    status, data = post(gateway, "/v1/messages", body, Authorization="Bearer client")
    assert status == 200
    assert data == b"".join(aup.stream_events(body, decide(aup.ask_of(body))))


def test_validation_names_the_field_in_anthropic_shape(gateway: RunningApp) -> None:
    bad_block = {  # a translated request: every block is checked (pass-through: by Anthropic)
        "model": "mock/echo",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": [{"type": "picture"}]}],
    }
    status, data = post(gateway, "/v1/messages", bad_block)
    assert status == 400
    error = json.loads(data)
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[0].type" in error["error"]["message"]
    status, data = post(gateway, "/v1/messages", {"model": "mock/echo", "messages": []})
    assert status == 400
    assert "max_tokens" in json.loads(data)["error"]["message"]


def test_unknown_model_is_anthropic_not_found(gateway: RunningApp) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(
            model="nobody/nothing", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_count_tokens_passes_through_to_anthropic(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream
) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key="client", max_retries=0)
    counted = client.messages.count_tokens(
        model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "hello"}]
    )
    assert counted.input_tokens == 17
    (seen,) = anthropic_upstream.requests
    assert seen.path == "/v1/messages/count_tokens"
    assert seen.body["model"] == "claude-sonnet-4-5"
    assert seen.headers["x-api-key"] == KEY


def test_count_tokens_elsewhere_is_a_labelled_estimate(gateway: RunningApp) -> None:
    body = {"model": "mock/echo", "messages": [{"role": "user", "content": "x" * 400}]}
    status, headers, data = http(
        "POST",
        gateway.url + "/v1/messages/count_tokens",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    answer = json.loads(data)
    assert answer["estimated"] is True
    assert 100 <= answer["input_tokens"] <= 120
    assert headers["x-mini-llm-token-count"] == "estimate"


def test_error_event_mid_stream_reaches_openai_client(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream
) -> None:
    anthropic_upstream.push(aup.error_mid_stream("partial answer"))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    text = []
    with pytest.raises(openai.APIError, match="Overloaded"):
        for chunk in client.chat.completions.create(
            model="anthropic/claude-sonnet-4-5",
            messages=[{"role": "user", "content": "go"}],
            stream=True,
        ):
            text.append(chunk.choices[0].delta.content or "" if chunk.choices else "")
    assert "".join(text).startswith("part")


def test_error_event_mid_stream_reaches_anthropic_client_through_translation(
    gateway: RunningApp, gemini_upstream: GeminiUpstream
) -> None:
    async def broken(request: object, body: object) -> object:
        from aiohttp import web

        assert isinstance(request, web.Request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        part = {"candidates": [{"content": {"role": "model", "parts": [{"text": "par"}]}}]}
        await response.write(b"data: " + json.dumps(part).encode() + b"\r\n\r\n")
        failure = {
            "error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}
        }
        await response.write(b"data: " + json.dumps(failure).encode() + b"\r\n\r\n")
        await response.write_eof()
        return response

    gemini_upstream.push(broken)  # type: ignore[arg-type]
    client = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    with (
        pytest.raises(anthropic.APIError, match="Internal error"),
        client.messages.stream(
            model="gemini/gemini-2.5-flash",
            max_tokens=10,
            messages=[{"role": "user", "content": "go"}],
        ) as stream,
    ):
        for _ in stream:
            pass
    (seen,) = gemini_upstream.requests
    assert seen.path.endswith(":streamGenerateContent?alt=sse")
    assert seen.headers["x-goog-api-key"] == "gemini-gateway-key-8888"


def test_thinking_from_anthropic_reaches_openai_client_and_goes_back(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream
) -> None:
    async def thinker(request: object, body: object) -> object:
        from aiohttp import web

        message = {
            "id": "msg_t",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": sign("hmm")},
                {"type": "text", "text": "42"},
            ],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }
        return web.json_response(message)

    anthropic_upstream.push(thinker)  # type: ignore[arg-type]
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="anthropic/claude-sonnet-4-5",
        messages=[{"role": "user", "content": "think"}],
        reasoning_effort="low",
    )
    message = reply.choices[0].message
    assert message.content == "42"
    extra = message.model_extra or {}
    assert extra["reasoning_content"] == "hmm"
    sent = anthropic_upstream.requests[0].body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    history: list[Any] = [
        {"role": "user", "content": "think"},
        {"role": "assistant", "content": "42", "thinking_blocks": extra["thinking_blocks"]},
        {"role": "user", "content": "again"},
    ]
    client.chat.completions.create(model="anthropic/claude-sonnet-4-5", messages=history)
    again = anthropic_upstream.requests[1].body["messages"][1]["content"]
    # the signed block goes back as it came (the mock, like the API, checks the signature)
    assert again[0] == {"type": "thinking", "thinking": "hmm", "signature": sign("hmm")}


def test_anthropic_beta_and_version_reach_an_anthropic_upstream_only(
    make_gateway: GatewayFactory,
    anthropic_upstream: AnthropicUpstream,
    anthropic_upstream_url: str,
    openai_upstream: Any,
    openai_upstream_url: str,
) -> None:
    gateway = make_gateway(
        {
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": KEY,
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-test-openai-0001",
        }
    )
    client = anthropic.Anthropic(
        base_url=gateway.url,
        api_key="client",
        max_retries=0,
        default_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    client.messages.create(
        model="anthropic/claude-sonnet-4-5",
        max_tokens=20,
        messages=[{"role": "user", "content": "hello"}],
    )
    client.messages.count_tokens(
        model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": "hello"}]
    )
    for seen in anthropic_upstream.requests:
        assert seen.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
        assert seen.headers["anthropic-version"] == client.default_headers["anthropic-version"]
        assert seen.headers["x-api-key"] == KEY
    assert len(anthropic_upstream.requests) == 2
    # translated to another format, the Anthropic headers stay behind
    client.messages.create(
        model="openai/gpt-4o", max_tokens=20, messages=[{"role": "user", "content": "hello"}]
    )
    assert "anthropic-beta" not in openai_upstream.requests[-1].headers


def test_pass_through_takes_block_types_the_gateway_does_not_know(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream
) -> None:
    body = {
        "model": "anthropic/claude-sonnet-4-5",
        "max_tokens": 20,
        "messages": [
            {"role": "user", "content": "run it"},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "future_tool_result_20300101",
                        "tool_use_id": "srvtoolu_1",
                        "content": {"type": "future_result", "stdout": "hi"},
                    },
                ],
            },
            {"role": "user", "content": "and?"},
        ],
    }
    status, _ = post(gateway, "/v1/messages", body)
    assert status == 200
    sent = anthropic_upstream.requests[-1].body
    assert sent["messages"][1]["content"][0]["type"] == "future_tool_result_20300101"
    # a translated request still checks every block: a type nobody defined is a 400
    body["model"] = "gemini/gemini-2.5-flash"
    status, answer = post(gateway, "/v1/messages", body)
    assert status == 400
    assert json.loads(answer)["type"] == "error"


def test_count_tokens_sends_anthropic_only_the_fields_it_takes(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream
) -> None:
    body = {
        "model": "anthropic/claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 10,
        "temperature": 0.3,
        "stream": True,
        "system": "be brief",
    }
    status, _ = post(gateway, "/v1/messages/count_tokens", body)
    assert status == 200
    assert set(anthropic_upstream.requests[-1].body) == {"model", "messages", "system"}


def test_count_tokens_estimate_counts_an_image_as_an_image(gateway: RunningApp) -> None:
    picture = {"type": "base64", "media_type": "image/png", "data": "A" * 400_000}
    body = {
        "model": "gemini/gemini-2.5-flash",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": picture},
                    {"type": "text", "text": "what is it?"},
                ],
            }
        ],
    }
    status, answer = post(gateway, "/v1/messages/count_tokens", body)
    assert status == 200
    counted = json.loads(answer)
    assert counted["estimated"] is True
    assert 1000 < counted["input_tokens"] < 3000  # not 100k for 400 kB of base64
