"""`GET /openapi.json`: the OpenAPI 3.1 document of every route, made from the code's own
msgspec Structs (`msgspec.json.schema_components`), so it cannot drift from what the gateway
checks and sends; `GET /docs` renders it in the browser without any dependency.

The routes are rows (`_ROUTES`): method, paths, what the request body is, what a whole answer
and each stream event are, which error shape (dialect) its errors take and which client keys
it accepts. A stream's schema describes each server-sent event, its `data` JSON
(`contentMediaType` and `contentSchema`), as OpenAPI 3.1 reads an event stream. Model names
get examples that the offline `mock` provider answers, so a generated client, or a fuzzer,
reaches a real answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..dialects.openai_responses.request import ResponsesEnvelope
from ..schema import admin as k
from ..schema import answers as a
from ..schema import gemini as g
from ..schema.anthropic import MessagesRequest
from ..schema.embeddings import EmbeddingsList, EmbeddingsRequest
from ..schema.openai import ChatRequest
from .health import Liveness, Readiness

__all__ = ["DOCS_PAGE", "openapi_document"]

_REF = "#/components/schemas/{name}"

_Security = list[dict[str, list[str]]]

_OPENAI_KEYS: _Security = [{}, {"bearer": []}]
_ANTHROPIC_KEYS: _Security = [{}, {"anthropicKey": []}, {"bearer": []}]
_GOOGLE_KEYS: _Security = [{}, {"googleKey": []}, {"googleKeyQuery": []}]

_EXAMPLE_MODELS = {
    ChatRequest: "mock/echo",
    MessagesRequest: "mock/echo",
    ResponsesEnvelope: "mock/echo",
    EmbeddingsRequest: "mock/embed",
}


@dataclass(frozen=True)
class _Route:
    method: str
    paths: tuple[str, ...]
    operation: str
    summary: str
    tag: str
    errors: type
    request: type | None = None
    answer: type | None = None
    events: type | None = None
    security: list[dict[str, list[str]]] = field(default_factory=lambda: _OPENAI_KEYS)
    params: tuple[tuple[str, str, str], ...] = ()
    """(name, where, example): path or query parameters."""
    media: str = "application/json"
    body_required: bool = True
    status: str = "200"


_MODEL_ID = (("id", "path", "mock/echo"),)
_RESPONSE_ID = (("id", "path", "resp_unknown"),)


def _gemini(method: str, summary: str, request: type, answer: type, **extra: Any) -> _Route:
    example = "mock/embed" if "mbed" in method else "mock/echo"
    params: tuple[tuple[str, str, str], ...] = (("model", "path", example),)
    if method == "streamGenerateContent":
        params += (("alt", "query", "sse"),)
    return _Route(
        "POST",
        (f"/v1beta/models/{{model}}:{method}", f"/v1/models/{{model}}:{method}"),
        method,
        summary,
        "gemini",
        g.GoogleErrorBody,
        request,
        answer,
        security=_GOOGLE_KEYS,
        params=params,
        **extra,
    )


_ROUTES: tuple[_Route, ...] = (
    _Route("GET", ("/health", "/"), "health", "Gateway health", "gateway", a.OpenAIErrorBody,
           answer=a.Health, security=[{}]),
    _Route("GET", ("/health/live",), "liveness", "200 while the process serves", "gateway",
           a.OpenAIErrorBody, answer=Liveness, security=[{}]),
    _Route("GET", ("/health/ready",), "readiness",
           "200 when the stores answer; 503 naming those that do not, or while draining",
           "gateway", Readiness, answer=Readiness, security=[{}]),
    _Route("GET", ("/v1/models", "/models"), "listModels",
           "Every model name a client can send, with its capabilities", "openai",
           a.OpenAIErrorBody, answer=a.ModelList),
    _Route("GET", ("/v1/models/{id}",), "retrieveModel", "One model of the list", "openai",
           a.OpenAIErrorBody, answer=a.Model, params=_MODEL_ID),
    _Route("POST", ("/v1/chat/completions", "/chat/completions"), "createChatCompletion",
           "OpenAI Chat Completions, on any provider", "openai", a.OpenAIErrorBody,
           ChatRequest, a.ChatCompletion, a.ChatCompletionChunk),
    _Route("POST", ("/v1/embeddings", "/embeddings"), "createEmbeddings",
           "OpenAI embeddings, on OpenAI-format providers, Gemini and mock/embed", "openai",
           a.OpenAIErrorBody, EmbeddingsRequest, EmbeddingsList),
    _Route("POST", ("/v1/responses", "/responses"), "createResponse",
           "OpenAI Responses, on any provider (stored by the gateway when translated)",
           "openai", a.OpenAIErrorBody, ResponsesEnvelope, a.ResponseObject,
           a.ResponsesStreamEvent),
    _Route("GET", ("/v1/responses/{id}",), "getResponse", "A stored response", "openai",
           a.OpenAIErrorBody, answer=a.ResponseObject, params=_RESPONSE_ID),
    _Route("DELETE", ("/v1/responses/{id}",), "deleteResponse", "Delete a stored response",
           "openai", a.OpenAIErrorBody, answer=a.DeletedResponse, params=_RESPONSE_ID),
    _Route("GET", ("/v1/responses/{id}/input_items",), "listInputItems",
           "A stored response's input items", "openai", a.OpenAIErrorBody,
           answer=a.InputItems, params=_RESPONSE_ID),
    _Route("POST", ("/v1/messages",), "createMessage", "Anthropic Messages, on any provider",
           "anthropic", a.AnthropicErrorBody, MessagesRequest, a.AnthropicMessage,
           a.AnthropicStreamEvent, security=_ANTHROPIC_KEYS),
    _Route("POST", ("/v1/messages/count_tokens",), "countMessageTokens",
           "Anthropic token count (an estimate off Anthropic)", "anthropic",
           a.AnthropicErrorBody, MessagesRequest, a.AnthropicTokenCount,
           security=_ANTHROPIC_KEYS),
    _gemini("generateContent", "Gemini generateContent, on any provider",
            g.GenerateContentRequest, g.GenerateContentResponse),
    _gemini("streamGenerateContent", "Gemini streamGenerateContent (alt=sse), on any provider",
            g.GenerateContentRequest, g.GenerateContentResponse,
            events=g.GenerateContentResponse),
    _gemini("countTokens", "Gemini token count (an estimate off Gemini)",
            g.CountTokensRequest, g.CountTokensResponse),
    _gemini("embedContent", "Gemini embedContent, on any provider that embeds",
            g.EmbedContentRequest, g.EmbedContentResponse),
    _gemini("batchEmbedContents", "Gemini batchEmbedContents, on any provider that embeds",
            g.BatchEmbedContentsRequest, g.BatchEmbedContentsResponse),
    _Route("GET", ("/v1beta/models",), "listGeminiModels", "The model list, Gemini's shape",
           "gemini", g.GoogleErrorBody, answer=g.GeminiModelList, security=_GOOGLE_KEYS),
    _Route("GET", ("/v1beta/models/{name}",), "getGeminiModel", "One model, Gemini's shape",
           "gemini", g.GoogleErrorBody, answer=g.GeminiModel, security=_GOOGLE_KEYS,
           params=(("name", "path", "mock/echo"),)),
    _Route("POST", ("/admin/providers/reset",), "resetProviders",
           "Bring a provider's keys back at once (loopback clients only)", "gateway",
           a.OpenAIErrorBody, answer=a.ProvidersReset, security=[{}],
           params=(("provider", "query", "mock"),)),
    _Route("GET", ("/metrics",), "metrics",
           "Prometheus metrics of every worker (auth on: the master key or the metrics token)",
           "gateway",
           a.OpenAIErrorBody, security=[{}, {"bearer": []}], media="text/plain"),
    _Route("GET", ("/admin/usage",), "usageReport",
           "Requests, errors, tokens, cost and latency from the usage ledger", "admin",
           a.OpenAIErrorBody, security=[{}, {"bearer": []}],
           params=(("since", "query", "24h"), ("until", "query", "1h"),
                   ("by", "query", "model"), ("limit", "query", "10"))),
    _Route("POST", ("/admin/keys",), "createKey", "Create a gateway key (master key only)",
           "admin", a.OpenAIErrorBody, k.KeyFields, k.CreatedKey, security=[{"bearer": []}],
           status="201"),
    _Route("GET", ("/admin/keys",), "listKeys", "Every gateway key, never a secret", "admin",
           a.OpenAIErrorBody, answer=k.KeyList, security=[{"bearer": []}]),
    _Route("GET", ("/admin/keys/{id}",), "getKey", "One gateway key, its usage and spend",
           "admin", a.OpenAIErrorBody, answer=k.KeyDetail, security=[{"bearer": []}],
           params=(("id", "path", "key_unknown"),)),
    _Route("PATCH", ("/admin/keys/{id}",), "updateKey", "Change a gateway key's fields",
           "admin", a.OpenAIErrorBody, k.KeyFields, k.KeyView, security=[{"bearer": []}],
           params=(("id", "path", "key_unknown"),)),
    _Route("DELETE", ("/admin/keys/{id}",), "revokeKey", "Revoke a gateway key at once",
           "admin", a.OpenAIErrorBody, answer=k.RevokedKey, security=[{"bearer": []}],
           params=(("id", "path", "key_unknown"),)),
    _Route("POST", ("/admin/keys/{id}/rotate",), "rotateKey",
           "A new secret; the old one valid for a grace period", "admin", a.OpenAIErrorBody,
           k.RotateKey, k.CreatedKey, security=[{"bearer": []}],
           params=(("id", "path", "key_unknown"),), body_required=False),
    _Route("GET", ("/openapi.json",), "openapi", "This document", "gateway",
           a.OpenAIErrorBody, answer=None, security=[{}]),
    _Route("GET", ("/docs",), "docs", "This document, as a page", "gateway",
           a.OpenAIErrorBody, security=[{}], media="text/html"),
)  # fmt: skip


def _short_names(components: dict[str, Any]) -> dict[str, str]:
    """msgspec names two Structs of one name by their module path
    (`mini_llm.schema.gemini.Tool`); a client generator wants a class name (`GeminiTool`)."""
    renames: dict[str, str] = {}
    for name in components:
        if "." in name:
            *_, module, kind = name.split(".")
            short = module.capitalize() + kind
            if short in components or short in renames.values():
                raise ValueError(f"two schemas would be named {short}")
            renames[name] = short
    return renames


def _renamed(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref in refs:
            return {**value, "$ref": refs[ref]}
        return {k: _renamed(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, refs) for v in value]
    return value


def _schemas(types: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Each type's reference, and the named component schemas."""
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    renames = _short_names(components)
    if not renames:
        return list(schemas), components
    refs = {_REF.format(name=old): _REF.format(name=new) for old, new in renames.items()}
    renamed: dict[str, Any] = {}
    for name, schema in components.items():
        short = renames.get(name, name)
        renamed[short] = _renamed(schema, refs)
        if short != name:
            renamed[short]["title"] = short
    return [_renamed(s, refs) for s in schemas], renamed


def _types() -> list[Any]:
    found: list[Any] = []
    for route in _ROUTES:
        for kind in (route.request, route.answer, route.events, route.errors):
            if kind is not None and kind not in found:
                found.append(kind)
    return found


def _parameter(name: str, where: str, example: str) -> dict[str, Any]:
    parameter: dict[str, Any] = {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": {"type": "string", "minLength": 1},
        "example": example,
    }
    if name in ("model", "name", "id") and where == "path":
        parameter["description"] = (
            "A model name may hold '/' (mock/echo, openai/gpt-4o-mini): send it as it is, or "
            "percent-encoded."
        )
    return parameter


def _content(schema: dict[str, Any] | None, media: str) -> dict[str, Any]:
    if media != "application/json":
        return {media: {"schema": {"type": "string"}}}
    return {media: {"schema": schema if schema is not None else {"type": "object"}}}


def _alias(first: str, path: str) -> str:
    """The operationId suffix of a route's second path: a generated client names its
    functions after operationIds, so each must stay a distinct, readable name."""
    if path == "/":
        return "AtRoot"
    if "/v1" + path == first:
        return "WithoutV1"
    if first.startswith("/v1beta/") and path.startswith("/v1/"):
        return "V1"
    words = path.replace("{", "").replace("}", "").replace(":", "/").split("/")
    return "At" + "".join(w[:1].upper() + w[1:] for w in words)


def _operation(route: _Route, path: str, refs: dict[type, dict[str, Any]]) -> dict[str, Any]:
    first = route.paths[0]
    suffix = "" if path == first else _alias(first, path)
    ok: dict[str, Any] = {"description": "The answer"}
    if route.answer is not None or route.media != "application/json" or route.events is None:
        ok["content"] = _content(refs.get(route.answer) if route.answer else None, route.media)
    if route.events is not None:
        payload = {"anyOf": [refs[route.events], refs[route.errors]]}
        data = {
            "anyOf": [
                {"const": "[DONE]"},
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": payload,
                },
            ]
        }
        event = {
            "type": "object",
            "description": "One server-sent event; its data is JSON (an OpenAI stream ends "
            "with [DONE]); a stream that fails after it began ends with an error event",
            "properties": {"event": {"type": "string"}, "id": {"type": "string"}, "data": data},
            "required": ["data"],
        }
        stream = {"schema": event}
        ok.setdefault("content", {})["text/event-stream"] = stream
    operation: dict[str, Any] = {
        "operationId": route.operation + suffix,
        "summary": route.summary,
        "tags": [route.tag],
        "security": route.security,
        "responses": {
            route.status: ok,
            "default": {
                "description": f"An error, in the {route.tag} shape",
                "content": {"application/json": {"schema": refs[route.errors]}},
            },
        },
    }
    if route.params:
        operation["parameters"] = [_parameter(*p) for p in route.params]
    if route.request is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": refs[route.request]}},
        }
    return operation


def openapi_document(version: str) -> dict[str, Any]:
    """The whole document (built once, when the app is built)."""
    types = _types()
    schemas, components = _schemas(types)
    refs = dict(zip(types, schemas, strict=True))
    for kind, model in _EXAMPLE_MODELS.items():
        name = refs[kind]["$ref"].rsplit("/", 1)[-1]
        properties = components[name].get("properties", {})
        if "model" in properties:
            properties["model"]["examples"] = [model]
    paths: dict[str, dict[str, Any]] = {}
    for route in _ROUTES:
        for path in route.paths:
            operation = _operation(route, path, refs)
            paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mini-llm gateway",
            "version": version,
            "description": (
                "One endpoint in front of OpenAI, Anthropic, Gemini and any OpenAI-compatible "
                "server, in the OpenAI, Anthropic and Gemini dialects. Client keys are "
                "accepted and never forwarded: the gateway signs upstream requests with its "
                "own. Streams are server-sent events (the schema describes each event)."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "openai", "description": "OpenAI-shaped routes and errors"},
            {"name": "anthropic", "description": "Anthropic-shaped routes and errors"},
            {"name": "gemini", "description": "Gemini-native routes, Google-shaped errors"},
            {"name": "gateway", "description": "The gateway's own routes"},
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "anthropicKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "googleKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
                "googleKeyQuery": {"type": "apiKey", "in": "query", "name": "key"},
            },
        },
    }


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mini-llm HTTP API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code,pre{font:13px ui-monospace,monospace}pre{background:#f5f5f5;padding:.6rem;overflow:auto}
.m{display:inline-block;width:4.5rem;font-weight:600}summary{cursor:pointer;margin:.3rem 0}
</style></head><body>
<h1>mini-llm HTTP API</h1>
<p>The machine-readable document: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
<div id="api">Loading…</div>
<script>
const esc = s => String(s).replace(/[&<>]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;"}[c]));
fetch("/openapi.json").then(r => r.json()).then(doc => {
  const out = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const body = op.requestBody ? op.requestBody.content["application/json"].schema : null;
      out.push(`<details><summary><span class="m">${method.toUpperCase()}</span>` +
        `<code>${esc(path)}</code> — ${esc(op.summary)}</summary>` +
        (body ? `<pre>${esc(JSON.stringify(body, null, 1))}</pre>` : "") +
        `<pre>${esc(JSON.stringify(op.responses, null, 1))}</pre></details>`);
    }
  }
  document.getElementById("api").innerHTML = out.join("") +
    `<h2>Schemas</h2><pre>${esc(JSON.stringify(doc.components.schemas, null, 1))}</pre>`;
});
</script></body></html>
"""
