"""Canonical answers -> the Responses API: a `response` object (its stream: `stream.py`). Pure.

Ids and the creation time are given by the caller (`ResponseFrame`); nothing here reads a
clock or draws a random number. A canonical answer's message becomes output items in the
order OpenAI gives them: `reasoning` (its summary the reasoning text; Anthropic thinking blocks
with their signatures in `encrypted_content` when `include` asks for it), `message`
(`output_text`, or `refusal`), then one `function_call` per tool call. `finish_reason`
`length` (or `content_filter`) makes the response `incomplete` with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from ...canonical import token_count
from .request import encode_reasoning

__all__ = [
    "ResponseFrame",
    "assistant_message",
    "responses_usage",
    "to_response",
]

_encode = msgspec.json.encode

# What a request's own fields look like in the response that answers it, when not given.
_ECHOED: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "temperature": 1.0,
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


@dataclass(slots=True)
class ResponseFrame:
    """What the caller decides for one response: its ids and time, and the request's fields
    it echoes."""

    ident: str
    created_at: int
    model: str
    request: dict[str, Any]
    encrypted: bool = False
    """Whether `include` asked for `reasoning.encrypted_content`."""

    def item_id(self, prefix: str, n: int) -> str:
        """The id of output item `n`, made from the response's."""
        return f"{prefix}_{self.ident.removeprefix('resp_')}{n:02d}"


def _count(value: Any) -> int:
    """`token_count`, with no call for a count as it should be (or none)."""
    if value is None:
        return 0
    if type(value) is int and value >= 0:
        return value
    return token_count(value)


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """Responses usage for canonical usage (None when there is none)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    if type(prompt) is not int or prompt < 0:  # (a count as it should be: no call)
        prompt = token_count(prompt)
    completion = usage.get("completion_tokens")
    if type(completion) is not int or completion < 0:
        completion = token_count(completion)
    # (each count as it should be: no `_count` call)
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if type(details) is dict else 0
    if type(cached) is not int or cached < 0:
        cached = _count(cached)
    if not cached:
        cached = usage.get("cache_read_input_tokens")
        if type(cached) is not int or cached < 0:
            cached = _count(cached)
    written = usage.get("cache_creation_input_tokens")
    if type(written) is not int or written < 0:
        written = _count(written)
    out = usage.get("completion_tokens_details")
    reasoning = out.get("reasoning_tokens") if type(out) is dict else 0
    if type(reasoning) is not int or reasoning < 0:
        reasoning = _count(reasoning)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


# a response's keys in their order, with what does not change from one response to the next
_SHELL: dict[str, Any] = {
    "id": "",
    "object": "response",
    "created_at": 0,
    "status": "",
    "background": False,
    "error": None,
    "incomplete_details": None,
    "model": "",
    "output": None,
    **_ECHOED,
    "reasoning": None,
    "text": None,
    "store": True,
    "metadata": None,
    "usage": None,
}
_ECHOED_KEYS = frozenset(_ECHOED)


def shell(frame: ResponseFrame, status: str) -> dict[str, Any]:
    """The response object without output or usage: what `response.created` carries."""
    request = frame.request
    response = _SHELL.copy()  # (the keys in their order: each set below keeps its place)
    response["id"] = frame.ident
    response["created_at"] = frame.created_at
    response["status"] = status
    response["model"] = frame.model
    response["output"] = []
    for name in request.keys() & _ECHOED_KEYS:  # what the request gave (a set operation in C)
        value = request[name]
        if value is not None:
            response[name] = value
    reasoning = request.get("reasoning")
    response["reasoning"] = (
        {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")}
        if type(reasoning) is dict
        else {"effort": None, "summary": None}
    )
    text = request.get("text")
    response["text"] = text if type(text) is dict else {"format": {"type": "text"}}
    if request.get("store") is False:
        response["store"] = False
    metadata = request.get("metadata")
    response["metadata"] = metadata if metadata else {}
    return response


def _reasoning_item(
    ident: str, text: str, blocks: list[dict[str, Any]], encrypted: bool, status: str
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": ident,
        "summary": [{"type": "summary_text", "text": text}] if text else [],
    }
    if encrypted:
        item["encrypted_content"] = encode_reasoning(blocks)
    item["status"] = status
    return item


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(ident: str, parts: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": ident,
        "status": status,
        "role": "assistant",
        "content": parts,
    }


def _call_item(ident: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": ident,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _finished(response: dict[str, Any], finish: str | None, usage: Any) -> dict[str, Any]:
    reason = _INCOMPLETE.get(finish or "")
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    response["usage"] = responses_usage(usage)
    return response


def _thinking_text(message: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    if not (
        message.get("thinking_blocks")
        or message.get("reasoning_content")
        or message.get("reasoning")
    ):
        return "", []  # no reasoning: the usual answer
    blocks = message.get("thinking_blocks")
    kept = [b for b in blocks if isinstance(b, dict)] if isinstance(blocks, list) else []
    text = message.get("reasoning_content") or message.get("reasoning")
    if not isinstance(text, str) or not text:
        text = "".join(str(b.get("thinking") or "") for b in kept)
    return text, kept


def to_response(answer: dict[str, Any], frame: ResponseFrame) -> dict[str, Any]:
    """The `response` object for a canonical `chat.completion` (its first choice)."""
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    text, blocks = _thinking_text(message)
    if text or blocks:
        ident = frame.item_id("rs", len(output))
        output.append(_reasoning_item(ident, text, blocks, frame.encrypted, "completed"))
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    parts: list[dict[str, Any]] = []
    if content:
        parts.append(_text_part(content))
    if message.get("refusal"):
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append(_message_item(frame.item_id("msg", len(output)), parts, "completed"))
    for n, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = _encode(arguments or {}).decode()
        call_id = str(call.get("id") or f"call_{frame.ident.removeprefix('resp_')}_{n}")
        ident = frame.item_id("fc", len(output))
        output.append(
            _call_item(ident, call_id, str(function.get("name", "")), arguments, "completed")
        )
    response = shell(frame, "completed")
    response["output"] = output
    return _finished(response, choice.get("finish_reason"), answer.get("usage"))


def assistant_message(
    output: list[dict[str, Any]], thinking: list[dict[str, Any]]
) -> dict[str, Any]:
    """The canonical assistant message for a response's output items and the thinking blocks
    behind them (for the store): what a next turn sends back."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    texts: list[str] = []
    reasoning: list[str] = []
    for item in output:
        kind = item.get("type")
        if kind == "reasoning":
            reasoning += [str(s.get("text") or "") for s in item.get("summary") or ()]
        elif kind == "message":
            for part in item.get("content") or ():
                texts.append(str(part.get("text") or part.get("refusal") or ""))
        elif kind == "function_call":
            function = {"name": item.get("name", ""), "arguments": item.get("arguments", "")}
            call = {"id": item.get("call_id", ""), "type": "function", "function": function}
            message.setdefault("tool_calls", []).append(call)
    if texts:
        message["content"] = "".join(texts)
    if thinking:
        message["thinking_blocks"] = thinking
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    return message
