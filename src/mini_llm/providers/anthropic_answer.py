"""Anthropic answers back to canonical form: a message, a stream of events, an error body.

Pure: no I/O, no clock (`created` is left 0 for the route to stamp). The stream translator is
a small state machine over parsed SSE events: `message_start` gives the id and input usage;
each `content_block_start` opens a text, thinking or `tool_use` block (a tool call gets its
`index`, `id` and `name` on its first delta, then `arguments` deltas); `message_delta` gives
the stop reason and output usage; `message_stop` ends it. `ping` is ignored and an `error`
event raises a `GatewayError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import msgspec

from ..canonical import assistant_message, chunk, token_count
from ..errors import (
    GatewayError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
)
from ..sse import SSEEvent
from .base import ErrorInfo, event_object

__all__ = [
    "FINISH_REASONS",
    "JSON_TOOL",
    "JSON_TOOL_DESCRIPTION",
    "AnthropicStreamTranslator",
    "anthropic_error_info",
    "canonical_usage",
    "from_anthropic_id",
    "json_answer_schema",
    "parse_anthropic_message",
    "to_anthropic_id",
]

JSON_TOOL = "mini_llm_json_answer"
"""The tool a JSON `response_format` is forced through; its input is the answer's text."""

JSON_TOOL_DESCRIPTION = "Give the final answer as this tool's input, which is the JSON requested."


def json_answer_schema(response_format: Any) -> dict[str, Any] | None:
    """The schema a `response_format` asks the answer to follow (the forced tool's input, on
    formats without a JSON mode: Anthropic, Converse); None when it asks for none."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    if kind == "json_object":
        return {"type": "object"}
    return None


FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_VALID_ID = re.compile(r"[a-zA-Z0-9_-]+")
_ID_PREFIX = "mllm_"


def to_anthropic_id(ident: str) -> str:
    """An id Anthropic accepts (`^[a-zA-Z0-9_-]+$`), reversibly: bad ones become base64url."""
    if _VALID_ID.fullmatch(ident) and not ident.startswith(_ID_PREFIX):
        return ident
    return _ID_PREFIX + base64.urlsafe_b64encode(ident.encode()).decode().rstrip("=")


def from_anthropic_id(ident: str) -> str:
    """The id a client first gave, for one `to_anthropic_id` made."""
    if not ident.startswith(_ID_PREFIX):
        return ident
    data = ident[len(_ID_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ident


class _ErrorDetail(msgspec.Struct):
    type: Any = None
    message: Any = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def anthropic_error_info(status: int, body: bytes) -> ErrorInfo:
    try:
        error = _error_decoder.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ErrorInfo(f"upstream answered HTTP {status}")
    if error is None or not isinstance(error.message, str) or not error.message:
        return ErrorInfo(f"upstream answered HTTP {status}")
    kind = error.type if isinstance(error.type, str) else None
    return ErrorInfo(error.message, kind)


def _stream_error(data: dict[str, Any]) -> GatewayError:
    raw = data.get("error")
    error: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = error.get("type")
    message = str(error.get("message") or "upstream stream failed")
    if kind == "overloaded_error":
        return ServiceUnavailableError(message, code="overloaded")
    if kind == "rate_limit_error":
        return RateLimitError(message)
    return UpstreamError(message, code=kind if isinstance(kind, str) else "upstream_error")


def _block_index(data: dict[str, Any]) -> int:
    index = data.get("index", 0)
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def canonical_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage for Anthropic usage: cache reads and writes count as prompt tokens."""
    if not isinstance(usage, dict):
        usage = {}
    fresh = usage.get("input_tokens")
    if type(fresh) is not int or fresh < 0:  # (a count as it should be: no call)
        fresh = token_count(fresh)
    read = usage.get("cache_read_input_tokens") or 0
    if type(read) is not int or read < 0:
        read = token_count(read)
    written = usage.get("cache_creation_input_tokens") or 0
    if type(written) is not int or written < 0:
        written = token_count(written)
    prompt = fresh + read + written
    completion = usage.get("output_tokens")
    if type(completion) is not int or completion < 0:
        completion = token_count(completion)
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }
    split = usage.get("cache_creation")  # the 5-minute and 1-hour parts of the writes
    if isinstance(split, dict) and split.get("ephemeral_1h_input_tokens"):
        out["cache_creation_1h_input_tokens"] = token_count(split["ephemeral_1h_input_tokens"])
    return out


def parse_anthropic_message(raw: bytes) -> dict[str, Any]:
    """A canonical `chat.completion` for an Anthropic message."""
    try:
        message = _decode(raw)
    except msgspec.DecodeError:
        raise UpstreamError("upstream answered with malformed JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamError("upstream answered with an unexpected message shape")
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    json_answer = False
    for block in message["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking", "")))
            thinking_blocks.append(block)
        elif kind == "redacted_thinking":
            thinking_blocks.append(block)
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            texts.append(_encode(block.get("input", {})).decode())
            json_answer = True
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": from_anthropic_id(str(block.get("id", ""))),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": _encode(block.get("input", {})).decode(),
                    },
                }
            )
    reply = assistant_message(texts, tool_calls, reasoning, thinking_blocks)
    stop = message.get("stop_reason")
    finish = FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else "stop"
    if json_answer and finish == "tool_calls":
        finish = "stop"
    return {
        "id": message.get("id", ""),
        "object": "chat.completion",
        "created": 0,
        "model": message.get("model", ""),
        "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}],
        "usage": canonical_usage(message.get("usage")),
    }


class AnthropicStreamTranslator:
    """Anthropic stream events -> canonical chunks (one instance per stream)."""

    __slots__ = (
        "_bare",
        "_blocks",
        "_done",
        "_finish",
        "_id",
        "_json_answer",
        "_model",
        "_thinking",
        "_thought_blocks",
        "_tool_args",
        "_tools",
        "_usage",
    )

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._usage: dict[str, Any] = {}
        # block index -> ("text" | "thinking" | "json" | "tool", tool index or -1)
        self._blocks: dict[int, tuple[str, int]] = {}
        self._thinking: dict[int, list[str]] = {}
        self._thought_blocks = 0  # thinking blocks sent so far: their `index` in the deltas
        self._tools = 0
        self._tool_args: set[int] = set()  # tool calls that received argument text
        self._finish: str | None = None
        self._json_answer = False
        self._done = False
        self._bare = False  # chunks for the Responses writer only (`AnthropicStreamDecoder.lean`)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk(self._id, self._model, delta, finish)

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        if not event.data or self._done:
            return []
        return self.feed_object(event_object(event.data), event.event)

    def feed_object(self, data: dict[str, Any], name: str | None) -> list[dict[str, Any]]:
        """`feed` for an event whose data is decoded (`name`: its `event:` field)."""
        kind = data.get("type") or name
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._start(data)
        if kind == "content_block_stop":
            return self._stop(data)
        if kind == "message_start":
            message = data.get("message") or {}
            ident = message.get("id", "")
            return self.message_start(ident, message.get("model", ""), message.get("usage"))
        if kind == "message_delta":
            stop = (data.get("delta") or {}).get("stop_reason")
            return self.message_delta(stop, data.get("usage"))
        if kind == "message_stop":
            return self._stop_message(data)
        if kind == "error":
            raise _stream_error(data)
        return []  # ping, and event types added after this was written

    def message_start(self, ident: Any, model: Any, usage: Any) -> list[dict[str, Any]]:
        """`message_start`: the message's id, model and first usage."""
        self._id = str(ident)
        self._model = str(model)
        self._usage = dict(usage or {})
        if self._bare:
            return [{}]  # (a chunk all the same: the writer's first events come with it)
        return [self._chunk({"role": "assistant", "content": ""})]

    def message_delta(self, stop: Any, usage: Any) -> list[dict[str, Any]]:
        """`message_delta`: the stop reason and the usage so far."""
        if isinstance(usage, dict):
            if None in usage.values():
                usage = {k: v for k, v in usage.items() if v is not None}
            self._usage.update(usage)
        finish = FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else "stop"
        if self._json_answer and finish == "tool_calls":
            finish = "stop"
        self._finish = finish
        if self._bare:
            return [{"choices": [{"finish_reason": finish}]}]
        return [self._chunk({}, finish)]

    def _stop_message(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._done = True
        if self._bare:
            return [{"usage": canonical_usage(self._usage)}]
        usage = self._chunk({})
        usage["choices"] = []
        usage["usage"] = canonical_usage(self._usage)
        return [usage]

    def _start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        index = _block_index(data)
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = ("text", -1)
            text = block.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind == "thinking":
            self._blocks[index] = ("thinking", -1)
            self._thinking[index] = [str(block.get("thinking") or ""), ""]
            return []
        if kind == "redacted_thinking":
            return [self._chunk({"thinking_blocks": [self._thought(block)]})]
        if kind == "tool_use" and block.get("name") == JSON_TOOL:
            self._blocks[index] = ("json", -1)
            self._json_answer = True
            return []
        if kind == "tool_use":
            tool = self._tools
            self._tools += 1
            self._blocks[index] = ("tool", tool)
            call = {
                "index": tool,
                "id": from_anthropic_id(str(block.get("id", ""))),
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":  # the most frequent event of all: nothing else to look up
            text = delta.get("text", "")
            return [chunk(self._id, self._model, {"content": text}, None)]
        index = _block_index(data)
        block, tool = self._blocks.get(index, ("", -1))
        if kind == "input_json_delta":
            partial = delta.get("partial_json", "")
            if not partial:
                return []
            if block == "json":
                return [self._chunk({"content": partial})]
            if block == "tool":
                self._tool_args.add(tool)
                call = {"index": tool, "function": {"arguments": partial}}
                return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "thinking_delta":
            text = str(delta.get("thinking", ""))
            if index in self._thinking:
                self._thinking[index][0] += text
            return [self._chunk({"reasoning_content": text})]
        if kind == "signature_delta" and index in self._thinking:
            self._thinking[index][1] += str(delta.get("signature", ""))
        return []

    def _stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        index = _block_index(data)
        kind, tool = self._blocks.get(index, ("", -1))
        if kind == "tool" and tool not in self._tool_args:
            # a tool without parameters streams no argument text: `{}`, as unstreamed answers
            call = {"index": tool, "function": {"arguments": "{}"}}
            return [self._chunk({"tool_calls": [call]})]
        thinking = self._thinking.pop(index, None)
        if thinking is None:
            return []
        block = {"type": "thinking", "thinking": thinking[0], "signature": thinking[1]}
        return [self._chunk({"thinking_blocks": [self._thought(block)]})]

    def _thought(self, block: dict[str, Any]) -> dict[str, Any]:
        """A thinking block for a delta, with the `index` stream accumulators (the openai
        package's among them) need to tell one list entry from the next."""
        out = {**block, "index": self._thought_blocks}
        self._thought_blocks += 1
        return out

    def finish(self) -> list[dict[str, Any]]:
        if not self._done:
            raise UpstreamError("upstream stream ended before the answer was complete")
        return []
