"""The policy seam: usage reaches policies on every path, a policy can answer at once, and the
client's own stream is unchanged when the gateway asked upstream for usage it did not ask for."""

from __future__ import annotations

import json
import logging
from typing import Any

import anthropic
import openai
import pytest

from mini_llm.canonical import Usage, estimate_tokens
from mini_llm.gateway.app import GATEWAY
from mini_llm.policies import PolicyChain, RequestInfo

from .conftest import GatewayFactory
from .harness import RunningApp, http


class Recording:
    wants_usage = True

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.seen: list[RequestInfo] = []
        self.answer = answer

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        return self.answer

    def after(self, info: RequestInfo) -> None:
        self.seen.append(info)


def _install(gateway: RunningApp, policy: Recording) -> None:
    gateway.app[GATEWAY].pipeline.runtime.policies = PolicyChain([policy])


def _expected(prompt: str) -> Usage:
    # what the mock provider reports: ~4 characters a token, the answer echoes the prompt
    return Usage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(prompt))


@pytest.fixture
def mock_gateway(make_gateway: GatewayFactory) -> RunningApp:
    return make_gateway({})


def test_usage_on_every_path(mock_gateway: RunningApp) -> None:
    policy = Recording()
    _install(mock_gateway, policy)
    oa = openai.OpenAI(base_url=mock_gateway.url + "/v1", api_key="x", max_retries=0)
    an = anthropic.Anthropic(base_url=mock_gateway.url, api_key="x", max_retries=0)
    prompt = "count these words please"
    messages: Any = [{"role": "user", "content": prompt}]

    oa.chat.completions.create(model="mock/echo", messages=messages)  # pass-through, whole
    chunks = list(oa.chat.completions.create(model="mock/echo", messages=messages, stream=True))
    assert all(c.usage is None for c in chunks)  # asked upstream, not shown to the client
    assert all(c.choices for c in chunks)  # and no usage-only chunk either
    with_usage = list(
        oa.chat.completions.create(
            model="mock/echo",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].usage is not None
    an.messages.create(model="mock/echo", max_tokens=50, messages=messages)  # translated
    with an.messages.stream(model="mock/echo", max_tokens=50, messages=messages) as stream:
        stream.get_final_message()
    oa.close()
    an.close()

    assert len(policy.seen) == 5
    for info in policy.seen:
        assert info.status == 200
        assert info.target is not None and info.target.label == "mock/echo"
        assert info.usage == _expected(prompt), info.endpoint
    assert [i.endpoint for i in policy.seen] == [
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/messages",
    ]


def test_errors_reach_policies_too(mock_gateway: RunningApp) -> None:
    policy = Recording()
    _install(mock_gateway, policy)
    body = {"model": "mock/error-429", "messages": [{"role": "user", "content": "x"}]}
    status, _, _ = http(
        "POST", mock_gateway.url + "/v1/chat/completions", json.dumps(body).encode()
    )
    assert status == 429
    (info,) = policy.seen
    assert (info.status, info.error_code, info.usage) == (429, "mock_429", None)


ANSWER = {
    "id": "chatcmpl-policy",
    "object": "chat.completion",
    "created": 1,
    "model": "mock/echo",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "from the policy"},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
}


def test_a_policy_can_answer_at_once_in_every_dialect_and_mode(mock_gateway: RunningApp) -> None:
    _install(mock_gateway, Recording(ANSWER))
    oa = openai.OpenAI(base_url=mock_gateway.url + "/v1", api_key="x", max_retries=0)
    an = anthropic.Anthropic(base_url=mock_gateway.url, api_key="x", max_retries=0)
    messages: Any = [{"role": "user", "content": "anything"}]
    reply = oa.chat.completions.create(model="mock/echo", messages=messages)
    assert reply.choices[0].message.content == "from the policy"
    text = "".join(
        c.choices[0].delta.content or ""
        for c in oa.chat.completions.create(model="mock/echo", messages=messages, stream=True)
        if c.choices
    )
    assert text == "from the policy"
    message = an.messages.create(model="mock/echo", max_tokens=9, messages=messages)
    assert message.content[0].type == "text" and message.content[0].text == "from the policy"
    assert message.usage.output_tokens == 4
    with an.messages.stream(model="mock/echo", max_tokens=9, messages=messages) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "from the policy"
    assert final.stop_reason == "end_turn"
    oa.close()
    an.close()


def test_one_log_line_per_request(
    mock_gateway: RunningApp, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("mini_llm")
    propagated = logger.propagate
    logger.propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="mini_llm.requests"):
            rid = "req-log-test-1"
            body = {"model": "mock/echo", "messages": [{"role": "user", "content": "x"}]}
            http(
                "POST",
                mock_gateway.url + "/v1/chat/completions",
                json.dumps(body).encode(),
                {"x-request-id": rid},
            )
            body["model"] = "nowhere/at-all"
            http("POST", mock_gateway.url + "/v1/chat/completions", json.dumps(body).encode())
    finally:
        logger.propagate = propagated
    lines = [r.getMessage() for r in caplog.records if r.name == "mini_llm.requests"]
    assert len(lines) == 2
    assert lines[0].startswith(f"request {rid} /v1/chat/completions model=mock/echo")
    assert "served=mock/echo status=200" in lines[0] and "attempts=1" in lines[0]
    assert "model=nowhere/at-all served=- status=404" in lines[1]
    assert "error=model_not_found" in lines[1]


def test_reload_swaps_the_runtime_and_keeps_key_health(make_gateway: GatewayFactory) -> None:
    from .harness import gateway_settings

    env = {
        "OPENAI_API_KEY": "sk-reload-test-key-0000",
        "MINI_LLM_MODEL_ALIASES": '{"a": "mock/echo"}',
    }
    gateway = make_gateway(env)
    core = gateway.app[GATEWAY]
    before = core.runtime
    entry = next(iter(before.providers["openai"].keys))
    before.providers["openai"].keys.set_aside(entry, 401)
    old_fingerprint = core.fingerprint

    core.reload(gateway_settings({**env, "MINI_LLM_MODEL_ALIASES": '{"b": "mock/echo"}'}))
    after = core.runtime
    assert after is not before and core.fingerprint != old_fingerprint
    # the same key keeps its health in the new runtime
    (same,) = list(after.providers["openai"].keys)
    assert same is not entry and same.aside.until == entry.aside.until > 0
    body = {"model": "b", "messages": [{"role": "user", "content": "x"}]}
    status, _, _ = http("POST", gateway.url + "/v1/chat/completions", json.dumps(body).encode())
    assert status == 200
    body["model"] = "a"
    status, _, _ = http("POST", gateway.url + "/v1/chat/completions", json.dumps(body).encode())
    assert status == 404
    status, _, data = http("GET", gateway.url + "/health")
    assert json.loads(data)["config_fingerprint"] == core.fingerprint
