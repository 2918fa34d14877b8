"""The OpenAI Chat Completions wire format, spoken by OpenAI and every OpenAI-compatible server.

It is also the canonical format, so a request goes out as it came in, with only `model`
rewritten: unknown fields pass through untouched.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..canonical import has_cache_control, without_cache_control
from ..errors import UpstreamError
from ..formats import CHAT, EMBEDDINGS, OPENAI, RESPONSES, Format
from ..sse import SSEEvent
from .base import (
    ErrorInfo,
    HeaderSigner,
    SSEDecoder,
    SSEFraming,
    UpstreamModel,
    UpstreamRequest,
    Wire,
    event_object,
)

__all__ = [
    "EMBEDDINGS_ENDPOINT",
    "OPENAI_WIRE",
    "OpenAIChat",
    "OpenAIEmbeddings",
    "OpenAIStreamReader",
    "openai_error_info",
    "parse_openai_answer",
]

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class _ErrorDetail(msgspec.Struct):
    message: Any = None
    type: Any = None
    code: Any = None
    param: Any = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | str | None = None
    message: Any = None
    detail: Any = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def openai_error_info(status: int, body: bytes) -> ErrorInfo:
    """The message, type, code and param of an OpenAI-style error body, however sloppy."""
    try:
        parsed = _error_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ErrorInfo(f"upstream answered HTTP {status}")
    err = parsed.error
    if isinstance(err, _ErrorDetail) and isinstance(err.message, str) and err.message:
        return ErrorInfo(err.message, _opt_str(err.type), _opt_str(err.code), _opt_str(err.param))
    for candidate in (err, parsed.message, parsed.detail):
        if isinstance(candidate, str) and candidate:
            return ErrorInfo(candidate)
    return ErrorInfo(f"upstream answered HTTP {status}")


class OpenAIStreamReader:
    """Canonical chunks from an OpenAI-format stream: the events' JSON, as it is."""

    __slots__ = ("_done", "_finished")

    def __init__(self) -> None:
        self._done = False
        self._finished = False

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        data = event.data
        if data == "[DONE]":
            self._done = True
            return []
        if not data or self._done:
            return []
        chunk = event_object(data)
        if "error" in chunk:
            info = openai_error_info(502, data.encode())
            raise UpstreamError(info.message, code=info.code or "upstream_error")
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                self._finished = True
        return [chunk]

    def finish(self) -> list[dict[str, Any]]:
        if not (self._done or self._finished):
            raise UpstreamError("upstream stream ended before the answer was complete")
        return []


def parse_openai_answer(raw: bytes) -> dict[str, Any]:
    try:
        answer = _decode(raw)
    except msgspec.DecodeError:
        raise UpstreamError("upstream answered with malformed JSON") from None
    if not isinstance(answer, dict):
        raise UpstreamError("upstream answered with malformed JSON")
    return answer


# OpenAI models that refuse `reasoning_effort` (a 400): a translated request (an Anthropic
# client's effort or thinking, say) goes to them without it. Prefixes, first match wins.
NO_REASONING_EFFORT: tuple[str, ...] = ("gpt-4", "gpt-3.5", "chatgpt-4o")


class OpenAIChat:
    """`POST {base}/chat/completions`: the canonical format's own, so nothing to translate."""

    framing = SSEFraming(b"[DONE]")
    translates = True
    format: Format | None = None

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        dropped: tuple[str, ...] = ()
        if not native and has_cache_control(body):
            # a translated prompt-cache breakpoint: the OpenAI format has no such field (OpenAI
            # caches prefixes on its own); the canonical body is shared by the route's targets,
            # so this is a copy
            body = without_cache_control(body)
            dropped = ("cache_control",)
        if not native and "reasoning_effort" in body and to.model.startswith(NO_REASONING_EFFORT):
            # the canonical body is shared by the route's targets: leave it as it is
            body = {k: v for k, v in body.items() if k != "reasoning_effort"}
            dropped += ("reasoning_effort",)
        body["model"] = to.model
        url = to.base_url + "/chat/completions"
        return UpstreamRequest("POST", url, to.headers, _encode(body), dropped)

    def parse(self, raw: bytes) -> dict[str, Any]:
        return parse_openai_answer(raw)

    def decoder(self) -> SSEDecoder:
        return SSEDecoder(OpenAIStreamReader())


class OpenAIEmbeddings:
    """`POST {base}/embeddings`: also the canonical embeddings shape, so nothing to translate.
    Embeddings never stream; the framing and decoder are only there to fill the seam."""

    framing = SSEFraming(b"[DONE]")
    translates = True
    format: Format | None = None

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        body["model"] = to.model
        return UpstreamRequest("POST", to.base_url + "/embeddings", to.headers, _encode(body))

    def parse(self, raw: bytes) -> dict[str, Any]:
        return parse_openai_answer(raw)

    def decoder(self) -> SSEDecoder:
        return SSEDecoder(OpenAIStreamReader())


_CHAT = OpenAIChat()
EMBEDDINGS_ENDPOINT = OpenAIEmbeddings()

OPENAI_WIRE = Wire(
    name="openai",
    format=OPENAI,
    # a Responses request reaches an OpenAI-compatible chat server as its canonical chat form
    endpoints={CHAT: _CHAT, RESPONSES: _CHAT, EMBEDDINGS: EMBEDDINGS_ENDPOINT},
    signer=HeaderSigner("Authorization", "Bearer "),
    base_headers={"Content-Type": "application/json"},
    read_error=openai_error_info,
)
