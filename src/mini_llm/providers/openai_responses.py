"""`POST {base}/responses`: OpenAI's Responses API, spoken natively by OpenAI (and by servers
configured with the `openai-responses` wire). Bodies pass through as they came (only `model`
rewritten); the answer's bytes go back to the client untouched. What this module reads back
(`parse`, `decoder`) is only for the gateway's own accounting: usage, and a stream's end.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..canonical import chunk, token_count
from ..errors import InvalidRequestError, UpstreamError
from ..formats import CHAT, EMBEDDINGS, OPENAI, OPENAI_RESPONSES, RESPONSES
from ..sse import SSEEvent
from .base import (
    HeaderSigner,
    SSEDecoder,
    SSEFraming,
    UpstreamModel,
    UpstreamRequest,
    Wire,
    event_object,
)
from .openai import EMBEDDINGS_ENDPOINT, OpenAIChat, openai_error_info, parse_openai_answer

__all__ = [
    "OPENAI_RESPONSES_WIRE",
    "OpenAIResponses",
    "ResponsesStreamReader",
    "canonical_usage",
    "parse_response",
]

_encode = msgspec.json.encode
_decode = msgspec.json.decode

_FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}


def canonical_usage(usage: Any) -> dict[str, Any] | None:
    """Canonical (chat) usage for Responses usage."""
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage.get("input_tokens"))
    completion = token_count(usage.get("output_tokens"))
    details = usage.get("input_tokens_details")
    cached = token_count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    output = usage.get("output_tokens_details")
    reasoning = token_count(output.get("reasoning_tokens")) if isinstance(output, dict) else 0
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def _finish(response: dict[str, Any], calls: bool) -> str:
    details = response.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    if response.get("status") == "incomplete":
        return _FINISH.get(str(reason), "length")
    return "tool_calls" if calls else "stop"


def parse_response(raw: bytes) -> dict[str, Any]:
    """A canonical `chat.completion` for a Responses `response` object."""
    response = parse_openai_answer(raw)
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(str(part.get("text") or ""))
        elif item.get("type") == "function_call":
            function = {"name": item.get("name", ""), "arguments": item.get("arguments", "")}
            calls.append({"id": item.get("call_id", ""), "type": "function", "function": function})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "finish_reason": _finish(response, bool(calls))}
    answer: dict[str, Any] = {
        "id": str(response.get("id") or ""),
        "object": "chat.completion",
        "created": 0,
        "model": str(response.get("model") or ""),
        "choices": [choice],
    }
    usage = canonical_usage(response.get("usage"))
    if usage is not None:
        answer["usage"] = usage
    return answer


class ResponsesStreamReader:
    """Canonical chunks from a Responses stream: text and argument deltas, the finish and the
    usage (from the last event's response); `response.failed` and `error` raise."""

    __slots__ = ("_calls", "_done", "_id", "_model")

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._calls: dict[str, int] = {}  # item id -> tool-call index
        self._done = False

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk(self._id, self._model, delta, finish)

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        if not event.data or self._done:
            return []
        data = event_object(event.data)
        kind = data.get("type") or event.event
        if kind == "response.output_text.delta":
            return [self._chunk({"content": str(data.get("delta") or "")})]
        if kind == "response.output_item.added":
            item = data.get("item") or {}
            if item.get("type") == "function_call":
                index = self._calls[str(item.get("id"))] = len(self._calls)
                function = {"name": item.get("name", ""), "arguments": ""}
                call = {"index": index, "id": item.get("call_id", ""), "function": function}
                return [self._chunk({"tool_calls": [{**call, "type": "function"}]})]
            return []
        if kind == "response.function_call_arguments.delta":
            index = self._calls.get(str(data.get("item_id")), 0)
            call = {"index": index, "function": {"arguments": str(data.get("delta") or "")}}
            return [self._chunk({"tool_calls": [call]})]
        if kind == "response.created":
            response = data.get("response") or {}
            self._id = str(response.get("id") or "")
            self._model = str(response.get("model") or "")
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind in ("response.completed", "response.incomplete"):
            self._done = True
            response = data.get("response") or {}
            finish = self._chunk({}, _finish(response, bool(self._calls)))
            usage = canonical_usage(response.get("usage"))
            if usage is None:
                return [finish]
            last = self._chunk({})
            last["choices"] = []
            last["usage"] = usage
            return [finish, last]
        if kind in ("response.failed", "error"):
            error = (data.get("response") or {}).get("error") if kind != "error" else data
            error = error if isinstance(error, dict) else {}
            info = openai_error_info(502, _encode({"error": error}))
            raise UpstreamError(info.message, code=info.code or "upstream_error")
        return []

    def finish(self) -> list[dict[str, Any]]:
        if not self._done:
            raise UpstreamError("upstream stream ended before the response was complete")
        return []


class _ResponsesFraming(SSEFraming):
    """A Responses stream has no end marker: its last event holds the whole response, so the
    dialect checks that it came (`dialects/openai_responses: passthrough`)."""

    __slots__ = ()

    def complete(self, tail: bytes) -> bool:
        return True


class OpenAIResponses:
    """`POST {base}/responses`: the Responses API's own bodies."""

    format = OPENAI_RESPONSES
    """The format of the bodies this endpoint takes as they are."""
    framing = _ResponsesFraming(b"")
    translates = False

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        if not native:
            raise InvalidRequestError("Only Responses API bodies can be sent to /responses.")
        body["model"] = to.model
        return UpstreamRequest("POST", to.base_url + "/responses", to.headers, _encode(body))

    def parse(self, raw: bytes) -> dict[str, Any]:
        return parse_response(raw)

    def decoder(self) -> SSEDecoder:
        return SSEDecoder(ResponsesStreamReader())


OPENAI_RESPONSES_WIRE = Wire(
    # OpenAI's own API: Chat Completions, and the Responses API served by the upstream itself
    # (a provider that is OpenAI-compatible for chat only has the `openai` wire, which answers
    # a Responses request with a chat completion)
    name="openai-responses",
    format=OPENAI,
    endpoints={
        CHAT: OpenAIChat(),
        RESPONSES: OpenAIResponses(),
        EMBEDDINGS: EMBEDDINGS_ENDPOINT,
    },
    signer=HeaderSigner("Authorization", "Bearer "),
    base_headers={"Content-Type": "application/json"},
    read_error=openai_error_info,
)
