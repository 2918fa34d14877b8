"""The Gemini `generateContent` wire format: canonical (OpenAI chat) requests out.

Pure: dicts in, dicts out. The mapping:

- messages -> `contents` with roles `user`/`model` (consecutive same-role turns merged);
  system/developer -> `systemInstruction`;
- assistant `tool_calls` -> `functionCall` parts (a Gemini thought signature rides in
  `extra_content.google.thought_signature`, as Google's own OpenAI endpoint does);
  `tool` messages -> `functionResponse` parts, named after the call they answer;
- `tools` -> `functionDeclarations`, their JSON schema cleaned to the subset Gemini accepts
  (`$ref`s inlined, a recursive one cut where it repeats, the expansion bounded);
- `tool_choice` -> `toolConfig.functionCallingConfig` (AUTO, NONE, ANY, allowed names);
- generation parameters -> `generationConfig`; `response_format` -> `responseMimeType` and
  `responseJsonSchema`; `reasoning_effort` -> `thinkingConfig`;
- image parts: data URLs -> `inlineData`, http(s) URLs -> `fileData`;
- `cache_control` (a prompt-cache mark Gemini has no field for) is left out and named.

The URL depends on the model and on streaming (`:streamGenerateContent?alt=sse`); the key goes
in the `x-goog-api-key` header, never in the URL. Answers come back through `gemini_answer.py`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from ..canonical import has_cache_control, invalid, parse_data_url, parse_tool, parse_tool_call
from ..formats import CHAT, COUNT_TOKENS, EMBEDDINGS, GEMINI, RESPONSES, Format
from .base import (
    HeaderSigner,
    SSEDecoder,
    SSEFraming,
    UpstreamModel,
    UpstreamRequest,
    Wire,
)
from .gemini_answer import (
    SYNTHETIC_ID_PREFIX,
    GeminiStreamTranslator,
    gemini_error_info,
    parse_gemini_response,
)
from .gemini_embeddings import GeminiCountTokens, GeminiEmbed

__all__ = [
    "GEMINI_WIRE",
    "SCHEMA_DEPTH_LIMIT",
    "SCHEMA_NODE_LIMIT",
    "clean_schema",
    "model_url",
    "to_gemini_request",
]

_encode = msgspec.json.encode
_decode = msgspec.json.decode

_MIME_BY_SUFFIX = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".heic": "image/heic",
    ".pdf": "application/pdf",
}

# The JSON-schema keywords Gemini's function `parameters` (an OpenAPI subset) accept; anything
# else ($schema, additionalProperties, $defs, strict, ...) is dropped.
_SCHEMA_KEYS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "propertyOrdering",
        "default",
        "example",
    }
)

_THINKING_BUDGET: dict[str, int] = {
    "none": 0,
    "minimal": 0,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
}

_FUNCTION_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


SCHEMA_NODE_LIMIT = 2000
"""The most schema nodes one tool's `parameters` may expand to once their `$ref`s are inlined."""
SCHEMA_DEPTH_LIMIT = 32
"""The deepest one tool's `parameters` may nest (Python's stack and Gemini both have limits)."""


class _SchemaTooLarge(Exception):
    pass


class _SchemaCleaner:
    """One schema's cleaning: the definitions its `$ref`s name, the `$ref`s being inlined on
    the current path (a cycle is cut there), and the nodes it may still produce. Inlining a
    definition used twice doubles it, so without the budget a small schema can expand to
    millions of nodes."""

    __slots__ = ("defs", "expanding", "left", "root")

    def __init__(self, root: Any, limit: int) -> None:
        self.root = root
        self.defs: dict[str, Any] = {}
        if isinstance(root, dict):
            for key in ("definitions", "$defs"):
                if isinstance(root.get(key), dict):
                    self.defs.update(root[key])
        self.expanding = {"#"}  # the root is being expanded from the start
        self.left = limit

    def clean(self, schema: Any, depth: int) -> Any:
        if isinstance(schema, list):
            return [self.clean(item, depth) for item in schema]
        if not isinstance(schema, dict):
            return schema
        self.left -= 1
        if self.left < 0 or depth > SCHEMA_DEPTH_LIMIT:
            raise _SchemaTooLarge
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = "#" if ref == "#" else ref.rsplit("/", 1)[-1]
            target = self.root if name == "#" else self.defs.get(name)
            if isinstance(target, dict):
                return self._inline(name, target, schema, depth)
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "const":
                out["enum"] = [value]
            elif key == "type" and isinstance(value, list):
                kinds = [k for k in value if k != "null"]
                out["type"] = kinds[0] if kinds else "string"
                if "null" in value:
                    out["nullable"] = True
            elif key == "properties" and isinstance(value, dict):
                out[key] = {name: self.clean(sub, depth + 1) for name, sub in value.items()}
            elif key in ("items", "anyOf"):
                out[key] = self.clean(value, depth + 1)
            elif key in _SCHEMA_KEYS:
                out[key] = value
        if out.get("type") == "object" and "properties" in out and "required" in out:
            out["required"] = [r for r in out["required"] if r in out["properties"]]
        return out

    def _inline(self, name: str, target: dict[str, Any], ref: dict[str, Any], depth: int) -> Any:
        description = ref.get("description") or target.get("description")
        if name in self.expanding:
            # a cycle (a tree node's children): Gemini takes no $ref, so any object will do
            stand_in: dict[str, Any] = {"type": "object"}
            if isinstance(description, str) and description:
                stand_in["description"] = description
            return stand_in
        self.expanding.add(name)
        try:
            out = self.clean(target, depth)
        finally:
            self.expanding.discard(name)
        if isinstance(out, dict) and isinstance(ref.get("description"), str):
            out["description"] = ref["description"]  # the use site says more than the type
        return out


def clean_schema(schema: Any, *, param: str = "parameters", tool: str = "") -> Any:
    """A JSON schema reduced to what Gemini accepts: local `$ref`s inlined (a recursive one
    becomes a plain object where it repeats), unknown keywords dropped,
    `type: [x, "null"]` -> `type: x, nullable: true`, `const` -> `enum`.

    Raises `InvalidRequestError` (at `param`) for a schema that expands past
    `SCHEMA_NODE_LIMIT` nodes or nests deeper than `SCHEMA_DEPTH_LIMIT`.
    """
    try:
        return _SchemaCleaner(schema, SCHEMA_NODE_LIMIT).clean(schema, 0)
    except _SchemaTooLarge:
        owner = f"the parameters of tool {tool!r} expand" if tool else "the schema expands"
        raise invalid(
            param,
            f"{owner} to more than {SCHEMA_NODE_LIMIT} schema nodes or nest deeper than "
            f"{SCHEMA_DEPTH_LIMIT} levels once their $refs are inlined; simplify the schema",
        ) from None


def _mime_of(url: str) -> str:
    path = url.split("?", 1)[0].lower()
    for suffix, mime in _MIME_BY_SUFFIX.items():
        if path.endswith(suffix):
            return mime
    return "image/jpeg"


def _media_part(url: Any, param: str) -> dict[str, Any]:
    if not isinstance(url, str):
        raise invalid(param, "image_url.url must be a string")
    if url.startswith("data:"):
        parsed = parse_data_url(url)
        if parsed is None:
            raise invalid(param, "a data URL must be data:<media type>;base64,<data>")
        return {"inlineData": {"mimeType": parsed[0], "data": parsed[1]}}
    if url.startswith(("http://", "https://", "gs://")):
        return {"fileData": {"mimeType": _mime_of(url), "fileUri": url}}
    raise invalid(param, "an image URL must be http(s) or a base64 data URL")


def _parts(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise invalid(param, "content must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "input_text"):
            if part.get("text"):
                parts.append({"text": str(part["text"])})
        elif kind == "image_url":
            image = part.get("image_url")
            parts.append(_media_part(image.get("url") if isinstance(image, dict) else image, param))
        elif kind == "file":
            file = part.get("file") or {}
            parts.append(_media_part(file.get("file_data"), f"{param}.{i}"))
        else:
            raise invalid(f"{param}.{i}", f"content part type {kind!r} is not supported for Gemini")
    return parts


def _function_call(call: Any, param: str) -> tuple[str, dict[str, Any]]:
    ident, name, args = parse_tool_call(call, param)
    body: dict[str, Any] = {"name": name, "args": args}
    if ident and not ident.startswith(SYNTHETIC_ID_PREFIX):
        body["id"] = ident
    part: dict[str, Any] = {"functionCall": body}
    google = (call.get("extra_content") or {}).get("google") or {}
    if isinstance(google, dict) and google.get("thought_signature"):
        part["thoughtSignature"] = google["thought_signature"]
    return ident, part


def _function_response(message: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    ident = str(message.get("tool_call_id") or "")
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    result: Any = content if content is not None else ""
    if isinstance(result, str):
        try:
            decoded = _decode(result)
        except msgspec.DecodeError:
            decoded = None
        result = decoded if isinstance(decoded, dict) else {"result": result}
    name = names.get(ident) or message.get("name") or ""
    body: dict[str, Any] = {"name": name, "response": result}
    if ident and not ident.startswith(SYNTHETIC_ID_PREFIX):
        body["id"] = ident
    return {"functionResponse": body}


def _contents(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the results

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if not parts:
            return
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})

    for i, message in enumerate(messages):
        param = f"messages.{i}"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(message.get("content"), param + ".content"))
        elif role == "user":
            add("user", _parts(message.get("content"), param + ".content"))
        elif role == "assistant":
            parts = _parts(message.get("content"), param + ".content")
            for j, call in enumerate(message.get("tool_calls") or ()):
                ident, part = _function_call(call, f"{param}.tool_calls.{j}")
                names[ident] = part["functionCall"]["name"]
                parts.append(part)
            add("model", parts)
        elif role in ("tool", "function"):
            add("user", [_function_response(message, names)])
        else:
            raise invalid(param + ".role", f"unknown role {role!r}")
    return system, contents


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    declarations: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        function = parse_tool(tool, i)
        entry: dict[str, Any] = {"name": function["name"]}
        if function.get("description"):
            entry["description"] = function["description"]
        param = f"tools.{i}.function.parameters"
        schema = clean_schema(function.get("parameters"), param=param, tool=function["name"])
        if isinstance(schema, dict) and schema.get("properties"):
            entry["parameters"] = schema  # Gemini refuses an object with no properties
        declarations.append(entry)
    return [{"functionDeclarations": declarations}]


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str) and choice in _FUNCTION_MODES:
        return {"functionCallingConfig": {"mode": _FUNCTION_MODES[choice]}}
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            config = {"mode": "ANY", "allowedFunctionNames": [function["name"]]}
            return {"functionCallingConfig": config}
    raise invalid("tool_choice", "must be auto, none, required or a named function")


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, gemini_name in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("n", "candidateCount"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("seed", "seed"),
    ):
        if body.get(name) is not None:
            config[gemini_name] = body[name]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        config["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        config["responseMimeType"] = "application/json"
        spec = response_format.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            config["responseJsonSchema"] = spec["schema"]
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and effort in _THINKING_BUDGET:
        budget = _THINKING_BUDGET[effort]
        config["thinkingConfig"] = {"thinkingBudget": budget, "includeThoughts": budget > 0}
    return config


def to_gemini_request(body: dict[str, Any]) -> dict[str, Any]:
    """A Gemini `generateContent` body for a canonical (OpenAI chat) request."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise invalid("messages", "must be a list")
    system, contents = _contents(messages)
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        tool_config = _tool_config(body.get("tool_choice"))
        if tool_config is not None:
            out["toolConfig"] = tool_config
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


def model_url(base_url: str, model: str, stream: bool) -> str:
    """`{base}/models/{model}:method`, the model percent-encoded as one path segment: a
    model name can never change the upstream path or query."""
    method = ":streamGenerateContent?alt=sse" if stream else ":generateContent"
    return base_url + "/models/" + quote(model, safe="") + method


class GeminiGenerate:
    """`POST {base}/models/{model}:generateContent` (`:streamGenerateContent?alt=sse`)."""

    framing = SSEFraming(b"")
    translates = True
    format: Format | None = None

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        url = model_url(to.base_url, to.model, stream)
        dropped: tuple[str, ...] = ()
        if native:
            body.pop("model", None)
            payload = _encode(body)
        else:
            payload = _encode(to_gemini_request(body))
            if has_cache_control(body):
                dropped = ("cache_control",)  # Gemini caches by cachedContents, not marks
        return UpstreamRequest("POST", url, to.headers, payload, dropped)

    def parse(self, raw: bytes) -> dict[str, Any]:
        return parse_gemini_response(raw)

    def decoder(self) -> SSEDecoder:
        return SSEDecoder(GeminiStreamTranslator())


_GENERATE = GeminiGenerate()

GEMINI_WIRE = Wire(
    name="gemini",
    format=GEMINI,
    # a Responses request reaches Gemini as its canonical chat form
    endpoints={
        CHAT: _GENERATE,
        RESPONSES: _GENERATE,
        EMBEDDINGS: GeminiEmbed(),
        COUNT_TOKENS: GeminiCountTokens(),  # Gemini bodies only (the Gemini-native ingress)
    },
    signer=HeaderSigner("x-goog-api-key"),
    base_headers={"Content-Type": "application/json"},
    read_error=gemini_error_info,
)
