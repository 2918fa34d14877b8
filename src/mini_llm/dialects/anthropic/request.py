"""An Anthropic Messages request -> a canonical (OpenAI chat) request. Pure.

What maps:

- `system` -> a leading system message; a mid-conversation `{"role": "system"}` message -> a
  system message in its place; text, image and document blocks -> content parts; search
  results -> text parts (title, source, their text);
- `tool_result` blocks -> `tool` messages, placed before the rest of their user turn;
- assistant `tool_use` blocks -> `tool_calls`; thinking blocks -> `thinking_blocks` (with their
  signatures) and `reasoning_content`;
- `tools`, `tool_choice` (any -> required, tool -> a named function),
  `disable_parallel_tool_use` -> `parallel_tool_calls: false`;
- `max_tokens`, `stop_sequences` -> `stop`, `temperature`, `top_p`, `metadata.user_id` -> `user`;
  a stream asks for usage (`stream_options.include_usage`) so `message_delta` can report it;
- `output_config.effort` -> `reasoning_effort` (xhigh and max as high); else thinking
  `enabled` -> `reasoning_effort` by its budget; `adaptive` (and `between_tools`) -> the
  target's default reasoning; `disabled` -> none asked;
- `output_config.format` (a JSON schema) -> `response_format` json_schema.

What cannot map is dropped and named, never refused: the names (`cache_control`,
`context_management`, `top_k`, `tools.web_search_20250305`, `server_tool_use`, ...) go into
the `dropped` list the caller gives, in the order first met, each once; the gateway reports
them in the `x-mini-llm-dropped` response header.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ...schema.anthropic import (
    Base64Source,
    Block,
    ContentSource,
    DocumentBlock,
    FileSource,
    ImageBlock,
    MessagesRequest,
    RedactedThinkingBlock,
    SearchResultBlock,
    TextBlock,
    TextSource,
    ThinkingBlock,
    ToolReferenceBlock,
    ToolResultBlock,
    ToolUseBlock,
    URLSource,
)

__all__ = ["MAPPED_FIELDS", "dropped_fields", "to_canonical_request"]

_encode = msgspec.json.encode

_TOOL_CHOICE: dict[str, Any] = {"auto": "auto", "any": "required", "none": "none"}

MAPPED_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "output_config",
    }
)
"""Top-level request fields translation carries; any other is dropped by name."""

_EFFORT = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_TOOL_FIELDS = frozenset({"name", "input_schema", "description", "type"})


class _Dropped:
    """Names of what could not be carried, each once, in the order first met."""

    __slots__ = ("names",)

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def add(self, name: str) -> None:
        if name not in self.names:
            self.names.append(name)


def _budget_effort(budget: int | None) -> str:
    if budget is None or budget > 8192:
        return "high"
    return "low" if budget <= 2048 else "medium"


def _image_part(block: ImageBlock, dropped: _Dropped) -> dict[str, Any] | None:
    source = block.source
    if isinstance(source, Base64Source):
        url = f"data:{source.media_type};base64,{source.data}"
    elif isinstance(source, URLSource):
        url = source.url
    else:
        dropped.add("image.source.file")
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def _document_parts(block: DocumentBlock, dropped: _Dropped) -> list[dict[str, Any]]:
    source = block.source
    if block.context:
        dropped.add("document.context")
    if isinstance(source, TextSource):
        return [{"type": "text", "text": source.data}]
    if isinstance(source, Base64Source):
        data_url = f"data:{source.media_type};base64,{source.data}"
        name = block.title or "document.pdf"
        return [{"type": "file", "file": {"filename": name, "file_data": data_url}}]
    if isinstance(source, FileSource):
        return [{"type": "file", "file": {"file_id": source.file_id}}]
    if isinstance(source, ContentSource):
        content = source.content
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        parts: list[dict[str, Any]] = []
        for item in content if isinstance(content, list) else ():
            if isinstance(item, dict) and item.get("type") == "text":
                parts.append({"type": "text", "text": str(item.get("text", ""))})
            elif isinstance(item, dict) and item.get("type") == "image":
                try:
                    part = _image_part(msgspec.convert(item, ImageBlock), dropped)
                except msgspec.ValidationError:
                    part = None
                    dropped.add("document.source.content")
                if part is not None:
                    parts.append(part)
        return parts
    dropped.add("document.source.url")
    return []


def _search_result_text(block: SearchResultBlock) -> str:
    body = "\n".join(part.text for part in block.content)
    return f"{block.title}\n{block.source}\n{body}".strip()


def _parts(block: Block, dropped: _Dropped) -> list[dict[str, Any]]:
    """Content parts for a user block (not a tool result), or none (named as dropped)."""
    if isinstance(block, TextBlock):
        return [{"type": "text", "text": block.text}]
    if isinstance(block, ImageBlock):
        part = _image_part(block, dropped)
        return [part] if part is not None else []
    if isinstance(block, DocumentBlock):
        return _document_parts(block, dropped)
    if isinstance(block, SearchResultBlock):
        return [{"type": "text", "text": _search_result_text(block)}]
    dropped.add(type(block).__struct_config__.tag or "block")  # type: ignore[arg-type]
    return []


def _tool_message(block: ToolResultBlock, dropped: _Dropped) -> dict[str, Any]:
    """A `tool` message: its text, as tool messages take everywhere; other parts (images) are
    dropped and named."""
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        pieces = []
        for part in content:
            if isinstance(part, TextBlock):
                pieces.append(part.text)
            elif isinstance(part, SearchResultBlock):
                pieces.append(_search_result_text(part))
            elif isinstance(part, DocumentBlock) and isinstance(part.source, TextSource):
                pieces.append(part.source.data)
            elif isinstance(part, ToolReferenceBlock):
                pieces.append(f"(tool {part.tool_name})")
            else:
                dropped.add("tool_result." + str(type(part).__struct_config__.tag))
        text = "\n".join(pieces)
    if block.is_error:
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}


def _user_messages(blocks: list[Block], dropped: _Dropped) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, ToolResultBlock):
            tools.append(_tool_message(block, dropped))
        else:
            parts.extend(_parts(block, dropped))
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        content: Any = "\n".join(p["text"] for p in parts) if only_text else parts
        tools.append({"role": "user", "content": content})
    return tools


def _assistant_message(blocks: list[Block], dropped: _Dropped) -> dict[str, Any] | None:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            function = {"name": block.name, "arguments": _encode(block.input).decode()}
            calls.append({"id": block.id, "type": "function", "function": function})
        elif isinstance(block, ThinkingBlock):
            reasoning.append(block.thinking)
            thinking.append(
                {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
            )
        elif isinstance(block, RedactedThinkingBlock):
            thinking.append({"type": "redacted_thinking", "data": block.data})
        else:
            # images, documents and server tool blocks: nothing an assistant turn can carry
            dropped.add(str(type(block).__struct_config__.tag))
    if not (texts or calls or thinking):
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
        message["reasoning_content"] = "".join(reasoning)
    return message


def _system_text(content: str | Sequence[msgspec.Struct], dropped: _Dropped) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for block in content:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        else:
            dropped.add("system." + str(type(block).__struct_config__.tag))
    return "\n".join(texts)


def _tools(request: MessagesRequest, out: dict[str, Any], dropped: _Dropped) -> None:
    tools = []
    for tool in request.tools or ():
        if tool.type not in (None, "custom"):
            dropped.add(f"tools.{tool.type}")  # an Anthropic server tool
            continue
        function: dict[str, Any] = {
            "name": tool.name,
            "parameters": tool.input_schema or {"type": "object", "properties": {}},
        }
        if tool.description:
            function["description"] = tool.description
        tools.append({"type": "function", "function": function})
    if not tools:
        return
    out["tools"] = tools
    choice = request.tool_choice
    if choice is not None:
        if choice.type == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.name or ""}}
        else:
            out["tool_choice"] = _TOOL_CHOICE[choice.type]
        if choice.disable_parallel_tool_use and choice.type != "none":
            out["parallel_tool_calls"] = False


def _reasoning(request: MessagesRequest, out: dict[str, Any], dropped: _Dropped) -> None:
    thinking = request.thinking
    config = request.output_config
    effort = _EFFORT.get(config.effort or "") if config is not None else None
    if config is not None and config.effort and effort is None:
        dropped.add("output_config.effort")
    if thinking is not None:
        if thinking.type not in ("enabled", "adaptive", "disabled", "between_tools"):
            dropped.add("thinking")
        elif thinking.type == "disabled":
            effort = None  # no thinking asked: the target's least
        elif thinking.type == "enabled" and effort is None:
            effort = _budget_effort(thinking.budget_tokens)
        if thinking.display == "omitted":
            dropped.add("thinking.display")
    if effort is not None:
        out["reasoning_effort"] = effort
    output_format = config.format if config is not None else None
    if output_format is not None:
        if output_format.type == "json_schema" and output_format.schema is not None:
            spec = {"name": "output", "schema": output_format.schema}
            out["response_format"] = {"type": "json_schema", "json_schema": spec}
        else:
            dropped.add("output_config.format")


def to_canonical_request(
    request: MessagesRequest, dropped: list[str] | None = None
) -> dict[str, Any]:
    """A canonical request for a validated Anthropic one; what it cannot carry is named in
    `dropped` (see `dropped_fields` for the fields of the raw body)."""
    lost = _Dropped(dropped if dropped is not None else [])
    messages: list[dict[str, Any]] = []
    system = request.system
    if system:
        messages.append({"role": "system", "content": _system_text(system, lost)})
    for message in request.messages:
        content = message.content
        if message.role == "system":
            messages.append({"role": "system", "content": _system_text(content, lost)})
        elif isinstance(content, str):
            messages.append({"role": message.role, "content": content})
        elif message.role == "user":
            messages.extend(_user_messages(content, lost))
        else:
            assistant = _assistant_message(content, lost)
            if assistant is not None:
                messages.append(assistant)

    out: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.max_tokens is not None:
        out["max_tokens"] = request.max_tokens
    if request.stop_sequences:
        out["stop"] = request.stop_sequences
    if request.temperature is not None:
        out["temperature"] = request.temperature
    if request.top_p is not None:
        out["top_p"] = request.top_p
    if request.metadata is not None and request.metadata.user_id:
        out["user"] = request.metadata.user_id
    _tools(request, out, lost)
    _reasoning(request, out, lost)
    if request.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def dropped_fields(body: dict[str, Any], dropped: list[str]) -> None:
    """Name, in `dropped`, the fields of a raw Messages body that translation leaves out:
    top-level fields it does not map, `cache_control` and `citations` wherever they are,
    client-tool options (`strict`, `defer_loading`...), metadata other than `user_id`."""
    lost = _Dropped(dropped)
    for key in body:
        if key not in MAPPED_FIELDS:
            lost.add(key)
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        for key in metadata:
            if key != "user_id":
                lost.add("metadata." + str(key))
    system = body.get("system")
    _block_fields(system if isinstance(system, list) else (), lost)
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        _block_fields(content if isinstance(content, list) else (), lost)
    for tool in body.get("tools") or ():
        if not isinstance(tool, dict) or tool.get("type") not in (None, "custom"):
            if isinstance(tool, dict) and "cache_control" in tool:
                lost.add("cache_control")
            continue
        for key in tool:
            if key == "cache_control":
                lost.add("cache_control")
            elif key not in _TOOL_FIELDS:
                lost.add("tools." + str(key))


def _block_fields(blocks: Any, lost: _Dropped) -> None:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("cache_control") is not None:
            lost.add("cache_control")
        if block.get("citations"):
            lost.add("citations")
        inner = block.get("content")
        if isinstance(inner, list) and block.get("type") in ("tool_result", "search_result"):
            _block_fields(inner, lost)
