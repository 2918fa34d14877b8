"""Embeddings: `POST /v1/embeddings` (and `/embeddings`) with the official `openai` client, over
every provider that embeds — `openai` and `groq` (OpenAI-format, pass-through) on the mock
OpenAI upstream, `gemini` (translated to `batchEmbedContents`) on the mock Gemini upstream, and
the built-in `mock/embed`. Every one of them makes the mock provider's vectors, so the same
text must give the same vector whichever way it went; base64 is converted by the gateway where
the upstream cannot; usage reaches the client and the policies (the ledger's seam)."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import openai
import pytest

from mini_llm.canonical import Usage
from mini_llm.gateway.app import GATEWAY
from mini_llm.policies import PolicyChain, RequestInfo
from mini_llm.providers.mock_models import mock_vector

from .conftest import GatewayFactory
from .harness import RunningApp, http
from .upstreams.gemini_upstream import GeminiUpstream
from .upstreams.openai_upstream import OpenAIUpstream

PROVIDERS = {
    "openai": "openai/text-embedding-3-small",
    "groq": "groq/nomic-embed-text",
    "gemini": "gemini/gemini-embedding-001",
    "mock": "mock/embed",
}


@pytest.fixture
def embedder(
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    gemini_upstream: GeminiUpstream,
    gemini_upstream_url: str,
) -> RunningApp:
    return make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-embeddings-openai-1111",
            "GROQ_BASE_URL": openai_upstream_url,
            "GROQ_API_KEY": "gsk_embeddings-groq-2222",
            "GEMINI_BASE_URL": gemini_upstream_url,
            "GEMINI_API_KEY": "gemini-embeddings-3333",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
            "MINI_LLM_MODEL_ALIASES": '{"vectors": "mock/embed"}',
        }
    )


def client(gateway: RunningApp) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0)


@pytest.fixture(params=list(PROVIDERS))
def model(request: pytest.FixtureRequest) -> str:
    return PROVIDERS[str(request.param)]


def test_one_text_gives_the_mock_vector(embedder: RunningApp, model: str) -> None:
    # the openai client asks base64 by default and decodes it: the gateway converts for Gemini
    answer = client(embedder).embeddings.create(model=model, input="hello vectors")
    (item,) = answer.data
    assert item.index == 0
    assert item.embedding == pytest.approx(mock_vector("hello vectors", 32), abs=1e-6)
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens


def test_many_texts_floats_and_dimensions(embedder: RunningApp, model: str) -> None:
    texts = ["first text", "second text", "first text"]
    answer = client(embedder).embeddings.create(
        model=model, input=texts, dimensions=8, encoding_format="float"
    )
    vectors = [d.embedding for d in sorted(answer.data, key=lambda d: d.index)]
    assert [len(v) for v in vectors] == [8, 8, 8]
    assert vectors[0] == vectors[2] != vectors[1]  # same text, same vector
    assert vectors[1] == pytest.approx(mock_vector("second text", 8))


def test_base64_is_little_endian_float32(embedder: RunningApp, model: str) -> None:
    body = {"model": model, "input": "encode me", "encoding_format": "base64", "dimensions": 4}
    status, _, payload = http("POST", embedder.url + "/embeddings", json.dumps(body).encode())
    assert status == 200, payload
    encoded = json.loads(payload)["data"][0]["embedding"]
    assert isinstance(encoded, str)
    decoded = struct.unpack("<4f", base64.b64decode(encoded))
    assert decoded == pytest.approx(mock_vector("encode me", 4), abs=1e-6)


@pytest.mark.parametrize("model", ["openai/text-embedding-3-small", "mock/embed"])
def test_token_arrays_where_the_provider_takes_them(embedder: RunningApp, model: str) -> None:
    answer = client(embedder).embeddings.create(model=model, input=[[1, 2, 3], [4, 5]])
    assert len(answer.data) == 2
    assert answer.data[0].embedding == pytest.approx(mock_vector("1 2 3", 32), abs=1e-6)


def test_token_arrays_to_gemini_are_a_clear_400(embedder: RunningApp) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(embedder).embeddings.create(model=PROVIDERS["gemini"], input=[[1, 2, 3]])
    assert "token arrays need an OpenAI-format provider" in info.value.message


def test_openai_gets_the_body_as_it_came(
    embedder: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    body = {"model": "text-embedding-3-small", "input": "x", "user": "u-1", "extra_field": 7}
    status, _, _ = http("POST", embedder.url + "/v1/embeddings", json.dumps(body).encode())
    assert status == 200
    (sent,) = [r for r in openai_upstream.requests if r.path == "/v1/embeddings"]
    assert sent.body == body  # detected as openai: unknown fields pass through
    assert sent.headers["Authorization"] == "Bearer sk-embeddings-openai-1111"


def test_gemini_gets_batch_embed_contents(
    embedder: RunningApp, gemini_upstream: GeminiUpstream
) -> None:
    client(embedder).embeddings.create(
        model=PROVIDERS["gemini"], input=["a", "b"], dimensions=16, encoding_format="float"
    )
    (sent,) = gemini_upstream.requests
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert sent.body == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": text}]},
                "outputDimensionality": 16,
            }
            for text in ("a", "b")
        ]
    }


def test_chat_only_models_are_a_clear_400(embedder: RunningApp) -> None:
    oa = client(embedder)
    with pytest.raises(openai.BadRequestError) as info:
        oa.embeddings.create(model="anthropic/claude-sonnet-4-5", input="x")
    assert info.value.code == "unsupported_operation"
    assert "cannot serve embeddings requests" in info.value.message
    assert "(anthropic)" in info.value.message and "capabilities" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        oa.embeddings.create(model="mock/echo", input="x")
    assert "chat model" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        oa.chat.completions.create(model="mock/embed", messages=[{"role": "user", "content": "x"}])
    assert "embeddings only" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"model": "mock/embed"},
        {"model": "mock/embed", "input": ""},
        {"model": "mock/embed", "input": []},
        {"model": "mock/embed", "input": [1, "a"]},
        {"model": "mock/embed", "input": "x", "dimensions": 0},
        {"model": "mock/embed", "input": "x", "encoding_format": "int8"},
    ],
)
def test_bad_requests_name_the_field(embedder: RunningApp, body: dict[str, Any]) -> None:
    status, _, payload = http("POST", embedder.url + "/v1/embeddings", json.dumps(body).encode())
    assert status == 400
    error = json.loads(payload)["error"]
    assert error["param"] in ("input", "dimensions", "encoding_format")


def test_models_list_says_what_embeds(embedder: RunningApp) -> None:
    listed = {m.id: m for m in client(embedder).models.list()}
    assert listed["mock/embed"].capabilities == ["embeddings"]  # type: ignore[attr-defined]
    assert listed["mock/echo"].capabilities == ["chat"]  # type: ignore[attr-defined]
    assert listed["vectors"].capabilities == ["embeddings"]  # type: ignore[attr-defined]
    assert client(embedder).embeddings.create(model="vectors", input="alias").data


class Recording:
    wants_usage = True

    def __init__(self) -> None:
        self.seen: list[RequestInfo] = []

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        return None

    def after(self, info: RequestInfo) -> None:
        self.seen.append(info)


def test_usage_reaches_the_policies(embedder: RunningApp, model: str) -> None:
    policy = Recording()
    embedder.app[GATEWAY].pipeline.runtime.policies = PolicyChain([policy])
    answer = client(embedder).embeddings.create(model=model, input=["one two three", "four"])
    (info,) = policy.seen
    assert info.dialect == "openai.embeddings"
    assert isinstance(info.usage, Usage)
    assert info.usage.prompt_tokens == answer.usage.prompt_tokens > 0
    assert info.usage.output_tokens == 0
