"""Gemini answers back to canonical form: a response, a stream of responses, an error body.

Pure: no I/O, no clock (`created` is left 0 for the route to stamp). A Gemini stream is a
sequence of partial `GenerateContentResponse`s with no terminator: the translator emits the
role first, text and thought deltas as they come, each function call whole (Gemini sends them
whole), the finish reason when a candidate has one, and the usage when the stream ends.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..errors import UpstreamError
from ..sse import SSEEvent
from .base import ErrorInfo

__all__ = [
    "FINISH_REASONS",
    "SYNTHETIC_ID_PREFIX",
    "GeminiStreamTranslator",
    "gemini_error_info",
    "gemini_usage",
    "parse_gemini_response",
]

SYNTHETIC_ID_PREFIX = "call_gemini_"
"""Gemini may leave function calls without ids; ours start with this and never go back."""

FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class _ErrorDetail(msgspec.Struct):
    message: Any = None
    status: Any = None
    code: Any = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def gemini_error_info(status: int, body: bytes) -> ErrorInfo:
    """Gemini errors: `{"error": {"code", "message", "status"}}` (sometimes in a list)."""
    if body[:1] == b"[":
        body = body[1:].rsplit(b"]", 1)[0]
    try:
        error = _error_decoder.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ErrorInfo(f"upstream answered HTTP {status}")
    if error is None or not isinstance(error.message, str) or not error.message:
        return ErrorInfo(f"upstream answered HTTP {status}")
    kind = error.status if isinstance(error.status, str) else None
    return ErrorInfo(error.message, None, kind.lower() if kind else None)


def gemini_usage(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        metadata = {}
    prompt = int(metadata.get("promptTokenCount") or 0)
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)
    completion = int(metadata.get("candidatesTokenCount") or 0) + thoughts
    cached = int(metadata.get("cachedContentTokenCount") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(metadata.get("totalTokenCount") or prompt + completion),
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def _tool_call(part: dict[str, Any], index: int) -> dict[str, Any]:
    call = part["functionCall"]
    ident = call.get("id") or f"{SYNTHETIC_ID_PREFIX}{index}"
    tool: dict[str, Any] = {
        "id": ident,
        "type": "function",
        "function": {
            "name": call.get("name", ""),
            "arguments": _encode(call.get("args") or {}).decode(),
        },
    }
    if part.get("thoughtSignature"):
        tool["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return tool


def _finish(reason: Any, has_tools: bool) -> str:
    finish = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if has_tools and finish == "stop" else finish


def _decoded(raw: bytes | str) -> dict[str, Any]:
    try:
        answer = _decode(raw)
    except msgspec.DecodeError:
        raise UpstreamError("upstream answered with malformed JSON") from None
    if not isinstance(answer, dict):
        raise UpstreamError("upstream answered with an unexpected shape")
    if isinstance(answer.get("error"), dict):
        info = gemini_error_info(502, _encode(answer))
        raise UpstreamError(info.message, code=info.code or "upstream_error")
    return answer


def parse_gemini_response(raw: bytes) -> dict[str, Any]:
    """A canonical `chat.completion` for a Gemini `GenerateContentResponse`."""
    answer = _decoded(raw)
    choices: list[dict[str, Any]] = []
    for position, candidate in enumerate(answer.get("candidates") or ()):
        parts = (candidate.get("content") or {}).get("parts") or ()
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in parts:
            if "functionCall" in part:
                calls.append(_tool_call(part, len(calls)))
            elif part.get("thought"):
                thoughts.append(str(part.get("text", "")))
            elif "text" in part:
                texts.append(str(part["text"]))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts or not calls else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        choices.append(
            {
                "index": candidate.get("index", position),
                "message": message,
                "logprobs": None,
                "finish_reason": _finish(candidate.get("finishReason"), bool(calls)),
            }
        )
    if not choices:  # the prompt itself was blocked
        message = {"role": "assistant", "content": "", "refusal": None}
        choices.append(
            {"index": 0, "message": message, "logprobs": None, "finish_reason": "content_filter"}
        )
    return {
        "id": answer.get("responseId", ""),
        "object": "chat.completion",
        "created": 0,
        "model": answer.get("modelVersion", ""),
        "choices": choices,
        "usage": gemini_usage(answer.get("usageMetadata")),
    }


class GeminiStreamTranslator:
    """Gemini stream events -> canonical chunks (one instance per stream)."""

    __slots__ = ("_finished", "_id", "_model", "_started", "_tools", "_usage")

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._started = False
        self._tools: dict[int, int] = {}  # candidate index -> tool calls so far
        self._finished = False
        self._usage: Any = None

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": self._model,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        if not event.data or event.data == "[DONE]":
            return []
        answer = _decoded(event.data)
        self._id = self._id or str(answer.get("responseId", ""))
        self._model = self._model or str(answer.get("modelVersion", ""))
        if answer.get("usageMetadata"):
            self._usage = answer["usageMetadata"]
        out: list[dict[str, Any]] = []
        if not self._started:
            self._started = True
            out.append(self._chunk(0, {"role": "assistant", "content": ""}, None))
        candidates = answer.get("candidates") or ()
        if not candidates and (answer.get("promptFeedback") or {}).get("blockReason"):
            self._finished = True
            out.append(self._chunk(0, {}, "content_filter"))
        for position, candidate in enumerate(candidates):
            index = int(candidate.get("index", position))
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    count = self._tools.get(index, 0)
                    self._tools[index] = count + 1
                    call = {"index": count, **_tool_call(part, count)}
                    out.append(self._chunk(index, {"tool_calls": [call]}, None))
                elif part.get("thought"):
                    thought = {"reasoning_content": part.get("text", "")}
                    out.append(self._chunk(index, thought, None))
                elif part.get("text"):
                    out.append(self._chunk(index, {"content": part["text"]}, None))
            reason = candidate.get("finishReason")
            if reason:
                self._finished = True
                finish = _finish(reason, bool(self._tools.get(index)))
                out.append(self._chunk(index, {}, finish))
        return out

    def finish(self) -> list[dict[str, Any]]:
        if not self._finished:
            raise UpstreamError("upstream stream ended before the answer was complete")
        usage = self._chunk(0, {}, None)
        usage["choices"] = []
        usage["usage"] = gemini_usage(self._usage)
        return [usage]
