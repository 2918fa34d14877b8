"""The conformance suite for Gemini's own clients: the official `google-genai` package on the
gateway's Gemini-native routes, over every provider of `test_conformance` (openai and groq on
the mock OpenAI upstream, anthropic and gemini on theirs, the built-in mock, and the clouds:
azure, bedrock with SigV4, vertex-gemini and vertex-claude with OAuth tokens, each on its mock
upstream). The cases and their expected answers are the conformance suite's: only the client
differs. Gemini-format providers (gemini, vertex-gemini) get the body as it came; the others
its canonical translation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google import genai
from google.genai import types

from mini_llm.providers.mock_models import mock_vector

from .conformance_drivers import Result, Turn
from .conftest import GatewayFactory
from .gemini_driver import GeminiDriver
from .harness import RunningApp, http
from .test_conformance import (
    AZURE_CONFIG,
    CAT,
    ERROR_MODELS,
    MODELS,
    NO_TOOLS,
    NO_URL_IMAGES,
    PERSON,
    PNG,
    PROVIDERS,
    WEATHER,
    _smart_openai,
)
from .upstreams import azure_upstream, bedrock_upstream
from .upstreams import openai_upstream as up
from .upstreams.anthropic_upstream import AnthropicUpstream
from .upstreams.gemini_upstream import GeminiUpstream
from .upstreams.openai_upstream import OpenAIUpstream


class Case:
    def __init__(self, provider: str, gateway: RunningApp, openai: OpenAIUpstream) -> None:
        self.provider = provider
        self.gateway = gateway
        self.openai = openai
        self.driver = GeminiDriver(gateway.url)

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


@pytest.fixture
def gemini_gateway(
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
) -> Iterator[RunningApp]:
    openai_upstream.default = _smart_openai
    config = tmp_path / "mini-llm.toml"
    config.write_text(AZURE_CONFIG)
    yield make_gateway(
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
            "MINI_LLM_MODEL_ALIASES": '{"quick": "mock/echo"}',
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
    openai_upstream.reset()


# the providers that get a Gemini client's body as it came (the others, its canonical form)
GEMINI_NATIVE = ("gemini", "vertex-gemini")


@pytest.fixture(params=PROVIDERS)
def case(
    request: pytest.FixtureRequest, gemini_gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> Case:
    return Case(str(request.param), gemini_gateway, openai_upstream)


def test_simple_answer(case: Case) -> None:
    result = case.ask([Turn("user", "hello conformance")])
    assert (result.text, result.finish, result.calls) == ("hello conformance", "stop", [])


def test_system_prompt(case: Case) -> None:
    case.needs_real_model()
    assert case.ask([Turn("user", "hi")], system="Be brief.").text == "[Be brief.] hi"


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
    assert (name, args) == ("get_weather", {"city": "Paris"})
    assert ident or case.provider in GEMINI_NATIVE  # Gemini itself gives calls no id
    assert result.finish == "tool_calls"


def test_forced_tool(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "hello")], tools=[WEATHER], force_tool="get_weather")
    assert [(n, a) for _, n, a in result.calls] == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls(case: Case, stream: bool) -> None:
    case.needs_real_model()
    turns = [Turn("user", "parallel weather for two cities")]
    result = case.ask(turns, tools=[WEATHER], stream=stream)
    assert [(n, a) for _, n, a in result.calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
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


def test_image_input(case: Case) -> None:
    case.needs_real_model()
    if case.provider == "bedrock":
        pytest.skip(NO_URL_IMAGES)
    result = case.ask([Turn("user", "what is this?", images=[PNG, CAT])])
    assert result.text == f"what is this? <2 image(s): image/png, {CAT}>"


@pytest.mark.parametrize("stream", [False, True])
def test_usage_metadata(case: Case, stream: bool) -> None:
    result = case.ask([Turn("user", "count me")], stream=stream)
    assert result.usage is not None
    assert result.usage[0] > 0 and result.usage[1] > 0


@pytest.mark.parametrize(
    ("upstream_status", "status"), [(400, 400), (401, 401), (429, 429), (500, 502)]
)
def test_upstream_errors_in_googles_shape(case: Case, upstream_status: int, status: int) -> None:
    model = case.model
    if case.provider in ("openai", "groq"):
        failing = up.error(upstream_status, f"mock openai error {upstream_status}")
        case.openai.push(*[failing] * 4)
    else:
        model = case.error_model(upstream_status)
    got, body = case.driver.error(model)
    assert got == status
    error = body["error"]
    assert error["code"] == status
    assert isinstance(error["status"], str) and error["status"].isupper()
    assert isinstance(error["message"], str) and error["message"]


def test_count_tokens(case: Case) -> None:
    answer = case.driver.client.models.count_tokens(model=case.model, contents="count these words")
    assert answer.total_tokens is not None and answer.total_tokens > 0


# Beyond the conformance cases ------------------------------------------------------------------


def client(gateway: RunningApp, api_version: str = "v1beta") -> genai.Client:
    options = types.HttpOptions(
        base_url=gateway.url,
        api_version=api_version,
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key="client-key", http_options=options)


@pytest.mark.parametrize("api_version", ["v1beta", "v1"])
def test_both_api_versions_and_aliases(gemini_gateway: RunningApp, api_version: str) -> None:
    gemini = client(gemini_gateway, api_version)  # kept: a collected client closes
    models = gemini.models
    assert models.generate_content(model="quick", contents="by alias").text == "by alias"
    answer = models.generate_content(model="models/mock/echo", contents="by resource name")
    assert answer.text == "by resource name"


def test_embeddings_on_every_provider_that_embeds(gemini_gateway: RunningApp) -> None:
    gemini = client(gemini_gateway)
    models = gemini.models
    for model in ("gemini/gemini-embedding-001", "openai/text-embedding-3-small", "mock/embed"):
        one = models.embed_content(model=model, contents="embed me")
        assert one.embeddings is not None
        assert one.embeddings[0].values == pytest.approx(mock_vector("embed me", 32), abs=1e-6)
        config = types.EmbedContentConfig(output_dimensionality=8)
        texts: list[types.PartUnionDict] = ["a", "b"]  # typed whether or not Pillow is there
        many = models.embed_content(model=model, contents=texts, config=config)
        assert many.embeddings is not None
        assert [len(e.values or ()) for e in many.embeddings] == [8, 8]
        assert many.embeddings[1].values == pytest.approx(mock_vector("b", 8), abs=1e-6)


def test_embed_content_single(gemini_gateway: RunningApp) -> None:
    body = {"content": {"parts": [{"text": "single"}]}}
    for model in ("gemini/gemini-embedding-001", "mock/embed"):
        status, _, payload = http(
            "POST",
            f"{gemini_gateway.url}/v1beta/models/{model}:embedContent?key=client-key",
            json.dumps(body).encode(),
        )
        assert status == 200, payload
        values = json.loads(payload)["embedding"]["values"]
        assert values == pytest.approx(mock_vector("single", 32), abs=1e-6)


def test_the_clients_key_is_never_forwarded(
    gemini_gateway: RunningApp, gemini_upstream: GeminiUpstream
) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
    status, _, payload = http(
        "POST",
        gemini_gateway.url + "/v1beta/models/gemini/gemini-2.5-flash:generateContent?key=sk-cl",
        json.dumps(body).encode(),
        {"x-goog-api-key": "client-key-zzzz"},
    )
    assert status == 200, payload
    (sent,) = gemini_upstream.requests
    assert sent.headers["x-goog-api-key"] == "gemini-conformance-4444"
    assert "key=" not in sent.path and sent.body == body  # pass-through, as it came


def test_gemini_list_and_errors(gemini_gateway: RunningApp) -> None:
    gemini = client(gemini_gateway)
    listed = {m.name: m for m in gemini.models.list()}
    assert listed["models/mock/embed"].supported_actions == ["embedContent", "batchEmbedContents"]
    assert "generateContent" in (listed["models/mock/echo"].supported_actions or ())
    status, _, payload = http("POST", gemini_gateway.url + "/v1beta/models/mock/echo:nope", b"{}")
    assert status == 404 and json.loads(payload)["error"]["status"] == "NOT_FOUND"
    status, _, payload = http(
        "POST", gemini_gateway.url + "/v1beta/models/mock/echo:generateContent", b'{"contents": 1}'
    )
    error = json.loads(payload)["error"]
    assert (status, error["code"], error["status"]) == (400, 400, "INVALID_ARGUMENT")
    assert "contents" in error["message"]
