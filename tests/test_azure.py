"""Azure OpenAI: the v1 API and dated API versions, deployments, api-key and Entra tokens,
OpenAI clients passing through (chat, streams, the Responses API) to the mock resource."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from mini_llm.config import ConfigError, load_settings
from mini_llm.formats import CHAT, RESPONSES
from mini_llm.providers.azure import azure_wires
from mini_llm.providers.base import Credential, UpstreamModel

from .conftest import GatewayFactory
from .upstreams import azure_upstream as mock
from .upstreams.azure_upstream import AzureUpstream


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mini-llm.toml"
    path.write_text(text)
    return str(path)


def test_urls_by_api_version() -> None:
    to = UpstreamModel("az", "https://res.openai.azure.com/openai/v1", "gpt-4o", {})
    v1 = azure_wires({"api_version": None, "deployments": {"gpt-4o": "my-gpt4o"}})("gpt-4o")
    request = v1.endpoints[CHAT].request(to, {"model": "x", "messages": []}, True, False)
    assert request.url == "https://res.openai.azure.com/openai/v1/chat/completions"
    assert b'"model":"my-gpt4o"' in request.body
    dated = azure_wires({"api_version": "2024-10-21", "deployments": {"gpt-4o": "my 4o"}})("")
    at = UpstreamModel("az", "https://res.openai.azure.com/openai", "gpt-4o", {})
    chat = dated.endpoints[CHAT].request(at, {"messages": []}, True, False)
    assert chat.url == (
        "https://res.openai.azure.com/openai/deployments/my%204o/chat/completions"
        "?api-version=2024-10-21"
    )
    responses = dated.endpoints[RESPONSES].request(at, {"input": "x"}, True, False)
    assert responses.url == "https://res.openai.azure.com/openai/responses?api-version=2024-10-21"
    signed = dated.sign(chat, Credential("k" * 32))
    assert signed.headers["api-key"] == "k" * 32 and "Authorization" not in signed.headers
    bearer = dated.sign(chat, Credential("entra", {"kind": "bearer"}))
    assert bearer.headers["Authorization"] == "Bearer entra" and "api-key" not in bearer.headers


def test_configuration(tmp_path: Path) -> None:
    text = (
        '[providers.corp]\ntype = "azure"\nbase_url = "https://corp.openai.azure.com"\n'
        'api_version = "2024-10-21"\ndeployments = { "gpt-4o" = "prod-4o" }\n'
    )
    env = {"AZURE_OPENAI_API_KEY": "azure-key-from-env-0000", "AZURE_OPENAI_AD_TOKEN": "entra-tok"}
    corp = load_settings(env=env, config_path=_config(tmp_path, text)).providers["corp"]
    assert corp.base_url == "https://corp.openai.azure.com/openai"
    assert corp.options == {"api_version": "2024-10-21", "deployments": {"gpt-4o": "prod-4o"}}
    assert [c.fields.get("kind") for c in corp.credentials] == [None, "bearer"]
    with pytest.raises(ConfigError, match="needs a base_url"):
        load_settings(env={}, config_path=_config(tmp_path, '[providers.x]\ntype = "azure"\n'))
    with pytest.raises(ConfigError, match="region is a setting of type = 'bedrock'"):
        load_settings(
            env={},
            config_path=_config(tmp_path, text + 'region = "us-east-1"\n'),
        )


@pytest.mark.parametrize("api_version", [None, "2024-10-21"])
def test_openai_clients_pass_through(
    make_gateway: GatewayFactory,
    azure_upstream: AzureUpstream,
    azure_upstream_url: str,
    tmp_path: Path,
    api_version: str | None,
) -> None:
    version = f'api_version = "{api_version}"\n' if api_version else ""
    text = (
        f'[providers.corp]\ntype = "azure"\nbase_url = "{azure_upstream_url}"\n{version}'
        'deployments = { "gpt-4o" = "my-gpt4o", "gpt-4o-mini" = "my-mini" }\n'
    )
    gateway = make_gateway({"CORP_API_KEY": mock.KEY}, config_path=_config(tmp_path, text))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(
        model="corp/gpt-4o", messages=[{"role": "user", "content": "hello azure"}]
    )
    assert answer.choices[0].message.content == "hello azure"
    streamed = client.chat.completions.create(
        model="corp/gpt-4o-mini", messages=[{"role": "user", "content": "stream it"}], stream=True
    )
    text_out = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text_out == "stream it"
    response = client.responses.create(model="corp/gpt-4o", input="responses on azure")
    assert response.output_text == "responses on azure"
    paths = [r.path for r in azure_upstream.requests]
    if api_version:
        assert paths == [
            "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21",
            "/openai/deployments/my-mini/chat/completions?api-version=2024-10-21",
            "/openai/responses?api-version=2024-10-21",
        ]
    else:
        assert paths == [
            "/openai/v1/chat/completions",
            "/openai/v1/chat/completions",
            "/openai/v1/responses",
        ]
    assert all(r.headers["api-key"] == mock.KEY for r in azure_upstream.requests)
    assert azure_upstream.requests[-1].body["model"] == "my-gpt4o"


def test_entra_tokens(
    make_gateway: GatewayFactory, azure_upstream: AzureUpstream, azure_upstream_url: str
) -> None:
    gateway = make_gateway(
        {"AZURE_OPENAI_ENDPOINT": azure_upstream_url, "AZURE_OPENAI_AD_TOKEN": mock.AD_TOKEN}
    )
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    answer = client.chat.completions.create(
        model="azure/my-mini", messages=[{"role": "user", "content": "entra"}]
    )
    assert answer.choices[0].message.content == "entra"
    (request,) = azure_upstream.requests
    assert request.headers["Authorization"] == "Bearer " + mock.AD_TOKEN
    assert "api-key" not in request.headers
