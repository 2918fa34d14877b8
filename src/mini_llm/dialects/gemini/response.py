"""Canonical answers -> Gemini's: a `GenerateContentResponse`, its stream, embeddings. Pure.

A choice becomes a candidate: reasoning as a `thought` part, the text, then one
`functionCall` part per tool call (arguments as an object; a thought signature back in
`thoughtSignature`); `finish_reason` -> `finishReason` (`length` -> MAX_TOKENS,
`content_filter` -> SAFETY, the rest STOP); usage -> `usageMetadata`.

`GeminiEventWriter` is fed canonical chunks: text and thought deltas go out as they come, one
`GenerateContentResponse` per batch; tool calls are gathered (Gemini sends a call whole) and go
out with the finish reasons and the usage in the last event, as Gemini ends its streams.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import msgspec

from ...canonical import token_count

__all__ = [
    "GeminiEventWriter",
    "to_gemini_embeddings_answer",
    "to_gemini_response",
    "usage_metadata",
]

_encode = msgspec.json.encode
_decode = msgspec.json.decode

_FINISH = {"length": "MAX_TOKENS", "content_filter": "SAFETY"}


def usage_metadata(usage: Any) -> dict[str, Any]:
    if not isinstance(usage, dict):
        usage = {}
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens"))
    details = usage.get("completion_tokens_details")
    thoughts = token_count(details.get("reasoning_tokens")) if isinstance(details, dict) else 0
    out: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(completion - thoughts, 0),
        "totalTokenCount": token_count(usage.get("total_tokens")) or prompt + completion,
    }
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    cached = usage.get("prompt_tokens_details")
    if isinstance(cached, dict) and token_count(cached.get("cached_tokens")):
        out["cachedContentTokenCount"] = token_count(cached.get("cached_tokens"))
    return out


def _call_part(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    try:
        args = _decode(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except msgspec.DecodeError:
        args = {"arguments": arguments}
    if not isinstance(args, dict):
        args = {"value": args}
    body: dict[str, Any] = {"name": function.get("name", ""), "args": args}
    if call.get("id"):
        body["id"] = call["id"]
    part: dict[str, Any] = {"functionCall": body}
    google = (call.get("extra_content") or {}).get("google") or {}
    if isinstance(google, dict) and google.get("thought_signature"):
        part["thoughtSignature"] = google["thought_signature"]
    return part


def _finish(reason: Any) -> str:
    return _FINISH.get(reason, "STOP") if isinstance(reason, str) else "STOP"


def to_gemini_response(completion: dict[str, Any], model: str) -> dict[str, Any]:
    """A `GenerateContentResponse` for a canonical `chat.completion`."""
    candidates = []
    for position, choice in enumerate(completion.get("choices") or ()):
        message = choice.get("message") or {}
        parts: list[dict[str, Any]] = []
        if message.get("reasoning_content"):
            parts.append({"text": message["reasoning_content"], "thought": True})
        if message.get("content"):
            parts.append({"text": message["content"]})
        parts += [_call_part(call) for call in message.get("tool_calls") or ()]
        if not parts:
            parts.append({"text": ""})
        candidates.append(
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": _finish(choice.get("finish_reason")),
                "index": choice.get("index", position),
            }
        )
    return {
        "candidates": candidates,
        "usageMetadata": usage_metadata(completion.get("usage")),
        "modelVersion": model,
        "responseId": str(completion.get("id") or ""),
    }


class GeminiEventWriter:
    """Canonical chunks -> Gemini stream events (`data: {GenerateContentResponse}`)."""

    __slots__ = ("_calls", "_finish", "_id", "_model", "_usage")

    def __init__(self, model: str) -> None:
        self._model = model
        self._id = ""
        self._calls: dict[tuple[int, int], dict[str, Any]] = {}
        self._finish: dict[int, str] = {}
        self._usage: Any = None

    def _event(self, candidates: list[dict[str, Any]], last: bool = False) -> bytes:
        answer: dict[str, Any] = {"candidates": candidates}
        if last:
            answer["usageMetadata"] = usage_metadata(self._usage)
        answer["modelVersion"] = self._model
        answer["responseId"] = self._id
        return b"data: " + _encode(answer) + b"\r\n\r\n"

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        self._id = self._id or str(chunk.get("id") or "")
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        candidates = []
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            parts: list[dict[str, Any]] = []
            if delta.get("reasoning_content"):
                parts.append({"text": delta["reasoning_content"], "thought": True})
            if delta.get("content"):
                parts.append({"text": delta["content"]})
            for call in delta.get("tool_calls") or ():
                key = (index, call.get("index", 0))
                kept = self._calls.setdefault(key, {"function": {"name": "", "arguments": ""}})
                if call.get("id"):
                    kept["id"] = call["id"]
                if call.get("extra_content"):
                    kept["extra_content"] = call["extra_content"]
                function = call.get("function") or {}
                if function.get("name"):
                    kept["function"]["name"] = function["name"]
                if function.get("arguments"):
                    kept["function"]["arguments"] += function["arguments"]
            if choice.get("finish_reason"):
                self._finish[index] = choice["finish_reason"]
            if parts:
                content = {"role": "model", "parts": parts}
                candidates.append({"content": content, "index": index})
        return [self._event(candidates)] if candidates else []

    def finish(self) -> list[bytes]:
        indexes = sorted({*self._finish, *(i for i, _ in self._calls)} or {0})
        candidates = []
        for index in indexes:
            calls = [self._calls[k] for k in sorted(self._calls) if k[0] == index]
            parts = [_call_part(call) for call in calls] or [{"text": ""}]
            candidates.append(
                {
                    "content": {"role": "model", "parts": parts},
                    "finishReason": _finish(self._finish.get(index)),
                    "index": index,
                }
            )
        return [self._event(candidates, last=True)]


def _floats(embedding: Any) -> list[float]:
    if isinstance(embedding, str):  # base64 of little-endian float32
        raw = base64.b64decode(embedding)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return embedding if isinstance(embedding, list) else []


def to_gemini_embeddings_answer(answer: dict[str, Any], batch: bool) -> dict[str, Any]:
    """`batchEmbedContents`' answer (or `embedContent`'s) for canonical embeddings."""
    data = sorted(
        (item for item in answer.get("data") or () if isinstance(item, dict)),
        key=lambda item: item.get("index", 0),
    )
    embeddings = [{"values": _floats(item.get("embedding"))} for item in data]
    if batch:
        return {"embeddings": embeddings}
    return {"embedding": embeddings[0] if embeddings else {"values": []}}
