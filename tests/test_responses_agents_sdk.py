"""The OpenAI Agents SDK as a user runs it, against the gateway: its default model speaks the
Responses API. An agent with one function tool runs its loop (call the tool, send the output
back, answer) through a translated provider (`mock/tools`, and Anthropic's wire) and through
pass-through to an OpenAI upstream, streamed and not."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from .conftest import GatewayFactory
from .harness import RunningApp
from .upstreams.anthropic_upstream import AnthropicUpstream
from .upstreams.openai_upstream import OpenAIUpstream

agents = pytest.importorskip("agents", reason="openai-agents is in the test extra")


@pytest.fixture
def gateway(
    make_gateway: GatewayFactory, openai_upstream_url: str, anthropic_upstream_url: str
) -> RunningApp:
    return make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-agents-openai-1111",
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-agents-3333",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
        }
    )


def _run(gateway: RunningApp, model: str, prompt: str, stream: bool) -> tuple[Any, list[str]]:
    from openai import AsyncOpenAI

    seen: list[str] = []

    def get_weather(city: str) -> str:
        """Current weather for a city."""
        seen.append(city)
        return f"{city}: 18C sunny"

    tool = agents.function_tool(get_weather)

    async def main() -> Any:
        client = AsyncOpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0)
        try:
            model_ = agents.OpenAIResponsesModel(model=model, openai_client=client)
            agent = agents.Agent(
                name="weather", instructions="Use the tool.", tools=[tool], model=model_
            )
            config = agents.RunConfig(tracing_disabled=True)
            if stream:
                result = agents.Runner.run_streamed(agent, prompt, run_config=config, max_turns=4)
                async for _ in result.stream_events():
                    pass
                return result
            return await agents.Runner.run(agent, prompt, run_config=config, max_turns=4)
        finally:
            await client.close()

    return asyncio.run(asyncio.wait_for(main(), 30)), seen


@pytest.mark.parametrize("stream", [False, True])
def test_agent_tool_loop_through_a_translated_provider(gateway: RunningApp, stream: bool) -> None:
    result, seen = _run(gateway, "mock/tools", "weather in Paris?", stream)
    assert len(seen) == 1  # mock/tools calls the tool once, then answers with its output
    assert "18C sunny" in str(result.final_output)


@pytest.mark.parametrize("stream", [False, True])
def test_agent_tool_loop_through_anthropic(
    gateway: RunningApp, anthropic_upstream: AnthropicUpstream, stream: bool
) -> None:
    result, seen = _run(gateway, "anthropic/claude-sonnet-4-5", "weather in Paris?", stream)
    assert seen == ["Paris"]
    assert result.final_output == "tool said: Paris: 18C sunny"
    # the second turn carried the tool call and its result, in Anthropic's blocks
    turn = anthropic_upstream.requests[-1].body["messages"]
    assert [b["type"] for b in turn[-1]["content"]] == ["tool_result"]


def test_agent_tool_loop_passed_through_to_openai(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    result, seen = _run(gateway, "openai/gpt-4o-mini", "weather in Paris?", False)
    assert seen == ["Paris"]
    assert result.final_output == "tool said: Paris: 18C sunny"
    paths = [r.path for r in openai_upstream.requests]
    assert paths == ["/v1/responses", "/v1/responses"]
    sent = openai_upstream.requests[-1].body
    assert any(item.get("type") == "function_call_output" for item in sent["input"]), json.dumps(
        sent
    )
