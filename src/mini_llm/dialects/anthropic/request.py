"""An Anthropic Messages request -> a canonical (OpenAI chat) request. Pure.

- `system` -> one system message; text, image and document blocks -> content parts;
- `tool_result` blocks -> `tool` messages, placed before the rest of their user turn;
- assistant `tool_use` blocks -> `tool_calls`; thinking blocks -> `thinking_blocks` (with their
  signatures) and `reasoning_content`;
- `tools`, `tool_choice` (any -> required, tool -> a named function),
  `disable_parallel_tool_use` -> `parallel_tool_calls: false`;
- `max_tokens`, `stop_sequences` -> `stop`, `temperature`, `top_p`, `metadata.user_id` -> `user`;
  a stream asks for usage (`stream_options.include_usage`) so `message_delta` can report it.

`top_k` and `thinking` have no OpenAI equivalent that every OpenAI-format server accepts, so
they are not forwarded; Anthropic server tools and their blocks are refused by name.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ...errors import InvalidRequestError
from ...schema.anthropic import (
    Base64Source,
    Block,
    DocumentBlock,
    FileSource,
    ImageBlock,
    MessagesRequest,
    RedactedThinkingBlock,
    TextBlock,
    TextSource,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    URLSource,
)

__all__ = ["to_canonical_request"]

_encode = msgspec.json.encode

_TOOL_CHOICE: dict[str, Any] = {"auto": "auto", "any": "required", "none": "none"}


def _unsupported(param: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid request at '{param}': {what} can only be sent to an Anthropic provider.",
        param=param,
    )


def _image_part(block: ImageBlock, param: str) -> dict[str, Any]:
    source = block.source
    if isinstance(source, Base64Source):
        url = f"data:{source.media_type};base64,{source.data}"
    elif isinstance(source, URLSource):
        url = source.url
    else:
        raise _unsupported(param, "an image given by file_id")
    return {"type": "image_url", "image_url": {"url": url}}


def _document_part(block: DocumentBlock, param: str) -> dict[str, Any]:
    source = block.source
    if isinstance(source, TextSource):
        return {"type": "text", "text": source.data}
    if isinstance(source, Base64Source):
        data_url = f"data:{source.media_type};base64,{source.data}"
        name = block.title or "document.pdf"
        return {"type": "file", "file": {"filename": name, "file_data": data_url}}
    if isinstance(source, FileSource):
        return {"type": "file", "file": {"file_id": source.file_id}}
    raise _unsupported(param, f"a document with a {type(source).__name__} source")


def _part(block: Block, param: str) -> dict[str, Any]:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ImageBlock):
        return _image_part(block, param)
    if isinstance(block, DocumentBlock):
        return _document_part(block, param)
    tag = type(block).__struct_config__.tag
    raise _unsupported(param, f"a {tag} block")


def _tool_message(block: ToolResultBlock, param: str) -> dict[str, Any]:
    content = block.content
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        pieces = []
        for j, part in enumerate(content):
            if isinstance(part, TextBlock):
                pieces.append(part.text)
            else:
                raise InvalidRequestError(
                    f"Invalid request at '{param}.content[{j}]': only text tool results can be "
                    "sent to this provider.",
                    param=f"{param}.content[{j}]",
                )
        text = "\n".join(pieces)
    if block.is_error:
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": block.tool_use_id, "content": text}


def _user_messages(blocks: list[Block], param: str) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(blocks):
        where = f"{param}[{j}]"
        if isinstance(block, ToolResultBlock):
            tools.append(_tool_message(block, where))
        else:
            parts.append(_part(block, where))
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        content: Any = "\n".join(p["text"] for p in parts) if only_text else parts
        tools.append({"role": "user", "content": content})
    return tools


def _assistant_message(blocks: list[Block], param: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    thinking: list[dict[str, Any]] = []
    reasoning: list[str] = []
    for j, block in enumerate(blocks):
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
            _part(block, f"{param}[{j}]")  # raises for what an assistant turn cannot carry
            raise _unsupported(f"{param}[{j}]", "a non-text assistant block")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["thinking_blocks"] = thinking
        message["reasoning_content"] = "".join(reasoning)
    return message


def to_canonical_request(request: MessagesRequest) -> dict[str, Any]:
    """A canonical request for a validated Anthropic one."""
    messages: list[dict[str, Any]] = []
    system = request.system
    if isinstance(system, str) and system:
        messages.append({"role": "system", "content": system})
    elif isinstance(system, list) and system:
        messages.append({"role": "system", "content": "\n".join(b.text for b in system)})
    for i, message in enumerate(request.messages):
        content = message.content
        param = f"messages[{i}].content"
        if isinstance(content, str):
            messages.append({"role": message.role, "content": content})
        elif message.role == "user":
            messages.extend(_user_messages(content, param))
        else:
            messages.append(_assistant_message(content, param))

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
    if request.tools:
        tools = []
        for i, tool in enumerate(request.tools):
            if tool.type not in (None, "custom"):
                raise _unsupported(f"tools[{i}]", f"the server tool {tool.type!r}")
            function: dict[str, Any] = {
                "name": tool.name,
                "parameters": tool.input_schema or {"type": "object", "properties": {}},
            }
            if tool.description:
                function["description"] = tool.description
            tools.append({"type": "function", "function": function})
        out["tools"] = tools
        choice = request.tool_choice
        if choice is not None:
            if choice.type == "tool":
                out["tool_choice"] = {"type": "function", "function": {"name": choice.name or ""}}
            else:
                out["tool_choice"] = _TOOL_CHOICE[choice.type]
            if choice.disable_parallel_tool_use and choice.type != "none":
                out["parallel_tool_calls"] = False
    if request.stream:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out
