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
- `output_config.format` (a JSON schema) -> `response_format` json_schema;
- `cache_control` (read from the raw body, beside the validated one) -> `cache_control` on the
  canonical content part, system part, `tool` message (a tool result's, or its last part's),
  tool call or tool that carried it: the wire decides what becomes of it (Anthropic keeps it,
  Bedrock makes it a `cachePoint`, OpenAI and Gemini leave it out and name it). On a block
  translation drops (thinking, server tools, a tool result's earlier parts) it is named.

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
_TOOL_FIELDS = frozenset({"name", "input_schema", "description", "type", "cache_control"})


class _Dropped:
    """Names of what could not be carried, each once, in the order first met."""

    __slots__ = ("names",)

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def add(self, name: str) -> None:
        if name not in self.names:
            self.names.append(name)


def _control(raw: Any) -> dict[str, Any] | None:
    """The `cache_control` of a raw block, system part or tool, if it has one."""
    control = raw.get("cache_control") if isinstance(raw, dict) else None
    return control if isinstance(control, dict) else None


def _raw_list(raw: Any, key: str) -> list[Any]:
    """`raw[key]` when it is a list (the raw twin of a validated list), else empty."""
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, list) else []


def _at(items: list[Any], index: int) -> Any:
    return items[index] if index < len(items) else None


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


def _parts(block: Block, dropped: _Dropped, control: Any = None) -> list[dict[str, Any]]:
    """Content parts for a user block (not a tool result), or none (named as dropped); a
    `cache_control` goes on the last of them."""
    parts = _block_parts(block, dropped)
    if control is not None:
        if parts:
            parts[-1] = {**parts[-1], "cache_control": control}
        else:
            dropped.add("cache_control")
    return parts


def _block_parts(block: Block, dropped: _Dropped) -> list[dict[str, Any]]:
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


def _tool_message(block: ToolResultBlock, raw: Any, dropped: _Dropped) -> dict[str, Any]:
    """A `tool` message: its text, as tool messages take everywhere; other parts (images) are
    dropped and named. Its `cache_control` is the result's, or its last part's (the prefix ends
    in the same place); one on an earlier part is named as dropped."""
    control = _control(raw)
    inner = _raw_list(raw, "content")
    for k, part in enumerate(inner):
        marked = _control(part)
        if marked is not None:
            if k == len(inner) - 1 and control is None:
                control = marked
            else:
                dropped.add("cache_control")
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
    message: dict[str, Any] = {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}
    if control is not None:
        message["cache_control"] = control
    return message


def _user_messages(blocks: list[Block], raws: list[Any], dropped: _Dropped) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        raw = _at(raws, j)
        if isinstance(block, ToolResultBlock):
            tools.append(_tool_message(block, raw, dropped))
        else:
            parts.extend(_parts(block, dropped, _control(raw)))
    if parts:
        only_text = all(p["type"] == "text" and "cache_control" not in p for p in parts)
        content: Any = "\n".join(p["text"] for p in parts) if only_text else parts
        tools.append({"role": "user", "content": content})
    return tools


def _assistant_message(
    blocks: list[Block], raws: list[Any], dropped: _Dropped
) -> dict[str, Any] | None:
    texts: list[str] = []
    marks: list[dict[str, Any] | None] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for j, block in enumerate(blocks):
        control = _control(_at(raws, j))
        if isinstance(block, TextBlock):
            texts.append(block.text)
            marks.append(control)
            continue
        if isinstance(block, ToolUseBlock):
            function = {"name": block.name, "arguments": _encode(block.input).decode()}
            call: dict[str, Any] = {"id": block.id, "type": "function", "function": function}
            if control is not None:
                call["cache_control"] = control
            calls.append(call)
            continue
        if control is not None:
            dropped.add("cache_control")  # nothing else of an assistant turn carries it
        if isinstance(block, ThinkingBlock):
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
    content: Any = "".join(texts) if texts else None
    if any(mark is not None for mark in marks):
        content = [_text_part(text, mark) for text, mark in zip(texts, marks, strict=True)]
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
        message["reasoning_content"] = "".join(reasoning)
    return message


def _text_part(text: str, control: dict[str, Any] | None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": text}
    if control is not None:
        part["cache_control"] = control
    return part


def _system_content(
    content: str | Sequence[msgspec.Struct], raws: list[Any], dropped: _Dropped
) -> str | list[dict[str, Any]]:
    """The system text, or its text parts when one of them ends a cached prefix."""
    if isinstance(content, str):
        return content
    parts = []
    for j, block in enumerate(content):
        control = _control(_at(raws, j))
        if isinstance(block, TextBlock):
            parts.append(_text_part(block.text, control))
        else:
            dropped.add("system." + str(type(block).__struct_config__.tag))
            if control is not None:
                dropped.add("cache_control")
    if any("cache_control" in part for part in parts):
        return parts
    return "\n".join(part["text"] for part in parts)


def _tools(
    request: MessagesRequest, raws: list[Any], out: dict[str, Any], dropped: _Dropped
) -> None:
    tools = []
    for k, tool in enumerate(request.tools or ()):
        control = _control(_at(raws, k))
        if tool.type not in (None, "custom"):
            dropped.add(f"tools.{tool.type}")  # an Anthropic server tool
            if control is not None:
                dropped.add("cache_control")
            continue
        function: dict[str, Any] = {
            "name": tool.name,
            "parameters": tool.input_schema or {"type": "object", "properties": {}},
        }
        if tool.description:
            function["description"] = tool.description
        entry: dict[str, Any] = {"type": "function", "function": function}
        if control is not None:
            entry["cache_control"] = control
        tools.append(entry)
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
    request: MessagesRequest, dropped: list[str] | None = None, body: Any = None
) -> dict[str, Any]:
    """A canonical request for a validated Anthropic one; what it cannot carry is named in
    `dropped` (see `dropped_fields` for the fields of the raw body). `body`, the raw request
    `request` was validated from, is where `cache_control` is read (the validated blocks do
    not keep it): without it no breakpoint is carried."""
    lost = _Dropped(dropped if dropped is not None else [])
    messages: list[dict[str, Any]] = []
    system = request.system
    if system:
        raws = _raw_list(body, "system")
        messages.append({"role": "system", "content": _system_content(system, raws, lost)})
    raw_messages = _raw_list(body, "messages")
    for i, message in enumerate(request.messages):
        content = message.content
        raws = _raw_list(_at(raw_messages, i), "content")
        if message.role == "system":
            messages.append({"role": "system", "content": _system_content(content, raws, lost)})
        elif isinstance(content, str):
            messages.append({"role": message.role, "content": content})
        elif message.role == "user":
            messages.extend(_user_messages(content, raws, lost))
        else:
            assistant = _assistant_message(content, raws, lost)
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
    _tools(request, _raw_list(body, "tools"), out, lost)
    _reasoning(request, out, lost)
    if request.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def dropped_fields(body: dict[str, Any], dropped: list[str]) -> None:
    """Name, in `dropped`, the fields of a raw Messages body that translation leaves out:
    top-level fields it does not map, `citations` wherever they are, client-tool options
    (`strict`, `defer_loading`...), metadata other than `user_id`. (`cache_control` is carried
    by `to_canonical_request`, which names it where it cannot be.)"""
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
            continue
        for key in tool:
            if key not in _TOOL_FIELDS:
                lost.add("tools." + str(key))


def _block_fields(blocks: Any, lost: _Dropped) -> None:
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("citations"):
            lost.add("citations")
        inner = block.get("content")
        if isinstance(inner, list) and block.get("type") in ("tool_result", "search_result"):
            _block_fields(inner, lost)
