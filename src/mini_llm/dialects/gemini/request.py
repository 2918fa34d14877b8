"""Gemini-native requests -> the canonical forms (OpenAI chat; OpenAI embeddings). Pure.

- `systemInstruction` -> a system message; `contents` -> messages (`model` -> assistant);
- `text` parts -> text; `inlineData` -> an image part (a data URL; other media types -> a
  file part); `fileData` -> an image part with its URI;
- `functionCall` -> an assistant tool call (its `id`, else one made from its place; a
  `thoughtSignature` rides in `extra_content.google.thought_signature`);
  `functionResponse` -> a tool message answering the call of that id, else the oldest
  unanswered call of that name;
- `thought` parts of earlier model turns are dropped (named in `x-mini-llm-dropped`);
- `tools[].functionDeclarations` -> function tools (Gemini's upper-case OpenAPI types made
  JSON schema; `parametersJsonSchema` as it is); `toolConfig` -> `tool_choice`;
- `generationConfig` -> sampling fields, `maxOutputTokens` -> `max_tokens`, `stopSequences`
  -> `stop`, `candidateCount` -> `n`, `responseMimeType`/`responseSchema`/`responseJsonSchema`
  -> `response_format`, `thinkingConfig` -> `reasoning_effort`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgspec

from ...canonical import invalid
from ...schema.gemini import (
    BatchEmbedContentsRequest,
    Content,
    EmbedContentRequest,
    GenerateContentRequest,
    GenerationConfig,
    Part,
    Tool,
    ToolConfig,
)

__all__ = ["openai_schema", "to_canonical_embeddings", "to_canonical_request"]

_encode = msgspec.json.encode


def openai_schema(schema: Any) -> Any:
    """A Gemini (OpenAPI subset) schema as JSON schema: `STRING` -> `string`, `nullable`
    -> a type list; everything else as it is."""
    if isinstance(schema, list):
        return [openai_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key in ("properties",) and isinstance(value, dict):
            out[key] = {name: openai_schema(sub) for name, sub in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = openai_schema(value)
        elif key in ("nullable", "propertyOrdering"):
            continue
        else:
            out[key] = value
    if schema.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


class _Calls:
    """Ids for a conversation's function calls, and which are still unanswered by name."""

    def __init__(self) -> None:
        self.count = 0
        self.ids: set[str] = set()
        self.pending: dict[str, deque[str]] = {}

    def made(self, name: str, ident: str | None) -> str:
        self.count += 1
        ident = ident or f"call_{self.count - 1}_{name}"[:64]
        self.ids.add(ident)
        self.pending.setdefault(name, deque()).append(ident)
        return ident

    def answered(self, name: str, ident: str | None) -> str:
        queue = self.pending.get(name)
        if ident and ident in self.ids:
            if queue and ident in queue:
                queue.remove(ident)
            return ident
        if queue:
            return queue.popleft()
        return ident or f"call_unmatched_{name}"[:64]


def _media(blob_mime: str, data: str) -> dict[str, Any]:
    url = f"data:{blob_mime};base64,{data}"
    if blob_mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": url}}
    return {"type": "file", "file": {"file_data": url, "filename": "file"}}


def _user_parts(parts: list[Part], param: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, part in enumerate(parts):
        if part.text is not None and not part.thought:
            out.append({"type": "text", "text": part.text})
        elif part.inline_data is not None:
            out.append(_media(part.inline_data.mime_type, part.inline_data.data))
        elif part.file_data is not None:
            out.append({"type": "image_url", "image_url": {"url": part.file_data.file_uri}})
        elif part.function_call is not None:
            raise invalid(f"{param}.{i}", "a functionCall belongs in a model turn")
    return out


def _messages(request: GenerateContentRequest, dropped: list[str]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if request.system_instruction is not None:
        text = "".join(p.text or "" for p in request.system_instruction.parts)
        if text:
            messages.append({"role": "system", "content": text})
    calls = _Calls()
    for i, content in enumerate(request.contents):
        param = f"contents.{i}.parts"
        if content.role == "model":
            messages.append(_assistant(content, calls, dropped))
            continue
        responses = [p.function_response for p in content.parts if p.function_response]
        for response in responses:
            assert response is not None
            ident = calls.answered(response.name, response.id)
            result = response.response if response.response is not None else {}
            text = _result_text(result)
            messages.append({"role": "tool", "tool_call_id": ident, "content": text})
        user = _user_parts(content.parts, param)
        if user:
            plain = all(p["type"] == "text" for p in user)
            body: Any = "".join(p["text"] for p in user) if plain else user
            messages.append({"role": "user", "content": body})
        elif not responses:
            raise invalid(param, "a content needs at least one part")
    return messages


def _result_text(result: dict[str, Any]) -> str:
    """A function's result as a tool message's text: `{"output": "..."}` and
    `{"result": "..."}` (the usual wrappings of a plain answer) as their text, else JSON."""
    if len(result) == 1:
        ((key, value),) = result.items()
        if key in ("output", "result", "content") and isinstance(value, str):
            return value
    return _encode(result).decode()


def _assistant(content: Content, calls: _Calls, dropped: list[str]) -> dict[str, Any]:
    texts: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for part in content.parts:
        if part.thought:
            if "thought" not in dropped:
                dropped.append("thought")
        elif part.function_call is not None:
            call = part.function_call
            ident = calls.made(call.name, call.id)
            tool: dict[str, Any] = {
                "id": ident,
                "type": "function",
                "function": {"name": call.name, "arguments": _encode(call.args or {}).decode()},
            }
            if part.thought_signature:
                tool["extra_content"] = {"google": {"thought_signature": part.thought_signature}}
            tool_calls.append(tool)
        elif part.text is not None:
            texts.append(part.text)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return message


def _tools(tools: list[Tool]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for tool in tools:
        for declaration in tool.function_declarations or ():
            function: dict[str, Any] = {"name": declaration.name}
            if declaration.description:
                function["description"] = declaration.description
            if declaration.parameters_json_schema is not None:
                function["parameters"] = declaration.parameters_json_schema
            elif declaration.parameters is not None:
                function["parameters"] = openai_schema(declaration.parameters)
            else:
                function["parameters"] = {"type": "object", "properties": {}}
            out.append({"type": "function", "function": function})
    return out


def _tool_choice(config: ToolConfig | None) -> Any:
    calling = config.function_calling_config if config is not None else None
    if calling is None or calling.mode in (None, "AUTO", "MODE_UNSPECIFIED", "VALIDATED"):
        return None
    if calling.mode == "NONE":
        return "none"
    names = calling.allowed_function_names or []
    if len(names) == 1:
        return {"type": "function", "function": {"name": names[0]}}
    return "required"


_EFFORT = ((0, "none"), (1024, "low"), (8192, "medium"))


def _generation(config: GenerationConfig, out: dict[str, Any]) -> None:
    for field, name in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("presence_penalty", "presence_penalty"),
        ("frequency_penalty", "frequency_penalty"),
        ("seed", "seed"),
        ("candidate_count", "n"),
        ("max_output_tokens", "max_tokens"),
    ):
        value = getattr(config, field)
        if value is not None:
            out[name] = value
    if config.stop_sequences:
        out["stop"] = config.stop_sequences
    schema = config.response_json_schema
    if schema is None and config.response_schema is not None:
        schema = openai_schema(config.response_schema)
    if schema is not None:
        spec = {"name": "response", "schema": schema}
        out["response_format"] = {"type": "json_schema", "json_schema": spec}
    elif config.response_mime_type == "application/json":
        out["response_format"] = {"type": "json_object"}
    thinking = config.thinking_config
    if thinking is not None and thinking.thinking_budget is not None:
        budget = thinking.thinking_budget
        effort = "high"
        if budget >= 0:
            effort = next((name for limit, name in _EFFORT if budget <= limit), "high")
        out["reasoning_effort"] = effort
    elif thinking is not None and thinking.thinking_level:
        out["reasoning_effort"] = thinking.thinking_level.lower()


def to_canonical_request(
    request: GenerateContentRequest, model: str, stream: bool, dropped: list[str]
) -> dict[str, Any]:
    """The canonical (OpenAI chat) request for a Gemini `generateContent` request."""
    out: dict[str, Any] = {"model": model, "messages": _messages(request, dropped)}
    if stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    if request.tools:
        tools = _tools(request.tools)
        if tools:
            out["tools"] = tools
            choice = _tool_choice(request.tool_config)
            if choice is not None:
                out["tool_choice"] = choice
    if request.generation_config is not None:
        _generation(request.generation_config, out)
    if request.safety_settings and "safetySettings" not in dropped:
        dropped.append("safetySettings")
    return out


def _texts(request: EmbedContentRequest, param: str) -> str:
    text = "".join(p.text or "" for p in request.content.parts)
    if not text:
        raise invalid(param, "the content to embed needs a text part")
    return text


def to_canonical_embeddings(
    requests: list[EmbedContentRequest] | BatchEmbedContentsRequest, model: str
) -> dict[str, Any]:
    """The canonical (OpenAI) embeddings request for Gemini embed requests."""
    if isinstance(requests, BatchEmbedContentsRequest):
        requests = requests.requests
    texts = [_texts(r, f"requests.{i}.content") for i, r in enumerate(requests)]
    out: dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float"}
    dimensions = next((r.output_dimensionality for r in requests if r.output_dimensionality), None)
    if dimensions is not None:
        out["dimensions"] = dimensions
    return out
