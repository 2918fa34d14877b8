"""Canonical answers -> Anthropic: a `message`, or a stream of Anthropic events. Pure.

The stream writer is a small state machine fed canonical chunks. It opens one content block
at a time (`content_block_start`), sends its deltas (`text_delta`, `thinking_delta`,
`signature_delta`, `input_json_delta`) and closes it (`content_block_stop`) when the next kind
of content begins; `finish` closes the last block and sends `message_delta` (stop reason and
usage) and `message_stop`.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec

from ...canonical import token_count
from ...sse import format_event

__all__ = ["STOP_REASONS", "AnthropicEventWriter", "anthropic_usage", "to_anthropic_message"]

STOP_REASONS: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Anthropic usage for canonical usage: cached prompt tokens are reported as cache reads."""
    if not isinstance(usage, dict):
        usage = {}
    prompt = token_count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = token_count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    written = token_count(usage.get("cache_creation_input_tokens"))
    return {
        "input_tokens": max(prompt - cached - written, 0),
        "output_tokens": token_count(usage.get("completion_tokens")),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": written,
    }


def _message_id(ident: Any) -> str:
    ident = str(ident or "")
    return ident if ident.startswith("msg_") else "msg_" + (ident or "gateway")


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and raw.strip():
        try:
            parsed = _decode(raw)
        except msgspec.DecodeError:
            return {}
        if isinstance(parsed, dict):
            return parsed
    return {}


def _thinking(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = message.get("thinking_blocks")
    if isinstance(blocks, list) and blocks:
        return [b for b in blocks if isinstance(b, dict)]
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        return [{"type": "thinking", "thinking": reasoning, "signature": ""}]
    return []


def to_anthropic_message(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic `message` for a canonical `chat.completion` (its first choice)."""
    choices = answer.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = _thinking(message)
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if refusal and not text:
        content.append({"type": "text", "text": refusal})
    calls = message.get("tool_calls") or ()
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or _invented_id(answer.get("id"), n),
                "name": function.get("name", ""),
                "input": _arguments(function.get("arguments")),
            }
        )
    finish = choice.get("finish_reason")
    if calls and finish in (None, "stop"):
        finish = "tool_calls"  # some servers say stop: agents loop on stop_reason tool_use
    return {
        "id": _message_id(answer.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASONS.get(finish, "end_turn") if finish else "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage(answer.get("usage")),
    }


_NOT_IN_ID = re.compile(r"[^a-zA-Z0-9_-]")


def _invented_id(answer_id: Any, n: int) -> str:
    """A tool_use id for a call the upstream left without one, unique across answers (Anthropic
    refuses a conversation whose tool_use ids repeat): from the answer's id when it has one."""
    seed = _NOT_IN_ID.sub("", str(answer_id or "")) or uuid.uuid4().hex
    return f"toolu_{seed}_{n}"


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return format_event(name, _encode(payload))


class AnthropicEventWriter:
    """Canonical chunks -> Anthropic SSE events, already formatted (one per stream)."""

    __slots__ = (
        "_answer_id",
        "_block",
        "_count",
        "_input_estimate",
        "_last_tool",
        "_model",
        "_started",
        "_stop",
        "_tool_ids",
        "_tools",
        "_usage",
    )

    def __init__(self, model: str, input_estimate: int = 0) -> None:
        self._model = model
        self._input_estimate = input_estimate
        self._started = False
        self._answer_id: Any = None
        self._count = 0  # blocks opened so far
        self._block: tuple[str, int] | None = None  # (kind, index) of the open block
        self._tools: dict[int, int] = {}  # canonical tool-call index -> block index
        self._tool_ids: dict[str, int] = {}  # tool-call id -> block index
        self._last_tool: int | None = None  # the block of the latest tool call
        self._stop: str | None = None
        self._usage: Any = None

    def _start(self, ident: Any, usage: Any = None) -> bytes:
        """`message_start`, its input tokens the upstream's when its first chunk had them,
        else the estimate (clients that budget their context read it); `message_delta`
        carries the exact figures."""
        self._started = True
        start_usage = {"input_tokens": self._input_estimate, "output_tokens": 0}
        if isinstance(usage, dict) and usage.get("prompt_tokens"):
            start_usage = {**anthropic_usage(usage), "output_tokens": 0}
        self._answer_id = ident
        message: dict[str, Any] = {
            "id": _message_id(ident),
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        return _event("message_start", {"type": "message_start", "message": message})

    def _close(self, out: list[bytes]) -> None:
        if self._block is not None:
            index = self._block[1]
            out.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
            self._block = None

    def _open(self, kind: str, block: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = self._count
        self._count += 1
        self._block = (kind, index)
        payload = {"type": "content_block_start", "index": index, "content_block": block}
        out.append(_event("content_block_start", payload))
        return index

    def _delta(self, index: int, delta: dict[str, Any], out: list[bytes]) -> None:
        payload = {"type": "content_block_delta", "index": index, "delta": delta}
        out.append(_event("content_block_delta", payload))

    def _current(self, kind: str, block: dict[str, Any], out: list[bytes]) -> int:
        if self._block is not None and self._block[0] == kind:
            return self._block[1]
        return self._open(kind, block, out)

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            out.append(self._start(chunk.get("id"), chunk.get("usage")))
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            self._reasoning(delta, out)
            for text in (delta.get("content"), delta.get("refusal")):
                if text and isinstance(text, str):
                    index = self._current("text", {"type": "text", "text": ""}, out)
                    self._delta(index, {"type": "text_delta", "text": text}, out)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._tool_call(call, out)
            finish = choice.get("finish_reason")
            if finish:
                if finish == "stop" and self._last_tool is not None:
                    finish = "tool_calls"  # some servers say stop after tool calls
                self._stop = STOP_REASONS.get(finish, "end_turn")
        return out

    def _reasoning(self, delta: dict[str, Any], out: list[bytes]) -> None:
        thinking = delta.get("reasoning_content") or delta.get("reasoning")
        empty = {"type": "thinking", "thinking": "", "signature": ""}
        if isinstance(thinking, str) and thinking:
            index = self._current("thinking", empty, out)
            self._delta(index, {"type": "thinking_delta", "thinking": thinking}, out)
        for block in delta.get("thinking_blocks") or ():
            if not isinstance(block, dict):
                continue
            if block.get("type") == "redacted_thinking":
                redacted = {"type": "redacted_thinking", "data": block.get("data")}
                self._open("redacted", redacted, out)
                self._close(out)
                continue
            if self._block is None or self._block[0] != "thinking":
                # a whole block (its text was not streamed before): send it in one delta
                index = self._open("thinking", empty, out)
                text = str(block.get("thinking") or "")
                if text:
                    self._delta(index, {"type": "thinking_delta", "thinking": text}, out)
            if block.get("signature"):
                signature = {"type": "signature_delta", "signature": block["signature"]}
                self._delta(self._current("thinking", empty, out), signature, out)

    def _tool_call(self, call: dict[str, Any], out: list[bytes]) -> None:
        """A tool-call delta: its first one (with an id and name) opens a tool_use block, the
        next ones add argument text. Calls are told apart by `index`, and by `id` for servers
        that leave `index` out or repeat it."""
        position = call.get("index")
        ident = call.get("id")
        function = call.get("function") or {}
        index: int | None = None
        if isinstance(ident, str) and ident:
            index = self._tool_ids.get(ident)
        elif isinstance(position, int):
            index = self._tools.get(position)
        else:
            index = self._last_tool
        if index is None:
            n = len(self._tool_ids) + len(self._tools)
            block = {
                "type": "tool_use",
                "id": ident or _invented_id(self._answer_id, n),
                "name": function.get("name", ""),
                "input": {},
            }
            index = self._open("tool", block, out)
            if isinstance(ident, str) and ident:
                self._tool_ids[ident] = index
            if isinstance(position, int):  # later deltas without an id follow the latest call
                self._tools[position] = index
        self._last_tool = index
        arguments = function.get("arguments")
        if arguments:
            self._delta(index, {"type": "input_json_delta", "partial_json": arguments}, out)

    def finish(self) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            out.append(self._start(None))
        self._close(out)
        usage = anthropic_usage(self._usage)
        payload = {
            "type": "message_delta",
            "delta": {"stop_reason": self._stop or "end_turn", "stop_sequence": None},
            "usage": usage,
        }
        out.append(_event("message_delta", payload))
        out.append(_event("message_stop", {"type": "message_stop"}))
        return out
