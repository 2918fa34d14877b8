"""Issue 9's smaller items that live in the gateway: a trailing slash, an empty body's code,
the mock provider in /health, upstream warnings that name the request, an unreachable upstream
that names where it was tried, and `mini-llm providers reset`."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from mini_llm.gateway.app import GATEWAY

from .conftest import GatewayFactory
from .harness import RunningApp, clean_env, http
from .sdk_harness import run_cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def mock_gateway(make_gateway: GatewayFactory) -> RunningApp:
    return make_gateway({})


def test_a_trailing_slash_is_the_same_route(mock_gateway: RunningApp) -> None:
    body = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]})
    status, _, data = http("POST", mock_gateway.url + "/v1/chat/completions/", body.encode())
    assert status == 200, data
    status, _, data = http("GET", mock_gateway.url + "/v1/models/")
    assert status == 200 and json.loads(data)["object"] == "list"


def test_an_empty_body_is_invalid_json(mock_gateway: RunningApp) -> None:
    status, _, data = http("POST", mock_gateway.url + "/v1/chat/completions", b"")
    assert status == 400
    assert json.loads(data)["error"]["code"] == "invalid_json"
    status, _, data = http("POST", mock_gateway.url + "/v1/messages", b"")
    assert status == 400 and json.loads(data)["error"]["type"] == "invalid_request_error"


def test_health_names_the_mock_provider(mock_gateway: RunningApp) -> None:
    _, _, data = http("GET", mock_gateway.url + "/health")
    assert json.loads(data)["providers"]["mock"] == {
        "keys": 0,
        "cooling": 0,
        "set_aside": [],
        "retry_in_s": {},
    }


def test_upstream_warnings_name_the_request_and_the_model(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    port = _free_port()  # nothing listens there
    gateway = make_gateway(
        {"VLLM_BASE_URL": f"http://127.0.0.1:{port}/v1", "MINI_LLM_RETRY_ATTEMPTS": "1"}
    )
    logger = logging.getLogger("mini_llm")
    propagated = logger.propagate
    logger.propagate = True
    try:
        with caplog.at_level(logging.WARNING, logger="mini_llm.dispatch"):
            body = {"model": "vllm/llama", "messages": [{"role": "user", "content": "x"}]}
            status, _, data = http(
                "POST",
                gateway.url + "/v1/chat/completions",
                json.dumps(body).encode(),
                {"x-request-id": "req-defect-9"},
            )
    finally:
        logger.propagate = propagated
    assert status == 502
    message = json.loads(data)["error"]["message"]
    assert message == f"upstream vllm is unreachable at 127.0.0.1:{port}"
    (line,) = [r.getMessage() for r in caplog.records if r.name == "mini_llm.dispatch"]
    assert line.startswith("request req-defect-9 (model vllm/llama): upstream vllm/llama failed")


def test_providers_reset_brings_keys_back(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway({"OPENAI_API_KEYS": "sk-reset-one-aaaa1111,sk-reset-two-bbbb2222"})
    pool = gateway.app[GATEWAY].runtime.providers["openai"].keys
    for entry in pool:
        pool.set_aside(entry, 401)
    assert not pool.has_healthy()
    result = run_cli("providers", "reset", "openai", "--url", gateway.url, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "openai: 2 keys back in rotation"
    assert pool.has_healthy()
    as_json = run_cli("providers", "reset", "--json", "--url", gateway.url, env=clean_env())
    assert json.loads(as_json.stdout)["reset"]["openai"] == 0
    unknown = run_cli("providers", "reset", "nope", "--url", gateway.url, env=clean_env())
    assert unknown.returncode == 1 and "Unknown provider 'nope'" in unknown.stderr


def test_head_on_a_get_route_is_its_headers(mock_gateway: RunningApp) -> None:
    status, headers, data = http("HEAD", mock_gateway.url + "/health")
    assert (status, data) == (200, b"")
    assert headers["Content-Type"].startswith("application/json")
    status, _, _ = http("HEAD", mock_gateway.url + "/v1/models")
    assert status == 200
    status, headers, _ = http("DELETE", mock_gateway.url + "/health")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
