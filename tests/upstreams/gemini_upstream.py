"""A mock Gemini upstream speaking the real wire format (JSON, SSE, error bodies).

`POST /v1beta/models/<model>:generateContent` answers one `GenerateContentResponse`;
`:streamGenerateContent?alt=sse` answers a stream of them (text in pieces, function calls
whole, the finish reason and `usageMetadata` on the last). Answers follow `scenario.decide`.
Like the real API it refuses a key in the URL, a request without `x-goog-api-key` (401-style
403... here 401 for a missing key, as the conformance cases want one status per case), and
function `parameters` carrying JSON-schema keywords it does not accept. A model named
`error-<status>` answers that status with a Gemini error body; one named `agent-reader...` is a
scripted coding agent (`agent_script`). Every request is recorded.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mini_llm.schema.gemini import camel_keys

from .agent_script import gemini_agent, is_agent
from .openai_upstream import Recorded, send_stream
from .scenario import Ask, Reply, decide, pieces

GeminiReply = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
REJECTED_SCHEMA_KEYS = ("additionalProperties", "$schema", "$defs", "$ref", "strict")
USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13}


def error_response(status: int, message: str) -> web.Response:
    body = {
        "error": {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    }
    return web.json_response(body, status=status)


def _rejected_key(schema: Any) -> str | None:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key in REJECTED_SCHEMA_KEYS:
                return str(key)
            found = _rejected_key(value)
            if found:
                return found
    elif isinstance(schema, list):
        for item in schema:
            found = _rejected_key(item)
            if found:
                return found
    return None


def ask_of(body: dict[str, Any]) -> Ask:
    system = body.get("systemInstruction") or {}
    ask = Ask(system="".join(p.get("text", "") for p in system.get("parts") or ()))
    contents = body.get("contents") or []
    for content in contents:
        if content.get("role") != "user":
            continue
        parts = content.get("parts") or []
        results = [p["functionResponse"] for p in parts if "functionResponse" in p]
        texts = [p["text"] for p in parts if "text" in p]
        if texts or not results:
            ask.user_texts.append("".join(texts))
        for part in parts:
            if "inlineData" in part:
                ask.images.append(part["inlineData"]["mimeType"])
            elif "fileData" in part:
                ask.images.append(part["fileData"]["fileUri"])
        if content is contents[-1] and results:
            ask.tool_results = [
                r["response"].get("result", json.dumps(r["response"])) for r in results
            ]
    for tool in body.get("tools") or ():
        for declaration in tool.get("functionDeclarations") or ():
            schema = declaration.get("parameters") or declaration.get("parametersJsonSchema")
            ask.tools.append((declaration["name"], schema or {}))
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if config.get("mode") == "NONE":
        ask.tools_refused = True
    elif config.get("mode") == "ANY" and config.get("allowedFunctionNames"):
        ask.forced_tool = config["allowedFunctionNames"][0]
    generation = body.get("generationConfig") or {}
    if generation.get("responseMimeType") == "application/json":
        ask.json_schema = generation.get("responseJsonSchema") or {
            "type": "object",
            "properties": {"answer": {"type": "string"}},
        }
    return ask


def _parts(reply: Reply) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
    for call in reply.calls:  # Gemini gives no call ids
        parts.append({"functionCall": {"name": call.name, "args": call.args}})
    return parts


def response_json(
    model: str,
    parts: list[dict[str, Any]],
    finish: str | None,
    usage: bool,
    response_id: str | None = None,
) -> dict[str, Any]:
    """One `GenerateContentResponse`; like the real API's, its `responseId` is its own (the
    events of one stream share theirs)."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    answer: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": model,
        "responseId": response_id or "gem-" + uuid.uuid4().hex[:12],
    }
    if usage:
        answer["usageMetadata"] = USAGE
    return answer


def smart() -> GeminiReply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        model = request.match_info["model"]
        answer = gemini_agent(body) if is_agent(model) else decide(ask_of(body))
        if request.match_info["method"] == "generateContent":
            return web.json_response(response_json(model, _parts(answer), "STOP", True))
        rid = "gem-" + uuid.uuid4().hex[:12]
        events = [
            response_json(model, [{"text": p}], None, False, rid) for p in pieces(answer.text)
        ]
        calls = _parts(Reply(calls=answer.calls))
        if calls or not events:
            events.append(response_json(model, calls or [{"text": ""}], None, False, rid))
        last = events[-1]
        last["candidates"][0]["finishReason"] = "STOP"
        last["usageMetadata"] = USAGE
        data = [f"data: {json.dumps(e)}\r\n\r\n".encode() for e in events]
        return await send_stream(request, data)

    return reply


class GeminiUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[GeminiReply] = deque()

    def push(self, *replies: GeminiReply) -> None:
        self._script.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self._script.clear()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1beta/models/{model}:{method}", self._generate)
        return app

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = json.loads(await request.read())
        self.requests.append(Recorded(request.method, request.path_qs, dict(request.headers), body))
        method = request.match_info["method"]
        if "key" in request.query:
            return error_response(400, "the key must not travel in the URL (mock policy)")
        if not request.headers.get("x-goog-api-key"):
            return error_response(401, "API key not valid. Please pass a valid API key.")
        if method in ("embedContent", "batchEmbedContents", "countTokens"):
            return self._other(request.match_info["model"], method, body)
        if method not in ("generateContent", "streamGenerateContent"):
            return error_response(404, f"unknown method {method}")
        if method == "streamGenerateContent" and request.query.get("alt") != "sse":
            return error_response(400, "this mock only streams with alt=sse")
        if "model" in body:
            return error_response(400, 'Invalid JSON payload received. Unknown name "model"')
        model = request.match_info["model"]
        if model.startswith("error-") and model[6:].isdigit():
            return error_response(int(model[6:]), f"mock gemini error {model[6:]}")
        for tool in body.get("tools") or ():
            for declaration in tool.get("functionDeclarations") or ():
                bad = _rejected_key(declaration.get("parameters"))
                if bad:
                    message = f'Invalid JSON payload received. Unknown name "{bad}"'
                    return error_response(400, message)
        reply = self._script.popleft() if self._script else smart()
        # like the API, it takes the proto field names too (google-genai sends `mime_type`)
        return await reply(request, camel_keys(body))

    def _other(self, model: str, method: str, body: dict[str, Any]) -> web.Response:
        """`countTokens` (4 characters a token) and the embeddings: the mock provider's vectors
        (same text, same vector), `model` of each batch request checked as the API does."""
        from mini_llm.providers.mock_models import mock_vector

        if model.startswith("error-") and model[6:].isdigit():
            return error_response(int(model[6:]), f"mock gemini error {model[6:]}")
        if method == "countTokens":
            text = json.dumps(body.get("contents") or [])
            return web.json_response({"totalTokens": len(text) // 4})

        def values(request: dict[str, Any]) -> dict[str, Any]:
            parts = (request.get("content") or {}).get("parts") or []
            text = "".join(p.get("text", "") for p in parts)
            return {"values": mock_vector(text, request.get("outputDimensionality") or 32)}

        if method == "embedContent":
            if "model" in body:
                return error_response(400, 'Invalid JSON payload received. Unknown name "model"')
            return web.json_response({"embedding": values(body)})
        requests = body.get("requests") or []
        for request in requests:
            if request.get("model") != f"models/{model}":
                message = f"requests[].model must be models/{model}, got {request.get('model')}"
                return error_response(400, message)
        return web.json_response({"embeddings": [values(r) for r in requests]})
