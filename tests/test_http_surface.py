"""The small endpoints clients expect: the routes without `/v1`, HEAD on every GET route,
OPTIONS on every route, and CORS (off by default; on for the configured origins only)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from mini_llm.config import ConfigError, load_settings
from mini_llm.gateway.openapi import openapi_document

from .conftest import GatewayFactory
from .harness import RunningApp, http

USER = [{"role": "user", "content": "hi"}]
GET_ROUTES = [
    "/",
    "/health",
    "/v1/models",
    "/models",
    "/v1/models/mock/echo",
    "/v1beta/models",
    "/v1beta/models/mock/echo",
    "/openapi.json",
    "/docs",
]


@pytest.fixture
def plain(make_gateway: GatewayFactory) -> RunningApp:
    return make_gateway({})


def post(
    gateway: RunningApp, path: str, body: Any, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    return http("POST", gateway.url + path, json.dumps(body).encode(), headers)


def test_routes_without_v1(plain: RunningApp) -> None:
    no_v1 = openai.OpenAI(base_url=plain.url, api_key="x", max_retries=0)
    assert no_v1.chat.completions.create(model="mock/echo", messages=USER).choices  # type: ignore[arg-type]
    assert {m.id for m in no_v1.models.list()} >= {"mock/echo", "mock/embed"}
    assert no_v1.embeddings.create(model="mock/embed", input="x").data
    assert no_v1.responses.create(model="mock/echo", input="hi").output_text == "hi"


def test_every_get_route_is_in_the_document_and_answers_head(plain: RunningApp) -> None:
    paths = openapi_document("x")["paths"]
    for path in GET_ROUTES:
        status, headers, _ = http("GET", plain.url + path)
        assert status == 200, path
        head_status, head_headers, head_body = http("HEAD", plain.url + path)
        assert (head_status, head_body) == (200, b""), path
        assert head_headers["Content-Type"] == headers["Content-Type"], path
    documented = {p for p, ops in paths.items() if "get" in ops}
    assert documented >= {"/health", "/v1/models", "/openapi.json", "/v1beta/models"}


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/v1/chat/completions", {"POST", "OPTIONS"}),
        ("/chat/completions", {"POST", "OPTIONS"}),
        ("/v1/embeddings", {"POST", "OPTIONS"}),
        ("/v1/models", {"GET", "HEAD", "OPTIONS"}),
        ("/v1/responses/resp_1", {"GET", "HEAD", "DELETE", "OPTIONS"}),
        ("/v1beta/models/mock/echo:generateContent", {"POST", "GET", "HEAD", "OPTIONS"}),
        ("/v1/messages", {"POST", "OPTIONS"}),
    ],
)
def test_options_answers_204_with_allow(plain: RunningApp, path: str, methods: set[str]) -> None:
    status, headers, body = http("OPTIONS", plain.url + path)
    assert (status, body) == (204, b"")
    assert set(headers["Allow"].split(", ")) == methods
    assert "Access-Control-Allow-Origin" not in headers  # CORS is off by default


def test_unknown_paths_stay_404_and_wrong_methods_405(plain: RunningApp) -> None:
    assert http("OPTIONS", plain.url + "/nowhere")[0] == 404
    status, headers, _ = http("PUT", plain.url + "/v1/embeddings")
    assert (status, headers["Allow"]) == (405, "POST")
    status, _, payload = http("GET", plain.url + "/v1beta/nowhere")
    assert status == 404 and json.loads(payload)["error"]["status"] == "NOT_FOUND"


def test_cors_is_off_by_default(plain: RunningApp) -> None:
    origin = {"Origin": "https://app.example.com"}
    status, headers, _ = post(
        plain, "/v1/chat/completions", {"model": "mock/echo", "messages": USER}, **origin
    )
    assert status == 200
    assert not any(h.lower().startswith("access-control-") for h in headers)
    preflight = {**origin, "Access-Control-Request-Method": "POST"}
    status, headers, _ = http("OPTIONS", plain.url + "/v1/chat/completions", headers=preflight)
    assert status == 204 and "Access-Control-Allow-Origin" not in headers


@pytest.fixture
def cors(make_gateway: GatewayFactory) -> RunningApp:
    return make_gateway({"MINI_LLM_CORS_ORIGINS": "https://app.example.com, http://localhost:5173"})


def test_preflight_from_an_allowed_origin(cors: RunningApp) -> None:
    headers = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    status, got, body = http("OPTIONS", cors.url + "/v1/chat/completions", headers=headers)
    assert (status, body) == (204, b"")
    assert got["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert set(got["Access-Control-Allow-Methods"].split(", ")) == {"POST", "OPTIONS"}
    assert got["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert "Origin" in got["Vary"]
    assert "Access-Control-Allow-Credentials" not in got


def test_answers_to_an_allowed_origin_carry_cors_headers(cors: RunningApp) -> None:
    origin = {"Origin": "http://localhost:5173"}
    for stream in (False, True):
        body = {"model": "mock/echo", "messages": USER, "stream": stream}
        status, got, _ = post(cors, "/v1/chat/completions", body, **origin)
        assert status == 200
        assert got["Access-Control-Allow-Origin"] == "http://localhost:5173"
        assert got["Vary"] == "Origin"
        assert "x-request-id" in got["Access-Control-Expose-Headers"]
    status, got, _ = post(
        cors, "/v1/chat/completions", {"model": "nope/x", "messages": USER}, **origin
    )
    assert status == 404 and got["Access-Control-Allow-Origin"] == "http://localhost:5173"


def test_other_origins_are_refused(cors: RunningApp) -> None:
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    status, got, payload = http("OPTIONS", cors.url + "/v1/chat/completions", headers=headers)
    assert status == 403 and "not allowed" in json.loads(payload)["error"]["message"]
    assert "Access-Control-Allow-Origin" not in got
    status, got, _ = post(
        cors,
        "/v1/chat/completions",
        {"model": "mock/echo", "messages": USER},
        Origin="https://evil.example",
    )
    assert status == 200 and "Access-Control-Allow-Origin" not in got
    assert got["Vary"] == "Origin"


def test_credentials_and_wildcard(make_gateway: GatewayFactory) -> None:
    with_credentials = make_gateway(
        {
            "MINI_LLM_CORS_ORIGINS": "https://app.example.com",
            "MINI_LLM_CORS_ALLOW_CREDENTIALS": "true",
        }
    )
    headers = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    _, got, _ = http("OPTIONS", with_credentials.url + "/v1/embeddings", headers=headers)
    assert got["Access-Control-Allow-Credentials"] == "true"
    assert got["Access-Control-Allow-Origin"] == "https://app.example.com"
    anyone = make_gateway({"MINI_LLM_CORS_ORIGINS": "*"})
    _, got, _ = http(
        "OPTIONS", anyone.url + "/v1/embeddings", headers={**headers, "Origin": "https://x.example"}
    )
    assert got["Access-Control-Allow-Origin"] == "*"
    with pytest.raises(ConfigError, match="cannot go with cors_origins"):
        load_settings(env={"MINI_LLM_CORS_ORIGINS": "*", "MINI_LLM_CORS_ALLOW_CREDENTIALS": "1"})
    with pytest.raises(ConfigError, match="scheme://host"):
        load_settings(env={"MINI_LLM_CORS_ORIGINS": "app.example.com/path"})
