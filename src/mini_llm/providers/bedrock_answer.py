"""Bedrock Converse answers and ConverseStream events -> canonical form. Pure.

A whole answer (`output.message.content`: `text`, `toolUse`, `reasoningContent`) becomes a
`chat.completion`; `usage` (`inputTokens`, `outputTokens`, `cacheReadInputTokens`,
`cacheWriteInputTokens`, and `cacheDetails`' hour-long writes) canonical usage, cache reads and
writes counted in the prompt as for Anthropic; `stopReason` a finish reason.

A stream is the binary event stream: each message's `:event-type` header names the event
(`messageStart`, `contentBlockStart`, `contentBlockDelta`, `contentBlockStop`, `messageStop`,
`metadata`), its payload is JSON. `messageStop` gives the finish, the final `metadata` event
the usage (input tokens are reported only there). A message of `:message-type` `exception`
(`throttlingException`, `modelStreamErrorException`…) fails the stream.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from ..canonical import assistant_message, chunk, token_count
from ..errors import GatewayError, RateLimitError, ServiceUnavailableError, UpstreamError
from .anthropic_answer import JSON_TOOL, canonical_usage, from_anthropic_id
from .base import ErrorInfo
from .eventstream import EventMessage, EventStreamParser, frame_length

__all__ = [
    "EVENT_STREAM",
    "FINISH_REASONS",
    "ConverseStreamDecoder",
    "EventStreamFraming",
    "bedrock_error_info",
    "converse_usage",
    "parse_converse_response",
]

EVENT_STREAM = "application/vnd.amazon.eventstream"

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

_decode = msgspec.json.decode
_encode = msgspec.json.encode


def converse_usage(usage: Any) -> dict[str, Any]:
    """Canonical usage for Converse usage."""
    if not isinstance(usage, dict):
        usage = {}
    # cacheDetails: the writes per TTL (a cachePoint's `ttl`); the hour's are billed apart
    details = usage.get("cacheDetails")
    hour = sum(
        token_count(detail.get("inputTokens"))
        for detail in (details if isinstance(details, list) else ())
        if isinstance(detail, dict) and detail.get("ttl") == "1h"
    )
    return canonical_usage(
        {
            "input_tokens": usage.get("inputTokens"),
            "output_tokens": usage.get("outputTokens"),
            "cache_read_input_tokens": usage.get("cacheReadInputTokens"),
            "cache_creation_input_tokens": usage.get("cacheWriteInputTokens"),
            "cache_creation": {"ephemeral_1h_input_tokens": hour},
        }
    )


def _thought(block: dict[str, Any]) -> dict[str, Any] | None:
    text = block.get("reasoningText")
    if isinstance(text, dict):
        return {
            "type": "thinking",
            "thinking": str(text.get("text") or ""),
            "signature": str(text.get("signature") or ""),
        }
    if block.get("redactedContent"):
        return {"type": "redacted_thinking", "data": block["redactedContent"]}
    return None


def parse_converse_response(raw: bytes) -> dict[str, Any]:
    """A canonical `chat.completion` for a Converse response."""
    try:
        answer = _decode(raw)
    except msgspec.DecodeError:
        raise UpstreamError("upstream answered with malformed JSON") from None
    message = ((answer.get("output") or {}) if isinstance(answer, dict) else {}).get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamError("upstream answered with an unexpected Converse shape")
    texts: list[str] = []
    reasoning: list[str] = []
    thoughts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    json_answer = False
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        if "text" in block:
            texts.append(str(block["text"]))
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            arguments = _encode(use.get("input", {})).decode()
            if use.get("name") == JSON_TOOL:
                texts.append(arguments)
                json_answer = True
                continue
            function = {"name": use.get("name", ""), "arguments": arguments}
            ident = from_anthropic_id(str(use.get("toolUseId", "")))
            calls.append({"id": ident, "type": "function", "function": function})
        elif isinstance(block.get("reasoningContent"), dict):
            thought = _thought(block["reasoningContent"])
            if thought is not None:
                thoughts.append(thought)
                if thought["type"] == "thinking":
                    reasoning.append(thought["thinking"])
    reply = assistant_message(texts, calls, reasoning, thoughts)
    finish = FINISH_REASONS.get(str(answer.get("stopReason")), "stop")
    if json_answer and finish == "tool_calls":
        finish = "stop"
    return {
        "id": "bedrock-" + uuid.uuid4().hex,
        "object": "chat.completion",
        "created": 0,
        "model": "",
        "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}],
        "usage": converse_usage(answer.get("usage")),
    }


def bedrock_error_info(status: int, body: bytes) -> ErrorInfo:
    """AWS JSON errors: `{"message": …}` (sometimes `Message`), the type in `__type`."""
    try:
        data = _decode(body)
    except msgspec.DecodeError:
        return ErrorInfo(f"upstream answered HTTP {status}")
    if not isinstance(data, dict):
        return ErrorInfo(f"upstream answered HTTP {status}")
    message = data.get("message") or data.get("Message")
    kind = data.get("__type")
    kind = kind.rsplit("#", 1)[-1] if isinstance(kind, str) else None
    text = message if isinstance(message, str) and message else f"upstream answered HTTP {status}"
    return ErrorInfo(text, kind, kind)


class EventStreamFraming:
    """Whole event-stream messages, by their length prefix (for a pass-through relay)."""

    __slots__ = ()

    content_type = EVENT_STREAM

    def cut(self, data: bytes) -> int:
        at = 0
        while True:
            size = frame_length(data, at)
            if size < 16 or len(data) - at < size:
                return at
            at += size

    def complete(self, tail: bytes) -> bool:
        return True


def _exception(message: EventMessage) -> GatewayError:
    kind = str(message.headers.get(":exception-type") or "")
    try:
        data = _decode(message.payload)
    except msgspec.DecodeError:
        data = {}
    text = data.get("message") if isinstance(data, dict) else None
    text = str(text or f"upstream stream failed ({kind or 'exception'})")
    if kind == "throttlingException":
        return RateLimitError(text)
    if kind == "serviceUnavailableException":
        return ServiceUnavailableError(text)
    return UpstreamError(text, code=kind or "upstream_error")


class ConverseStreamDecoder:
    """ConverseStream bytes -> canonical chunks (one per stream). Chunks decoded before a
    failure in the same read are returned first; the failure is raised by the next call."""

    __slots__ = (
        "_blocks",
        "_error",
        "_finished",
        "_id",
        "_parser",
        "_stopped",
        "_thinking",
        "_tool_args",
        "_tools",
    )

    def __init__(self) -> None:
        self._parser = EventStreamParser()
        self._id = "bedrock-" + uuid.uuid4().hex
        self._blocks: dict[int, tuple[str, int]] = {}  # block index -> (kind, tool index)
        self._tools = 0
        self._tool_args: set[int] = set()
        self._thinking: dict[int, list[str]] = {}  # block index -> [text, signature]
        self._stopped = False
        self._finished = False
        self._error: GatewayError | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk(self._id, "", delta, finish)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self._error is not None:
            raise self._error
        out: list[dict[str, Any]] = []
        try:
            for message in self._parser.feed(data):
                out += self._event(message)
        except GatewayError as e:
            if not out:
                raise
            self._error = e
        return out

    def finish(self) -> list[dict[str, Any]]:
        if self._error is not None:
            raise self._error
        if self._finished:
            return []
        self._finished = True
        if self._parser.pending or not self._stopped:
            raise UpstreamError("upstream stream ended before the answer was complete")
        return []

    def _event(self, message: EventMessage) -> list[dict[str, Any]]:
        headers = message.headers
        if headers.get(":message-type") == "exception":
            raise _exception(message)
        if headers.get(":message-type") == "error":
            text = str(headers.get(":error-message") or "upstream stream failed")
            raise UpstreamError(text, code=str(headers.get(":error-code") or "upstream_error"))
        try:
            data = _decode(message.payload) if message.payload else {}
        except msgspec.DecodeError:
            raise UpstreamError("upstream sent a malformed stream event") from None
        if not isinstance(data, dict):
            raise UpstreamError("upstream sent a malformed stream event")
        kind = headers.get(":event-type")
        index = data.get("contentBlockIndex", 0)
        index = index if isinstance(index, int) else 0
        if kind == "messageStart":
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "contentBlockStart":
            return self._start(index, data.get("start") or {})
        if kind == "contentBlockDelta":
            return self._delta(index, data.get("delta") or {})
        if kind == "contentBlockStop":
            return self._stop(index)
        if kind == "messageStop":
            self._stopped = True
            finish = FINISH_REASONS.get(str(data.get("stopReason")), "stop")
            if finish == "tool_calls" and not self._tools:
                finish = "stop"  # only the JSON answer's tool was called
            return [self._chunk({}, finish)]
        if kind == "metadata" and isinstance(data.get("usage"), dict):
            usage = self._chunk({})
            usage["choices"] = []
            usage["usage"] = converse_usage(data["usage"])
            return [usage]
        return []

    def _start(self, index: int, start: dict[str, Any]) -> list[dict[str, Any]]:
        use = start.get("toolUse")
        if not isinstance(use, dict):
            return []
        if use.get("name") == JSON_TOOL:
            self._blocks[index] = ("json", -1)
            return []
        tool = self._tools
        self._tools += 1
        self._blocks[index] = ("tool", tool)
        call = {
            "index": tool,
            "id": from_anthropic_id(str(use.get("toolUseId", ""))),
            "type": "function",
            "function": {"name": use.get("name", ""), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _delta(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        if "text" in delta:
            text = str(delta["text"])
            return [self._chunk({"content": text})] if text else []
        use = delta.get("toolUse")
        if isinstance(use, dict):
            partial = str(use.get("input") or "")
            kind, tool = self._blocks.get(index, ("", -1))
            if not partial or not kind:
                return []
            if kind == "json":
                return [self._chunk({"content": partial})]
            self._tool_args.add(tool)
            return [
                self._chunk({"tool_calls": [{"index": tool, "function": {"arguments": partial}}]})
            ]
        thought = delta.get("reasoningContent")
        if isinstance(thought, dict):
            entry = self._thinking.setdefault(index, ["", ""])
            if thought.get("text"):
                entry[0] += str(thought["text"])
                return [self._chunk({"reasoning_content": str(thought["text"])})]
            if thought.get("signature"):
                entry[1] += str(thought["signature"])
            if thought.get("redactedContent"):
                self._thinking.pop(index, None)
                block = {"type": "redacted_thinking", "data": thought["redactedContent"]}
                return [self._chunk({"thinking_blocks": [block]})]
        return []

    def _stop(self, index: int) -> list[dict[str, Any]]:
        kind, tool = self._blocks.get(index, ("", -1))
        if kind == "tool" and tool not in self._tool_args:
            call = {"index": tool, "function": {"arguments": "{}"}}
            return [self._chunk({"tool_calls": [call]})]
        thinking = self._thinking.pop(index, None)
        if thinking is None:
            return []
        block = {"type": "thinking", "thinking": thinking[0], "signature": thinking[1]}
        return [self._chunk({"thinking_blocks": [block]})]
