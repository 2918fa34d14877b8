"""Gemini answers back to canonical form: a response, a stream of responses, an error body.

Pure: no I/O, no clock (`created` is left 0 for the route to stamp). A Gemini stream is a
sequence of partial `GenerateContentResponse`s with no terminator: the translator emits the
role first, text and thought deltas as they come, each function call whole (Gemini sends them
whole), the finish reason when a candidate has one, and the usage when the stream ends.

A candidate that ends in a tool call Gemini discarded (`MALFORMED_FUNCTION_CALL` and the like)
with nothing else said is an `UpstreamError`, in a response or a stream, so it is retried.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec

from ..canonical import chunk, token_count
from ..errors import UpstreamError
from ..sse import SSEEvent
from .base import ErrorInfo

__all__ = [
    "FINISH_REASONS",
    "RETRYABLE_FINISH_REASONS",
    "SYNTHETIC_ID_PREFIX",
    "GeminiStreamTranslator",
    "gemini_error_info",
    "gemini_usage",
    "parse_gemini_response",
]

SYNTHETIC_ID_PREFIX = "call_gemini_"
"""Gemini may leave function calls without ids; ours start with this and never go back.

The rest names the response (its `responseId`, else a random hex) and the call's place in it:
Anthropic clients, and Claude upstreams after a fallback, refuse a conversation in which two
`tool_use` blocks share an id, so an id made up for one turn must not come back in the next.
"""

FINISH_REASONS: dict[str, str] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    # the candidate was flagged for an unsupported language: what it said was withheld
    "LANGUAGE": "content_filter",
}
"""Gemini `finishReason` -> OpenAI `finish_reason`; any other reason is `stop`."""

RETRYABLE_FINISH_REASONS = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "MALFORMED_RESPONSE"}
)
"""The model produced a tool call Gemini threw away: with nothing else said, the answer is an
`UpstreamError`, which the dispatcher retries (the model usually gets it right next time)."""

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")

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
    prompt = token_count(metadata.get("promptTokenCount"))
    thoughts = token_count(metadata.get("thoughtsTokenCount"))
    completion = token_count(metadata.get("candidatesTokenCount")) + thoughts
    cached = token_count(metadata.get("cachedContentTokenCount"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": token_count(metadata.get("totalTokenCount")) or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


class _MadeUpIds:
    """Ids for one response's function calls that came without one: `call_gemini_<scope>_<n>`,
    the scope being the response's id (only the characters every client accepts in an id) or,
    without one, a random hex (no clock: translation stays pure)."""

    __slots__ = ("_count", "_scope")

    def __init__(self) -> None:
        self._scope = ""
        self._count = 0

    def next(self, response_id: Any) -> str:
        if not self._scope:
            scope = _UNSAFE_ID_CHARS.sub("", response_id) if isinstance(response_id, str) else ""
            self._scope = scope[:64] or uuid.uuid4().hex[:16]
        self._count += 1
        return f"{SYNTHETIC_ID_PREFIX}{self._scope}_{self._count - 1}"


def _index(candidate: dict[str, Any], position: int) -> int:
    index = candidate.get("index")
    if isinstance(index, int) and not isinstance(index, bool) and index >= 0:
        return index
    return position


def _tool_call(part: dict[str, Any], ids: _MadeUpIds, response_id: Any) -> dict[str, Any]:
    call = part["functionCall"]
    ident = call.get("id")
    if not isinstance(ident, str) or not ident:
        ident = ids.next(response_id)
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


def _refuse_broken_call(reason: Any) -> None:
    if isinstance(reason, str) and reason in RETRYABLE_FINISH_REASONS:
        raise UpstreamError(f"upstream gave up on the answer it generated ({reason})")


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
    ids = _MadeUpIds()
    choices: list[dict[str, Any]] = []
    for position, candidate in enumerate(answer.get("candidates") or ()):
        parts = (candidate.get("content") or {}).get("parts") or ()
        texts: list[str] = []
        thoughts: list[str] = []
        calls: list[dict[str, Any]] = []
        for part in parts:
            if "functionCall" in part:
                calls.append(_tool_call(part, ids, answer.get("responseId")))
            elif part.get("thought"):
                thoughts.append(str(part.get("text", "")))
            elif "text" in part:
                texts.append(str(part["text"]))
        reason = candidate.get("finishReason")
        if not calls and not any(texts):
            _refuse_broken_call(reason)
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
                "index": _index(candidate, position),
                "message": message,
                "logprobs": None,
                "finish_reason": _finish(reason, bool(calls)),
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

    __slots__ = ("_finished", "_id", "_ids", "_model", "_said", "_started", "_tools", "_usage")

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._started = False
        self._tools: dict[int, int] = {}  # candidate index -> tool calls so far
        self._said: set[int] = set()  # candidates that produced text or a call
        self._ids = _MadeUpIds()
        self._finished = False
        self._usage: Any = None

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return chunk(self._id, self._model, delta, finish, index)

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
            index = _index(candidate, position)
            for part in (candidate.get("content") or {}).get("parts") or ():
                if "functionCall" in part:
                    count = self._tools.get(index, 0)
                    self._tools[index] = count + 1
                    self._said.add(index)
                    call = {"index": count, **_tool_call(part, self._ids, self._id)}
                    out.append(self._chunk(index, {"tool_calls": [call]}, None))
                elif part.get("thought"):
                    thought = {"reasoning_content": part.get("text", "")}
                    out.append(self._chunk(index, thought, None))
                elif part.get("text"):
                    self._said.add(index)
                    out.append(self._chunk(index, {"content": part["text"]}, None))
            reason = candidate.get("finishReason")
            if reason and index not in self._said:
                _refuse_broken_call(reason)
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
