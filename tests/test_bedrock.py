"""Bedrock: canonical <-> Converse (golden fixtures from the Converse API reference's shapes),
the binary event stream, and the gateway against the mock Bedrock (every signature checked by
botocore)."""

from __future__ import annotations

import json
import struct
from typing import Any

import anthropic
import openai
import pytest

from mini_llm.config import load_settings
from mini_llm.errors import RateLimitError, UpstreamError
from mini_llm.providers.base import UpstreamModel
from mini_llm.providers.bedrock import BedrockConverse, to_converse_request
from mini_llm.providers.bedrock_answer import (
    ConverseStreamDecoder,
    EventStreamFraming,
    bedrock_error_info,
    parse_converse_response,
)
from mini_llm.providers.eventstream import EventStreamParser, encode_message

from .conftest import GatewayFactory
from .fixture_files import load_bytes, load_json
from .upstreams import bedrock_upstream as mock
from .upstreams.bedrock_upstream import BedrockUpstream

CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEA"
    "wS2OUAAAAABJRU5ErkJggg=="
)


def test_request_golden() -> None:
    canonical = load_json("bedrock", "request_full.canonical.json")
    assert to_converse_request(canonical, CLAUDE) == load_json(
        "bedrock", "request_full.converse.json"
    )


def test_thinking_json_mode_and_refusals() -> None:
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": "think"}],
        "reasoning_effort": "medium",
        "max_tokens": 1000,
    }
    out = to_converse_request(body, "us." + CLAUDE)
    assert out["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 4096}
    }
    assert out["inferenceConfig"] == {"maxTokens": 5096}
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    json_mode = to_converse_request(
        {
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
        },
        "amazon.nova-pro-v1:0",
    )
    (tool,) = json_mode["toolConfig"]["tools"]
    assert tool["toolSpec"]["inputSchema"] == {"json": schema}
    assert json_mode["toolConfig"]["toolChoice"] == {"tool": {"name": tool["toolSpec"]["name"]}}
    url_image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}
    with pytest.raises(Exception, match="s3://"):
        to_converse_request({"messages": [{"role": "user", "content": [url_image]}]}, CLAUDE)
    s3 = {"type": "image_url", "image_url": {"url": "s3://bucket/cat.jpg"}}
    out = to_converse_request({"messages": [{"role": "user", "content": [s3]}]}, CLAUDE)
    image = out["messages"][0]["content"][0]["image"]
    assert image == {"format": "jpeg", "source": {"s3Location": {"uri": "s3://bucket/cat.jpg"}}}


def test_url_percent_encodes_the_model_id() -> None:
    to = UpstreamModel("bedrock", "https://bedrock-runtime.eu-west-1.amazonaws.com", "", {})
    endpoint = BedrockConverse()
    for model, path in [
        (CLAUDE, "anthropic.claude-sonnet-4-5-20250929-v1%3A0"),
        ("global." + CLAUDE, "global.anthropic.claude-sonnet-4-5-20250929-v1%3A0"),
        (
            "arn:aws:bedrock:us-east-1:1:inference-profile/x",
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fx",
        ),
    ]:
        at = UpstreamModel(to.provider, to.base_url, model, {})
        request = endpoint.request(at, {"messages": []}, False, True)
        assert request.url == f"{to.base_url}/model/{path}/converse-stream"
        assert request.headers["Accept"] == "application/vnd.amazon.eventstream"


def test_response_golden() -> None:
    answer = parse_converse_response(load_bytes("bedrock", "response_tool_use.json"))
    (choice,) = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] == "Let me check the weather."
    assert message["tool_calls"] == [
        {
            "id": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q",
            "type": "function",
            "function": {"name": "top_song", "arguments": '{"sign":"WZPZ"}'},
        }
    ]
    assert message["thinking_blocks"] == [
        {
            "type": "thinking",
            "thinking": "The user wants the weather.",
            "signature": "EqQBCkgIARABGAIiQ",
        }
    ]
    assert answer["usage"] == {
        "prompt_tokens": 1375,
        "completion_tokens": 69,
        "total_tokens": 1444,
        "prompt_tokens_details": {"cached_tokens": 1000},
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 0,
    }
    info = bedrock_error_info(400, load_bytes("bedrock", "error_validation.json"))
    assert info.message == "The provided model identifier is invalid."


def _frames(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        encode_message(
            {
                ":event-type": e["event"],
                ":content-type": "application/json",
                ":message-type": "event",
            },
            json.dumps(e["payload"]).encode(),
        )
        for e in events
    )


def test_stream_golden_split_anywhere() -> None:
    data = _frames(load_json("bedrock", "stream_text_tool.events.json"))
    for size in (1, 7, 64, len(data)):
        decoder = ConverseStreamDecoder()
        chunks: list[dict[str, Any]] = []
        for i in range(0, len(data), size):
            chunks += decoder.feed(data[i : i + size])
        chunks += decoder.finish()
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
        assert text == "Checking now."
        calls = [
            d
            for c in chunks
            if c["choices"]
            for d in c["choices"][0]["delta"].get("tool_calls") or ()
        ]
        assert calls[0]["id"] == "tooluse_abc" and calls[0]["function"]["name"] == "top_song"
        assert "".join(d["function"]["arguments"] for d in calls) == '{"sign": "WZPZ"}'
        finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finishes[-1] == "tool_calls"
        assert chunks[-1]["usage"]["prompt_tokens"] == 720
        assert chunks[-1]["usage"]["cache_creation_input_tokens"] == 300


def test_framing_cuts_whole_frames() -> None:
    data = _frames(load_json("bedrock", "stream_text_tool.events.json")[:3])
    first = struct.unpack(">I", data[:4])[0]
    framing = EventStreamFraming()
    assert framing.cut(data) == len(data)
    assert framing.cut(data[: first + 5]) == first
    assert framing.cut(data[:3]) == 0


def test_event_stream_checks() -> None:
    frame = encode_message({":event-type": "messageStart"}, b'{"role":"assistant"}')
    (message,) = EventStreamParser().feed(frame)
    assert message.headers[":event-type"] == "messageStart"
    bad_prelude = frame[:8] + bytes([frame[8] ^ 1]) + frame[9:]
    with pytest.raises(UpstreamError, match="prelude CRC"):
        EventStreamParser().feed(bad_prelude)
    bad_body = frame[:20] + bytes([frame[20] ^ 1]) + frame[21:]
    with pytest.raises(UpstreamError, match="message CRC"):
        EventStreamParser().feed(bad_body)
    truncated = ConverseStreamDecoder()
    truncated.feed(frame + frame[:10])
    with pytest.raises(UpstreamError, match="ended before"):
        truncated.finish()


def test_exception_frames_fail_the_stream_after_what_came_before() -> None:
    decoder = ConverseStreamDecoder()
    start = encode_message({":event-type": "messageStart", ":message-type": "event"}, b"{}")
    throttled = mock.exception("throttlingException", "Too many requests, please wait.")
    chunks = decoder.feed(start + throttled)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    with pytest.raises(RateLimitError, match="Too many requests"):
        decoder.feed(b"")


# the gateway against the mock ---------------------------------------------------------------


def _env(url: str, **extra: str) -> dict[str, str]:
    return {
        "AWS_REGION": mock.REGION,
        "AWS_ACCESS_KEY_ID": mock.ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": mock.SECRET_KEY,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
        "MINI_LLM_RETRY_ATTEMPTS": "2",
        "MINI_LLM_RETRY_BACKOFF": "0.01",
        **extra,
    }


def test_preset_from_the_environment_alone() -> None:
    settings = load_settings(
        env={
            "AWS_DEFAULT_REGION": "eu-central-1",
            "AWS_ACCESS_KEY_ID": "AKID",
            "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
            "AWS_SESSION_TOKEN": "session-token-value",
        }
    )
    bedrock = settings.providers["bedrock"]
    assert bedrock.base_url == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert bedrock.usable and bedrock.explicit
    (credential,) = bedrock.credentials
    assert credential.fields == {
        "access_key_id": "AKID",
        "secret_access_key": "s3cr3t-value",
        "session_token": "session-token-value",
    }
    assert "session-token-value" in settings.secrets()
    assert "AKID" not in repr(credential)
    assert not load_settings(env={}).providers["bedrock"].usable


def test_signed_requests_reach_bedrock(
    make_gateway: GatewayFactory, bedrock_upstream: BedrockUpstream, bedrock_upstream_url: str
) -> None:
    gateway = make_gateway(_env(bedrock_upstream_url))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    model = "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    content: Any = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": PNG}},
    ]
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}]
    )
    assert answer.choices[0].message.content == "look <1 image(s): image/png>"
    assert answer.usage is not None and answer.usage.prompt_tokens == 15
    (request,) = bedrock_upstream.requests
    assert request.path == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    assert bedrock_upstream.refused == 0


def test_a_retry_is_signed_afresh(
    make_gateway: GatewayFactory, bedrock_upstream: BedrockUpstream, bedrock_upstream_url: str
) -> None:
    async def unavailable(request: Any, body: dict[str, Any]) -> Any:
        return mock.error_response(503, "Bedrock is unable to process your request.")

    bedrock_upstream.push(unavailable)
    gateway = make_gateway(_env(bedrock_upstream_url, AWS_SESSION_TOKEN="FwoGZXIvYXdzEXAMPLE"))
    client = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    bedrock_upstream.keys = {mock.ACCESS_KEY: mock.SECRET_KEY}
    with client.messages.stream(
        model="bedrock/eu.anthropic.claude-sonnet-4-5-20250929-v1:0",
        max_tokens=100,
        messages=[{"role": "user", "content": "stream please"}],
    ) as stream:
        message = stream.get_final_message()
    assert "".join(b.text for b in message.content if b.type == "text") == "stream please"
    assert message.usage.input_tokens == 12 and message.usage.cache_read_input_tokens == 3
    first, retry = bedrock_upstream.requests
    assert bedrock_upstream.refused == 0  # both attempts passed botocore's check
    assert first.headers["Authorization"] != "" and retry.headers["X-Amz-Security-Token"]


def test_a_wrong_secret_is_refused_as_aws_does(
    make_gateway: GatewayFactory, bedrock_upstream: BedrockUpstream, bedrock_upstream_url: str
) -> None:
    gateway = make_gateway(_env(bedrock_upstream_url, AWS_SECRET_ACCESS_KEY="not-the-secret"))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError, match="signature we calculated"):
        client.chat.completions.create(
            model="bedrock/amazon.nova-pro-v1:0", messages=[{"role": "user", "content": "hi"}]
        )
    assert bedrock_upstream.refused == 1


def test_bedrock_api_keys(
    make_gateway: GatewayFactory, bedrock_upstream: BedrockUpstream, bedrock_upstream_url: str
) -> None:
    env = {
        "AWS_REGION": mock.REGION,
        "AWS_BEARER_TOKEN_BEDROCK": mock.BEARER,
        "BEDROCK_BASE_URL": bedrock_upstream_url,
    }
    gateway = make_gateway(env)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(
        model="bedrock/amazon.nova-pro-v1:0", messages=[{"role": "user", "content": "keyed"}]
    )
    assert answer.choices[0].message.content == "keyed"
    assert bedrock_upstream.requests[0].headers["Authorization"] == "Bearer " + mock.BEARER
