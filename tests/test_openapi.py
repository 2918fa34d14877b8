"""`GET /openapi.json`: made from the code's Structs, every route of the app in it, and checked by
schemathesis against a running gateway on the mock provider — property-based requests to
every operation (valid and invalid), no 5xx, every answer as the document says (status,
content type, headers, body schema)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mini_llm import __version__
from mini_llm.gateway.app import build_app
from mini_llm.gateway.openapi import openapi_document
from mini_llm.schema.embeddings import EmbeddingsRequest
from mini_llm.schema.gemini import GenerateContentRequest

from .conftest import GatewayFactory
from .harness import RunningApp, gateway_settings, http

DOCUMENT = openapi_document(__version__)
# the routes served twice (without /v1, Gemini's under /v1) are the same handler and schema:
# fuzzed once, at their first path
ALIASES = r"^/(chat/completions|embeddings|responses|models)$|^/$|^/v1/models/\{model\}:"
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(path_regex=ALIASES)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 4  # per operation: generating the large bodies (Messages) is what costs the time


def _documented(path: str) -> str:
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def test_every_route_of_the_app_is_documented() -> None:
    app = build_app(gateway_settings({}))
    routes = {  # a path with a trailing slash is the same route as the one without
        (route.method, _documented(route.resource.canonical.rstrip("/") or "/"))
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "*")
    }
    documented = {
        (method.upper(), path) for path, ops in DOCUMENT["paths"].items() for method in ops
    }
    gemini = {("POST", "/v1beta/models/{spec}"), ("POST", "/v1/models/{spec}")}
    assert routes - gemini <= documented
    for prefix in ("/v1beta", "/v1"):  # each Gemini method is its own path
        for method in ("generateContent", "streamGenerateContent", "countTokens", "embedContent"):
            assert ("POST", f"{prefix}/models/{{model}}:{method}") in documented


def test_the_document_is_served_and_made_from_the_structs(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway({})
    status, headers, body = http("GET", gateway.url + "/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    served: dict[str, Any] = msgspec.json.decode(body)
    assert served["openapi"] == "3.1.0"
    assert served == msgspec.json.decode(msgspec.json.encode(DOCUMENT))
    components = served["components"]["schemas"]
    (generated,), _ = msgspec.json.schema_components(
        [EmbeddingsRequest], ref_template="#/components/schemas/{name}"
    )
    assert generated == {"$ref": "#/components/schemas/EmbeddingsRequest"}
    assert set(components["EmbeddingsRequest"]["required"]) == {"model", "input"}
    generate = components[GenerateContentRequest.__name__]["properties"]
    assert {"contents", "systemInstruction", "generationConfig", "tools"} <= set(generate)
    chat = served["paths"]["/v1/chat/completions"]["post"]
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["responses"]["default"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIErrorBody"
    }
    gemini = served["paths"]["/v1beta/models/{model}:generateContent"]["post"]
    assert gemini["responses"]["default"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/GoogleErrorBody"
    }
    assert {"bearer", "anthropicKey", "googleKey", "googleKeyQuery"} <= set(
        served["components"]["securitySchemes"]
    )
    status, headers, page = http("GET", gateway.url + "/docs")
    assert status == 200 and b"/openapi.json" in page


@pytest.fixture(scope="module")
def fuzzed(loop_thread: Any) -> Any:
    from .harness import start_gateway

    running = start_gateway(loop_thread, gateway_settings({"MINI_LLM_LOG_LEVEL": "warning"}))
    yield running
    running.stop()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_fuzzed_requests_find_no_5xx_and_answers_match(case: Any, fuzzed: RunningApp) -> None:
    case.call_and_validate(base_url=fuzzed.url, checks=CHECKS, timeout=10)


def _conforms(instance: Any, name: str) -> None:
    """`instance` is valid against the document's component `name` (refs resolved in it)."""
    import jsonschema

    root = {
        **msgspec.json.decode(msgspec.json.encode(DOCUMENT)),
        "$ref": f"#/components/schemas/{name}",
    }
    jsonschema.Draft202012Validator(root).validate(instance)


def test_the_admin_key_answers_are_as_documented(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    """The admin schemas forbid unknown fields: a field the API adds and the document lacks
    (or the reverse, when required) fails here."""
    master = "master-key-for-the-openapi-test-01234"
    gateway = make_gateway({"MINI_LLM_MASTER_KEY": master, "MINI_LLM_DATA_DIR": str(tmp_path)})
    auth = {"Authorization": f"Bearer {master}", "Content-Type": "application/json"}

    def call(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = msgspec.json.encode(body) if body is not None else None
        status, _, raw = http(method, gateway.url + path, data, auth)
        assert status in (200, 201), (status, raw)
        documented = DOCUMENT["paths"][re.sub(r"key_\w+", "{id}", path)][method.lower()]
        assert str(status) in documented["responses"]
        return msgspec.json.decode(raw)

    fields = {"name": "doc", "models": ["mock/*"], "rpm": 5, "budget_usd": 1.0, "signing": True}
    _conforms(fields, "KeyFields")
    created = call("POST", "/admin/keys", fields)
    _conforms(created, "CreatedKey")
    assert created["key"].startswith("mk-") and created["signing_secret"]
    ident = created["id"]
    _conforms(call("GET", "/admin/keys"), "KeyList")
    detail = call("GET", f"/admin/keys/{ident}")
    _conforms(detail, "KeyDetail")
    assert "spend_usd" in detail and "usage" in detail
    _conforms(call("PATCH", f"/admin/keys/{ident}", {"rpm": 9}), "KeyView")
    _conforms(call("POST", f"/admin/keys/{ident}/rotate", {"grace_seconds": 0}), "CreatedKey")
    _conforms(call("DELETE", f"/admin/keys/{ident}"), "RevokedKey")
    with pytest.raises(Exception, match="Additional properties"):
        _conforms({**detail, "secret": "x"}, "KeyDetail")
