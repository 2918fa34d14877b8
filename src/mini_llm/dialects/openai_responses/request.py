"""A Responses API request -> a canonical (OpenAI chat) request. Pure.

- `instructions` -> a system message first (a previous response's instructions do not carry
  over, as with OpenAI); the stored conversation of `previous_response_id` comes next (the
  dialect loads it; this module only takes it as messages), then `input`;
- `input` as a string -> one user message; as items: messages (`input_text`, `input_image`,
  `input_file`, and an assistant's `output_text`/`refusal`), `function_call` -> an assistant's
  `tool_calls` (consecutive calls in one message), `function_call_output` -> `tool` messages,
  `reasoning` -> the next assistant message's `thinking_blocks` (from `encrypted_content`, as
  `response.py` wrote it) and `reasoning_content`;
- function `tools` -> chat tools; `tool_choice`, `parallel_tool_calls`; `text.format`
  (`json_schema`, `json_object`) -> `response_format`; `reasoning.effort` ->
  `reasoning_effort`; `max_output_tokens` -> `max_tokens`; `temperature`, `top_p`, `user`;
  a stream asks for usage.

Built-in tools (`web_search`, `file_search`, `computer_use_preview`…), item types with no chat
equivalent and server-side features (`conversation`, `background`, `prompt`) are a 400 naming
them: only a provider that serves the Responses API itself takes them.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import msgspec

from ...canonical import invalid
from ...errors import InvalidRequestError
from ...schema.openai import validation_error

__all__ = [
    "ENCRYPTED_PREFIX",
    "ResponsesEnvelope",
    "decode_reasoning",
    "encode_reasoning",
    "to_canonical_request",
    "validate_envelope",
]

_encode = msgspec.json.encode
_decode = msgspec.json.decode

ENCRYPTED_PREFIX = "mllm1:"
"""How the gateway's own `encrypted_content` begins: Anthropic thinking blocks (with their
signatures), as base64url JSON. Anything else came from another server and is not readable."""


class ResponsesEnvelope(msgspec.Struct):
    """What routing and the store need, checked even when the body passes through."""

    model: Annotated[str, msgspec.Meta(min_length=1)]
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    include: list[str] | None = None
    instructions: str | None = None
    background: bool | None = None


def validate_envelope(body: dict[str, Any]) -> ResponsesEnvelope:
    try:
        return msgspec.convert(body, ResponsesEnvelope)
    except msgspec.ValidationError as e:
        raise validation_error(e) from None


def encode_reasoning(blocks: list[dict[str, Any]]) -> str | None:
    """`encrypted_content` for a reasoning item carrying Anthropic thinking blocks."""
    kept = [
        {k: v for k, v in b.items() if k in ("type", "thinking", "signature", "data")}
        for b in blocks
        if b.get("signature") or b.get("data")
    ]
    if not kept:
        return None
    return ENCRYPTED_PREFIX + base64.urlsafe_b64encode(_encode(kept)).decode().rstrip("=")


def decode_reasoning(content: Any) -> list[dict[str, Any]]:
    """The thinking blocks in an `encrypted_content` the gateway wrote, else none."""
    if not isinstance(content, str) or not content.startswith(ENCRYPTED_PREFIX):
        return []
    data = content[len(ENCRYPTED_PREFIX) :]
    try:
        blocks = _decode(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return []
    if not isinstance(blocks, list):
        return []
    return [b for b in blocks if isinstance(b, dict) and b.get("type")]


def _only_openai(param: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid request at '{param}': {what} is only served by a provider that speaks the "
        "Responses API itself (openai, or one configured with responses = true).",
        param=param,
        code="unsupported_parameter",
    )


def _text_of(parts: list[Any], param: str) -> str:
    texts = []
    for j, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            texts.append(str(part.get("text") or ""))
        elif kind == "refusal":
            texts.append(str(part.get("refusal") or ""))
        else:
            raise invalid(f"{param}[{j}]", f"content type {kind!r} cannot be sent here")
    return "".join(texts)


def _part(part: Any, param: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise invalid(param, "a content part must be an object")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise invalid(param + ".text", "must be a string")
        return {"type": "text", "text": text}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            if part.get("file_id"):
                raise _only_openai(param + ".file_id", "an image given by file_id")
            raise invalid(param + ".image_url", "an input_image needs an image_url")
        image: dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str) and part["detail"] != "auto":
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if isinstance(data, str) and data:
            file: dict[str, Any] = {"file_data": data}
            if isinstance(part.get("filename"), str):
                file["filename"] = part["filename"]
            return {"type": "file", "file": file}
        if part.get("file_id"):
            return {"type": "file", "file": {"file_id": part["file_id"]}}
        if part.get("file_url"):
            raise _only_openai(param + ".file_url", "a file given by URL")
        raise invalid(param, "an input_file needs file_data or file_id")
    raise invalid(param + ".type", f"content type {kind!r} is not supported")


def _content(content: Any, param: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(param, "must be a string or a list of content parts")
    parts = [_part(p, f"{param}[{j}]") for j, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _tool_output(output: Any, param: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _text_of(output, param)
    raise invalid(param, "must be a string or a list of input_text parts")


class _Conversation:
    """Input items folded into chat messages: consecutive function calls (and the reasoning
    before them) join the assistant message before them."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self._thinking: list[dict[str, Any]] = []
        self._reasoning: list[str] = []
        self._open: dict[str, Any] | None = None  # the assistant message calls may join

    def _assistant(self) -> dict[str, Any]:
        if self._open is None:
            self._open = {"role": "assistant", "content": None}
            self.messages.append(self._open)
        if self._thinking or self._reasoning:
            self._open.setdefault("thinking_blocks", []).extend(self._thinking)
            if self._reasoning:
                earlier = self._open.get("reasoning_content") or ""
                self._open["reasoning_content"] = earlier + "".join(self._reasoning)
            self._thinking, self._reasoning = [], []
        return self._open

    def add(self, item: Any, param: str) -> None:
        if not isinstance(item, dict):
            raise invalid(param, "an input item must be an object")
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if kind == "message":
            self._message(item, param)
        elif kind == "function_call":
            name, arguments = item.get("name"), item.get("arguments")
            if not isinstance(name, str) or not isinstance(arguments, str):
                raise invalid(param, "a function_call needs a name and arguments (a string)")
            ident = item.get("call_id") or item.get("id")
            call = {
                "id": str(ident or ""),
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
            self._assistant().setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            ident = item.get("call_id")
            if not isinstance(ident, str):
                raise invalid(param + ".call_id", "a function_call_output needs a call_id")
            output = _tool_output(item.get("output"), param + ".output")
            self.messages.append({"role": "tool", "tool_call_id": ident, "content": output})
            self._open = None
        elif kind == "reasoning":
            blocks = decode_reasoning(item.get("encrypted_content"))
            summary = item.get("summary") or []
            texts = [str(s.get("text") or "") for s in summary if isinstance(s, dict)]
            if blocks:
                self._thinking.extend(blocks)
                self._reasoning.append(
                    "".join(str(b.get("thinking") or "") for b in blocks) or "".join(texts)
                )
            elif texts:
                self._reasoning.append("\n".join(texts))
            if self._open is not None and self._open.get("tool_calls"):
                self._open = None  # reasoning after calls belongs to the next answer
        else:
            raise InvalidRequestError(
                f"Invalid request at '{param}.type': input items of type {kind!r} are not "
                "supported for this model (message, function_call, function_call_output and "
                "reasoning are).",
                param=param + ".type",
                code="unsupported_item_type",
            )

    def _message(self, item: dict[str, Any], param: str) -> None:
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise invalid(param + ".role", f"unknown role {role!r}")
        content = item.get("content")
        if role == "assistant":
            text = content if isinstance(content, str) else _text_of(content or [], param)
            if self._open is not None and not self._open.get("tool_calls"):
                self._open["content"] = (self._open.get("content") or "") + text
            else:
                self._open = None
                self._assistant()["content"] = text
            return
        self._open = None
        self.messages.append({"role": role, "content": _content(content, param + ".content")})

    def close(self) -> None:
        """A message not the assistant's came: calls after it begin another answer."""
        self._open = None

    def finish(self) -> None:
        if self._thinking or self._reasoning:
            self._thinking, self._reasoning = [], []  # reasoning with no answer after it


_PLAIN_ROLES = frozenset(("user", "system", "developer"))
_MESSAGE = (None, "message")


def input_messages(body: dict[str, Any], history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation: `history` (a previous response's) then `input`, as chat messages."""
    conversation = _Conversation([*history])
    given = body.get("input")
    if isinstance(given, str):
        conversation.messages.append({"role": "user", "content": given})
    elif isinstance(given, list):
        messages = conversation.messages
        for i, item in enumerate(given):
            if type(item) is dict:
                content = item.get("content")
                role = item.get("role")
                if type(content) is str and role in _PLAIN_ROLES and item.get("type") in _MESSAGE:
                    # a plain text message, the usual item: what `add` makes of it, directly
                    conversation.close()
                    messages.append({"role": role, "content": content})
                    continue
            conversation.add(item, f"input[{i}]")
    elif given is not None:
        raise invalid("input", "must be a string or a list of items")
    conversation.finish()
    return conversation.messages


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise invalid("tools", "must be a list")
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise _only_openai(f"tools[{i}]", f"the built-in tool {kind!r}")
        assert isinstance(tool, dict)
        if not isinstance(tool.get("name"), str):
            raise invalid(f"tools[{i}].name", "a function tool needs a name")
        function: dict[str, Any] = {
            "name": tool["name"],
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    kind = choice.get("type") if isinstance(choice, dict) else choice
    raise _only_openai("tool_choice", f"tool_choice {kind!r}")


def _response_format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_schema":
        spec: dict[str, Any] = {"name": fmt.get("name") or "response"}
        for field in ("schema", "strict", "description"):
            if fmt.get(field) is not None:
                spec[field] = fmt[field]
        return {"type": "json_schema", "json_schema": spec}
    if kind == "json_object":
        return {"type": "json_object"}
    if kind in ("text", None):
        return None
    raise invalid("text.format.type", f"unknown text format {kind!r}")


# Server-side features of OpenAI's Responses API that a chat completion cannot do.
_SERVER_SIDE = ("conversation", "prompt")
# The fields read only when present (`tool_choice` and `parallel_tool_calls` go with `tools`)
_OPTIONAL = frozenset(
    {*_SERVER_SIDE, "background", "tools", "text", "reasoning", "temperature", "top_p"}
    | {"user", "safety_identifier"}
)


def to_canonical_request(
    body: dict[str, Any], history: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A canonical request for a Responses request, after `history` (a stored conversation)."""
    plain = _OPTIONAL.isdisjoint(body)  # none of the fields below that are not always there
    if not plain:
        for field in _SERVER_SIDE:
            if body.get(field) is not None:
                raise _only_openai(field, f"'{field}'")
        if body.get("background"):
            raise _only_openai("background", "a background response")
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif isinstance(instructions, list):
        messages = input_messages({"input": instructions}, [])
    messages = messages + input_messages(body, history or [])
    if not messages:
        raise invalid("input", "a request needs input")
    out: dict[str, Any] = {"model": body["model"], "messages": messages}
    if not plain:
        _tool_and_format_options(body, out)
    limit = body.get("max_output_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool):
        out["max_tokens"] = limit
    if not plain:
        for field in ("temperature", "top_p"):
            if body.get(field) is not None:
                out[field] = body[field]
        user = body.get("user") or body.get("safety_identifier")
        if isinstance(user, str):
            out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _tool_and_format_options(body: dict[str, Any], out: dict[str, Any]) -> None:
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        if body.get("tool_choice") is not None:
            out["tool_choice"] = _tool_choice(body["tool_choice"])
        if body.get("parallel_tool_calls") is False:
            out["parallel_tool_calls"] = False
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        out["response_format"] = response_format
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if isinstance(effort, str) and effort != "none":
        out["reasoning_effort"] = effort
