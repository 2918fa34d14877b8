"""The Anthropic Messages wire format: canonical (OpenAI chat) requests out, answers back.

Pure: dicts in, dicts out, no I/O, no clock, no state that outlives a call. The mapping:

- system/developer messages -> `system` text blocks; consecutive same-role turns merged;
- `tools` -> `input_schema` tools; `tool_choice` auto/none/required(->any)/named(->tool);
  `parallel_tool_calls: false` -> `disable_parallel_tool_use`;
- assistant `tool_calls` -> `tool_use` blocks; `tool` messages -> `tool_result` blocks;
- image parts: data URLs -> base64 sources, http(s) URLs -> url sources;
- `max_tokens`/`max_completion_tokens` (a per-model default when absent), `stop`,
  `temperature`, `top_p`, `user` -> `metadata.user_id`, `reasoning_effort` -> `thinking`;
- `response_format` JSON: a forced tool whose input is the JSON answer (read back as text);
- thinking blocks travel in `thinking_blocks` on assistant messages, signatures included;
- `cache_control` on a content part, a tool, a tool call or a `tool` message -> on its block;
- tool-call ids Anthropic would reject are carried as `mllm_<base64url>` and mapped back.

Answers come back through `anthropic_answer.py`, streams through `anthropic_stream.py`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..canonical import EMPTY_SCHEMA, invalid, parse_data_url, parse_tool, parse_tool_call
from ..formats import ANTHROPIC, CHAT, COUNT_TOKENS, RESPONSES, Format
from .anthropic_answer import (
    JSON_TOOL,
    JSON_TOOL_DESCRIPTION,
    anthropic_error_info,
    from_anthropic_id,
    json_answer_schema,
    parse_anthropic_message,
    to_anthropic_id,
)
from .anthropic_stream import AnthropicStreamDecoder
from .base import (
    HeaderSigner,
    SSEFraming,
    StreamDecoder,
    UpstreamModel,
    UpstreamRequest,
    Wire,
)

__all__ = [
    "ANTHROPIC_VERSION",
    "ANTHROPIC_WIRE",
    "default_max_tokens",
    "from_anthropic_id",
    "to_anthropic_id",
    "to_anthropic_request",
]

ANTHROPIC_VERSION = "2023-06-01"

_encode = msgspec.json.encode
_decode = msgspec.json.decode

# Anthropic requires max_tokens; when the client gives none, a model's usual ceiling. First
# matching prefix wins.
_DEFAULT_MAX_TOKENS: tuple[tuple[str, int], ...] = (
    ("claude-3-5", 8192),
    ("claude-3-haiku", 4096),
    ("claude-3-opus", 4096),
    ("claude-3-sonnet", 4096),
)
_FALLBACK_MAX_TOKENS = 8192

# reasoning_effort -> thinking budget_tokens (Anthropic's minimum is 1024)
_THINKING_BUDGET: dict[str, int] = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}


def default_max_tokens(model: str) -> int:
    for prefix, value in _DEFAULT_MAX_TOKENS:
        if model.startswith(prefix):
            return value
    return _FALLBACK_MAX_TOKENS


def _image_block(url: Any, param: str) -> dict[str, Any]:
    if not isinstance(url, str):
        raise invalid(param, "image_url.url must be a string")
    if url.startswith("data:"):
        parsed = parse_data_url(url)
        if parsed is None:
            raise invalid(param, "a data URL must be data:<media type>;base64,<data>")
        source = {"type": "base64", "media_type": parsed[0], "data": parsed[1]}
        return {"type": "image", "source": source}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise invalid(param, "an image URL must be http(s) or a base64 data URL")


def _file_block(file: Any, param: str) -> dict[str, Any]:
    data = file.get("file_data") if isinstance(file, dict) else None
    parsed = parse_data_url(data) if isinstance(data, str) else None
    if parsed is None:
        raise invalid(param, "only inline file_data (a base64 data URL) is supported for Anthropic")
    source = {"type": "base64", "media_type": parsed[0], "data": parsed[1]}
    return {"type": "document", "source": source}


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    """Anthropic content blocks for an OpenAI message content (a string or parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise invalid(param, "content must be a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        where = f"{param}.{i}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" or kind == "input_text":
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(where, "a text part needs a string text")
            if not text:
                continue
            block: dict[str, Any] = {"type": "text", "text": text}
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            block = _image_block(url, where)
        elif kind == "file":
            block = _file_block(part.get("file"), where)
        else:
            raise invalid(where, f"content part type {kind!r} is not supported for Anthropic")
        if "cache_control" in part:
            block["cache_control"] = part["cache_control"]
        blocks.append(block)
    return blocks


def _tool_use(call: Any, param: str) -> dict[str, Any]:
    ident, name, arguments = parse_tool_call(call, param)
    block = {"type": "tool_use", "id": to_anthropic_id(ident), "name": name, "input": arguments}
    if "cache_control" in call:
        block["cache_control"] = call["cache_control"]
    return block


def _thinking_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("thinking_blocks")
    if not isinstance(blocks, list):
        return []
    kept: list[dict[str, Any]] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "thinking" and block.get("signature"):
            thinking = {"thinking": block.get("thinking", ""), "signature": block["signature"]}
            kept.append({"type": "thinking", **thinking})
        elif block.get("type") == "redacted_thinking" and block.get("data"):
            kept.append({"type": "redacted_thinking", "data": block["data"]})
    return kept


def _tool_result(message: dict[str, Any], param: str) -> dict[str, Any]:
    ident = message.get("tool_call_id") or message.get("name") or ""
    content = message.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": to_anthropic_id(str(ident))}
    if isinstance(content, str):
        result["content"] = content
    elif content is not None:
        result["content"] = _blocks(content, param + ".content")
    if "cache_control" in message:
        result["cache_control"] = message["cache_control"]
    return result


def _marked(blocks: list[dict[str, Any]], control: Any) -> list[dict[str, Any]]:
    if control and blocks and blocks[-1].get("type") not in ("thinking", "redacted_thinking"):
        blocks[-1].setdefault("cache_control", control)
    return blocks


_PLAIN_ROLES = ("user", "system", "developer")


def _messages(
    messages: list[Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        marked = message.get("cache_control")  # on the message: its last block carries it
        if type(content) is str and not marked and role in _PLAIN_ROLES:
            # a message of plain text, the usual one: its block without the general way
            if content:
                block = [{"type": "text", "text": content}]
                if role == "user":
                    add("user", block)
                else:
                    system += block
            continue
        param = f"messages.{i}"
        if role in ("system", "developer"):
            system.extend(_marked(_blocks(content, param + ".content"), marked))
        elif role == "user":
            add("user", _marked(_blocks(content, param + ".content"), marked))
        elif role == "assistant":
            blocks = _thinking_blocks(message) + _blocks(content, param + ".content")
            for j, call in enumerate(message.get("tool_calls") or ()):
                blocks.append(_tool_use(call, f"{param}.tool_calls.{j}"))
            add("assistant", _marked(blocks, marked))
        elif role in ("tool", "function"):
            add("user", [_tool_result(message, param)])
        else:
            raise invalid(param + ".role", f"unknown role {role!r}")
    return system, turns


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        function = parse_tool(tool, i)
        schema = function.get("parameters") or EMPTY_SCHEMA
        entry: dict[str, Any] = {"name": function["name"], "input_schema": schema}
        if function.get("description"):
            entry["description"] = function["description"]
        if "cache_control" in tool:
            entry["cache_control"] = tool["cache_control"]
        out.append(entry)
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return {"type": "tool", "name": function["name"]}
    raise invalid("tool_choice", "must be auto, none, required or a named function")


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    schema = json_answer_schema(response_format)
    if schema is None:
        return None
    return {"name": JSON_TOOL, "description": JSON_TOOL_DESCRIPTION, "input_schema": schema}


# The canonical fields `to_anthropic_request` reads beyond model, messages and max_tokens.
_OPTIONAL = frozenset(
    {"n", "max_completion_tokens", "tools", "tool_choice", "response_format", "reasoning_effort"}
    | {"stop", "user", "parallel_tool_calls", "temperature", "top_p", "top_k"}
)


def to_anthropic_request(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """An Anthropic Messages request for a canonical (OpenAI chat) request."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise invalid("messages", "must be a list")
    if _OPTIONAL.isdisjoint(body):  # model, messages, max_tokens, stream: the usual request
        system, turns = _messages(messages)
        model = str(body.get("model", ""))
        plain: dict[str, Any] = {"model": model, "messages": turns}
        if system:
            plain["system"] = system
        limit = body.get("max_tokens")
        plain["max_tokens"] = limit if isinstance(limit, int) else default_max_tokens(model)
        if stream:
            plain["stream"] = True
        return plain
    if (body.get("n") or 1) != 1:
        raise invalid("n", "Anthropic models return one choice per request (n must be 1)")
    system, turns = _messages(messages)
    model = str(body.get("model", ""))
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    out: dict[str, Any] = {"model": model, "messages": turns}
    if system:
        out["system"] = system

    tools = _tools(body["tools"]) if body.get("tools") else []
    choice = _tool_choice(body.get("tool_choice")) if tools else None
    json_tool = _json_tool(body.get("response_format"))
    if json_tool is not None:
        if not tools:  # with tools of its own the model may still call them first
            choice = {"type": "tool", "name": JSON_TOOL}
        tools.append(json_tool)

    effort = body.get("reasoning_effort")
    budget = _THINKING_BUDGET.get(effort) if isinstance(effort, str) else None
    if choice is not None and choice.get("type") in ("any", "tool"):
        # Anthropic refuses thinking when the tool is forced; the forced tool (the client's
        # tool_choice, or JSON mode) is a contract, reasoning effort only a preference
        budget = None
    if budget is not None:
        limit = max_tokens if isinstance(max_tokens, int) else default_max_tokens(model)
        out["max_tokens"] = limit if limit > budget else limit + budget
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:
        out["max_tokens"] = max_tokens if isinstance(max_tokens, int) else default_max_tokens(model)
        _sampling(body, out)

    stop = body.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}

    if tools:
        out["tools"] = tools
        if body.get("parallel_tool_calls") is False:
            choice = {"type": "auto", **(choice or {}), "disable_parallel_tool_use": True}
        if choice is not None:
            out["tool_choice"] = choice
    if stream:
        out["stream"] = True
    return out


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    """temperature (OpenAI allows up to 2, Anthropic 1), top_p and top_k; recent Claude models
    refuse temperature and top_p together, so temperature alone goes when both are given.
    None of them is sent with thinking on (Anthropic refuses them then)."""
    temperature = body.get("temperature")
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)
    elif body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    if body.get("top_k") is not None:
        out["top_k"] = body["top_k"]


# What Anthropic's count_tokens endpoint takes; sampling and stream settings are refused there.
_COUNT_TOKENS_FIELDS = frozenset(
    {"model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers"}
)


class AnthropicMessages:
    """`POST {base}/messages`: Anthropic bodies as they are, canonical ones translated."""

    framing = SSEFraming(b"message_stop")
    translates = True
    format: Format | None = None

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        body["model"] = to.model
        payload = _encode(body if native else to_anthropic_request(body, stream))
        return UpstreamRequest("POST", to.base_url + "/messages", to.headers, payload)

    def parse(self, raw: bytes) -> dict[str, Any]:
        return parse_anthropic_message(raw)

    def decoder(self) -> StreamDecoder:
        return AnthropicStreamDecoder()


class AnthropicCountTokens(AnthropicMessages):
    """`POST {base}/messages/count_tokens`: Anthropic bodies only, cut to what it takes."""

    translates = False

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        payload = {k: v for k, v in body.items() if k in _COUNT_TOKENS_FIELDS}
        payload["model"] = to.model
        url = to.base_url + "/messages/count_tokens"
        return UpstreamRequest("POST", url, to.headers, _encode(payload))


_MESSAGES = AnthropicMessages()

ANTHROPIC_WIRE = Wire(
    name="anthropic",
    format=ANTHROPIC,
    # a Responses request reaches Anthropic as its canonical chat form
    endpoints={CHAT: _MESSAGES, RESPONSES: _MESSAGES, COUNT_TOKENS: AnthropicCountTokens()},
    signer=HeaderSigner("x-api-key"),
    base_headers={"Content-Type": "application/json", "anthropic-version": ANTHROPIC_VERSION},
    read_error=anthropic_error_info,
)
