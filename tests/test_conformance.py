"""One conformance suite: every provider x both client dialects, through real servers.

Providers: `openai` and `groq` (an OpenAI-compatible preset) on the mock OpenAI upstream,
`anthropic` and `gemini` on mock upstreams speaking their real wire formats, the built-in
`mock`, and the clouds: `azure` (deployments, api-key), `bedrock` (Converse, SigV4 checked by
botocore, binary event streams), `vertex-gemini` and `vertex-claude` (one Vertex provider,
OAuth tokens from a service account, a format per publisher). Dialects: the official `openai`
client on /v1/chat/completions and the official `anthropic` client on /v1/messages. The
upstreams answer by `upstreams.scenario`'s rules, so each case states the exact answer every
path must produce.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conformance_drivers import AnthropicDriver, OpenAIDriver, Result, Tool, Turn
from .conftest import GatewayFactory
from .upstreams import azure_upstream, bedrock_upstream
from .upstreams import openai_upstream as up
from .upstreams.anthropic_upstream import AnthropicUpstream
from .upstreams.gemini_upstream import GeminiUpstream
from .upstreams.openai_upstream import OpenAIUpstream
from .upstreams.scenario import decide, openai_ask, openai_reply_body, openai_reply_chunks

PROVIDERS = [
    "openai",
    "groq",
    "anthropic",
    "gemini",
    "mock",
    "azure",
    "bedrock",
    "vertex-gemini",
    "vertex-claude",
]
DIALECTS = ["openai", "anthropic"]
MODELS = {
    "openai": "openai/gpt-4o-mini",
    "groq": "groq/llama-3.3-70b-versatile",
    "anthropic": "anthropic/claude-sonnet-4-5",
    "gemini": "gemini/gemini-2.5-flash",
    "mock": "mock/echo",
    "azure": "azure/gpt-4o",
    "bedrock": "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
    "vertex-gemini": "vertex/gemini-2.5-flash",
    "vertex-claude": "vertex/claude-sonnet-4-5@20250929",
}
ERROR_MODELS = {
    "azure": "azure/error-{status}",
    "bedrock": "bedrock/us.anthropic.error-{status}",
    "vertex-gemini": "vertex/error-{status}",
    "vertex-claude": "vertex/claude-error-{status}",
}
NO_URL_IMAGES = "Converse takes images as bytes or s3:// locations, not https URLs"
AZURE_CONFIG = """
[providers.azure]
deployments = { "gpt-4o" = "my-gpt4o" }
"""
NO_TOOLS = "mock/echo only echoes text: it has no tools, JSON mode, images, system or memory"

WEATHER = Tool(
    "get_weather",
    "Current weather for a city",
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAA"
    "AAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg=="
)
CAT = "https://example.com/cat.jpg"


@dataclass
class Case:
    provider: str
    driver: OpenAIDriver | AnthropicDriver
    openai: OpenAIUpstream
    anthropic: AnthropicUpstream
    gemini: GeminiUpstream

    @property
    def model(self) -> str:
        return MODELS[self.provider]

    def ask(self, turns: list[Turn], **options: Any) -> Result:
        return self.driver.ask(self.model, turns, **options)

    def needs_real_model(self) -> None:
        if self.provider == "mock":
            pytest.skip(NO_TOOLS)

    def error_model(self, status: int) -> str:
        return ERROR_MODELS.get(self.provider, f"{self.provider}/error-{{status}}").format(
            status=status
        )


async def _smart_openai(request: Any, body: dict[str, Any]) -> Any:
    reply = decide(openai_ask(body))
    if body.get("stream"):
        events = [up.sse(c) for c in openai_reply_chunks(body, reply)] + [b"data: [DONE]\n\n"]
        return await up.send_stream(request, events)
    from aiohttp import web

    return web.json_response(openai_reply_body(body, reply))


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def case(
    provider: str,
    dialect: str,
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    anthropic_upstream: AnthropicUpstream,
    anthropic_upstream_url: str,
    gemini_upstream: GeminiUpstream,
    gemini_upstream_url: str,
    azure_upstream_url: str,
    bedrock_upstream_url: str,
    vertex_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Case]:
    openai_upstream.default = _smart_openai
    config = tmp_path / "mini-llm.toml"
    config.write_text(AZURE_CONFIG)
    gateway = make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-conformance-openai-1111",
            "GROQ_BASE_URL": openai_upstream_url,
            "GROQ_API_KEY": "gsk_conformance-groq-2222",
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-conformance-3333",
            "GEMINI_BASE_URL": gemini_upstream_url,
            "GEMINI_API_KEY": "gemini-conformance-4444",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
            "AZURE_OPENAI_ENDPOINT": azure_upstream_url,
            "AZURE_OPENAI_API_KEY": azure_upstream.KEY,
            "AWS_REGION": bedrock_upstream.REGION,
            "AWS_ACCESS_KEY_ID": bedrock_upstream.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": bedrock_upstream.SECRET_KEY,
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock_upstream_url,
            **vertex_env,
        },
        config_path=str(config),
    )
    driver = OpenAIDriver(gateway.url) if dialect == "openai" else AnthropicDriver(gateway.url)
    yield Case(provider, driver, openai_upstream, anthropic_upstream, gemini_upstream)
    openai_upstream.reset()


def test_simple_answer(case: Case) -> None:
    result = case.ask([Turn("user", "hello conformance")])
    assert result.text == "hello conformance"
    assert result.finish == "stop"
    assert result.calls == []


def test_system_prompt(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "hi")], system="Be brief.")
    assert result.text == "[Be brief.] hi"


def test_multi_turn(case: Case) -> None:
    case.needs_real_model()
    turns = [Turn("user", "first"), Turn("assistant", "first reply"), Turn("user", "second")]
    assert case.ask(turns).text == "second (turn 2)"


def test_streaming(case: Case) -> None:
    result = case.ask([Turn("user", "stream this answer please")], stream=True)
    assert result.text == "stream this answer please"
    assert result.text_deltas > 1
    assert result.finish == "stop"


def test_one_tool_call(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "weather in Paris?")], tools=[WEATHER])
    ((ident, name, args),) = result.calls
    assert ident
    assert (name, args) == ("get_weather", {"city": "Paris"})
    assert result.finish == "tool_calls"


def test_parallel_tool_calls(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "parallel weather for two cities")], tools=[WEATHER])
    assert [(n, a) for _, n, a in result.calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert len({ident for ident, _, _ in result.calls}) == 2
    assert result.finish == "tool_calls"


def test_streamed_tool_calls(case: Case) -> None:
    case.needs_real_model()
    turns = [Turn("user", "parallel weather, streamed")]
    result = case.ask(turns, tools=[WEATHER], stream=True)
    assert [(n, a) for _, n, a in result.calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert all(ident for ident, _, _ in result.calls)
    assert result.finish == "tool_calls"


def test_tool_result_round_trip(case: Case) -> None:
    case.needs_real_model()
    turns = [
        Turn("user", "weather in Paris and Rome?"),
        Turn(
            "assistant",
            calls=[
                ("call_rt_1", "get_weather", {"city": "Paris"}),
                ("call_rt-2", "get_weather", {"city": "Rome"}),
            ],
        ),
        Turn("tool", "18C sunny", call_id="call_rt_1"),
        Turn("tool", "21C cloudy", call_id="call_rt-2"),
    ]
    result = case.ask(turns, tools=[WEATHER])
    assert result.text == "tool said: 18C sunny; 21C cloudy"
    assert result.finish == "stop"


def test_json_output(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "a person, as JSON")], json_schema=PERSON)
    assert json.loads(result.text) == {"name": "name-0", "age": 30}
    assert result.finish == "stop"


def test_image_input(case: Case) -> None:
    case.needs_real_model()
    if case.provider == "bedrock":
        pytest.skip(NO_URL_IMAGES)
    result = case.ask([Turn("user", "what is this?", images=[PNG, CAT])])
    assert result.text == f"what is this? <2 image(s): image/png, {CAT}>"


def test_usage_present(case: Case) -> None:
    result = case.ask([Turn("user", "count me")])
    assert result.usage is not None
    assert result.usage[0] > 0 and result.usage[1] > 0


def test_usage_present_on_streams(case: Case) -> None:
    result = case.ask([Turn("user", "count me while streaming")], stream=True)
    assert result.usage is not None
    assert result.usage[0] > 0 and result.usage[1] > 0


ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    429: "rate_limit_error",
    502: "api_error",
}


@pytest.mark.parametrize(
    ("upstream_status", "status"), [(400, 400), (401, 401), (429, 429), (500, 502)]
)
def test_upstream_errors(case: Case, upstream_status: int, status: int) -> None:
    model = case.model
    if case.provider in ("openai", "groq"):
        # pushed a few times: the gateway may wait out a 429's cool-down and ask again
        failing = up.error(upstream_status, f"mock openai error {upstream_status}")
        case.openai.push(*[failing] * 4)
    else:
        model = case.error_model(upstream_status)
    got, body = case.driver.error(model)
    assert got == status
    if case.driver.name == "openai":
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert set(error) >= {"message", "type", "param", "code"}
    else:
        assert body["type"] == "error"
        assert body["error"]["type"] == ANTHROPIC_ERROR_TYPES[status]
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if upstream_status != 401:  # the key-refused message is the gateway's own
        message = body["error"]["message"]
        assert str(upstream_status) in message
