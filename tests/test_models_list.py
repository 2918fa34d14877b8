"""`GET /v1/models` lists every name a client can send; `GET /v1/models/{id}` retrieves one.
Pure list building, then the official `openai` client against a real gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from mini_llm.config import Settings
from mini_llm.gateway.model_list import build_model_list, models_by_id, offered_models
from mini_llm.providers.mock_models import MOCK_MODELS
from mini_llm.routing.provider import build_providers
from mini_llm.state import MemoryState
from mini_llm.upstream import HttpTransport

from .conftest import GatewayFactory
from .harness import gateway_settings

CONFIG = """
[aliases]
fast = "mock/echo"
chain = ["mock/error-500", "mock/echo"]
smart = ["openai/gpt-4.1", "fast"]

[deployments.pool]
targets = [{ model = "mock/echo", weight = 2 }, "groq/llama-3.3-70b-versatile"]
fallbacks = ["mock/json"]

[fallbacks]
"openai/gpt-4o-mini" = ["mock/tools", "gemini/gemini-2.5-flash"]
"gpt-4o" = ["fast"]

[models."anthropic/claude-opus-4-1"]
timeouts = { first_byte = 600 }

[providers.my-vllm]
base_url = "http://10.0.0.5:8000/v1"
models = ["meta-llama/Llama-3.1-8B-Instruct"]
"""


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "mini-llm.toml"
    path.write_text(CONFIG)
    return str(path)


def listed(settings: Settings) -> dict[str, dict[str, Any]]:
    http = HttpTransport(settings.timeouts, 1, "test")  # never started: nothing is sent
    providers = build_providers(settings.providers, http, MemoryState())
    entries = build_model_list(settings, offered_models(providers), 1700000000)
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)), "each name once"
    return {e["id"]: e for e in entries}


def test_every_name_a_client_can_send_is_listed(config: str) -> None:
    models = listed(gateway_settings({"MINI_LLM_RETRY_ATTEMPTS": "1"}, config))
    assert set(models) == {
        # aliases of every kind, and deployments
        "fast",
        "chain",
        "smart",
        "pool",
        # configured models, and the mock's own
        "my-vllm/meta-llama/Llama-3.1-8B-Instruct",
        *(f"mock/{m}" for m in MOCK_MODELS),
        # names only the routing tables mention, fallbacks and overrides included
        "mock/error-500",
        "openai/gpt-4.1",
        "groq/llama-3.3-70b-versatile",
        "openai/gpt-4o-mini",
        "gemini/gemini-2.5-flash",
        "gpt-4o",
        "anthropic/claude-opus-4-1",
    }
    assert models["fast"]["owned_by"] == "alias" and models["fast"]["target"] == "mock/echo"
    assert models["chain"]["owned_by"] == "alias"
    assert models["chain"]["chain"] == ["mock/error-500", "mock/echo"]
    assert models["pool"]["owned_by"] == "deployment"
    assert models["pool"]["targets"] == ["mock/echo", "groq/llama-3.3-70b-versatile"]
    assert models["pool"]["fallbacks"] == ["mock/json"]
    assert models["openai/gpt-4o-mini"]["fallbacks"] == ["mock/tools", "gemini/gemini-2.5-flash"]
    assert models["gpt-4o"]["owned_by"] == "openai"
    assert models["my-vllm/meta-llama/Llama-3.1-8B-Instruct"]["owned_by"] == "my-vllm"
    assert all(
        m["object"] == "model" and m["created"] == 1700000000 and isinstance(m["owned_by"], str)
        for m in models.values()
    )


def test_without_configuration_only_the_mock_is_listed() -> None:
    assert set(listed(gateway_settings())) == {f"mock/{m}" for m in MOCK_MODELS}


def test_models_by_id_indexes_the_encoded_list() -> None:
    body = b'{"object":"list","data":[{"id":"mock/echo","object":"model"}]}'
    assert models_by_id(body) == {"mock/echo": b'{"id":"mock/echo","object":"model"}'}


def test_list_and_retrieve_through_the_openai_client(
    make_gateway: GatewayFactory, config: str
) -> None:
    gateway = make_gateway({"MINI_LLM_RETRY_ATTEMPTS": "1"}, config)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    ids = {m.id for m in client.models.list()}
    assert {"chain", "pool", "fast", "mock/echo", "mock/tools", "openai/gpt-4o-mini"} <= ids

    # the names listed route: the chain falls past mock/error-500 to mock/echo
    for name in ("chain", "pool"):
        answer = client.chat.completions.create(
            model=name, messages=[{"role": "user", "content": f"via {name}"}]
        )
        assert answer.choices[0].message.content == f"via {name}"

    for name in ("chain", "pool", "mock/echo", "my-vllm/meta-llama/Llama-3.1-8B-Instruct"):
        found = client.models.retrieve(name)  # the client sends mock%2Fecho: decoded
        assert (found.id, found.object) == (name, "model")
    assert client.models.retrieve("pool").owned_by == "deployment"

    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("mock/nope")
    body = caught.value.response.json()
    assert body["error"]["code"] == "model_not_found"
    assert body["error"]["type"] == "invalid_request_error"
    assert "mock/nope" in body["error"]["message"]
    assert set(body["error"]) == {"message", "type", "param", "code"}
