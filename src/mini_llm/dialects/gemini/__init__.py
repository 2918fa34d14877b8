"""The Gemini-native dialect: `POST /v1beta/models/{model}:{method}` (also under `/v1/`).

Methods: `generateContent`, `streamGenerateContent` (`?alt=sse`), `countTokens`,
`embedContent`, `batchEmbedContents`. The model comes from the path, so a dialect object is
made per request (`gemini_dialect(spec)`); the model may hold `/`
(`models/openai/gpt-4o-mini:generateContent`) and may be an alias.

To a Gemini provider a request passes through (the body as it came, the answer's bytes back).
Any other provider gets the canonical form (`request.py`) and the answer comes back in
Gemini's shape (`response.py`). `countTokens` without a Gemini target is an estimate. Errors
are Google's: `{"error": {"code", "message", "status"}}`, a stream's last event the same.
The client's key (`x-goog-api-key`, `?key=`) is never forwarded: the gateway signs with its
own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import msgspec

from ...call import Answer, Call
from ...canonical import estimate_tokens
from ...errors import GatewayError
from ...formats import CHAT, COUNT_TOKENS, EMBEDDINGS, GEMINI, Operation
from ...schema.gemini import (
    BatchEmbedContentsRequest,
    CountTokensRequest,
    EmbedContentRequest,
    GenerateContentRequest,
    validate_gemini,
)
from ..base import LastEvents
from .request import to_canonical_embeddings, to_canonical_request
from .response import GeminiEventWriter, to_gemini_embeddings_answer, to_gemini_response

__all__ = [
    "GEMINI_METHODS",
    "GeminiDialect",
    "estimate_gemini_tokens",
    "gemini_dialect",
    "google_error_body",
    "google_status",
]

_encode = msgspec.json.encode

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_status(status: int) -> str:
    """Google's canonical error `status` for an HTTP status."""
    return _STATUS.get(status, "FAILED_PRECONDITION" if status < 500 else "INTERNAL")


def google_error_body(error: GatewayError) -> bytes:
    status = error.http_status
    detail = {"code": status, "message": error.message, "status": google_status(status)}
    return _encode({"error": detail})


class GeminiDialect:
    """What every Gemini method shares: the format, the model from the path, the errors."""

    name = "gemini"
    format = GEMINI
    operation: Operation = CHAT

    __slots__ = ("model",)

    def __init__(self, model: str) -> None:
        self.model = model

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        raise NotImplementedError

    def whole(self, call: Call, answer: Answer) -> bytes:
        raise NotImplementedError

    async def prepare(self, call: Call) -> None:
        return None

    def ask_usage(self, call: Call) -> None:
        return None  # the canonical form always asks for usage

    async def events(
        self, call: Call, answer: Answer, chunks: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncIterator[bytes]:
        writer = GeminiEventWriter(self.model)
        async for batch in chunks:
            events = [event for chunk in batch for event in writer.feed(chunk)]
            if events:
                yield b"".join(events)
        yield LastEvents(b"".join(writer.finish()))

    def passthrough(self, call: Call, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return stream

    def local(self, call: Call) -> tuple[bytes, dict[str, str]] | None:
        return None

    def error_body(self, error: GatewayError) -> bytes:
        return google_error_body(error)

    def error_event(self, error: GatewayError) -> bytes:
        return b"data: " + google_error_body(error) + b"\r\n\r\n"


class GeminiGenerate(GeminiDialect):
    name = "gemini.generate_content"
    stream = False

    __slots__ = ()

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        request: GenerateContentRequest = validate_gemini(body, GenerateContentRequest)
        dropped: list[str] = []
        model, stream = self.model, self.stream

        def convert(_: dict[str, Any]) -> dict[str, Any]:
            return to_canonical_request(request, model, stream, dropped)

        call = Call(CHAT, GEMINI, body, model, stream, to_canonical=convert)
        call.dropped = dropped
        return call

    def whole(self, call: Call, answer: Answer) -> bytes:
        if answer.completion is None:
            return answer.data or b""
        return _encode(to_gemini_response(answer.completion, self.model))


class GeminiStreamGenerate(GeminiGenerate):
    name = "gemini.stream_generate_content"
    stream = True

    __slots__ = ()


_IMAGE_TOKENS = 258  # what Gemini counts for an image


def estimate_gemini_tokens(request: CountTokensRequest) -> int:
    """About 4 characters a token over the texts, a flat amount per image or file."""
    contents = list(request.contents or ())
    total = 0
    for content in contents:
        for part in content.parts:
            if part.text:
                total += estimate_tokens(part.text)
            elif part.inline_data is not None or part.file_data is not None:
                total += _IMAGE_TOKENS
            else:
                total += estimate_tokens(_encode(part).decode())
    nested = request.generate_content_request
    if nested:
        total += estimate_tokens(_encode(nested).decode())
    return total


class GeminiCountTokens(GeminiDialect):
    name = "gemini.count_tokens"
    operation = COUNT_TOKENS

    __slots__ = ()

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        validate_gemini(body, CountTokensRequest)
        return Call(COUNT_TOKENS, GEMINI, body, self.model, False)

    def whole(self, call: Call, answer: Answer) -> bytes:
        return answer.data or b""

    def local(self, call: Call) -> tuple[bytes, dict[str, str]] | None:
        """No Gemini target: an estimate, labelled as such."""
        request: CountTokensRequest = validate_gemini(call.body, CountTokensRequest)
        answer = {"totalTokens": estimate_gemini_tokens(request)}
        return _encode(answer), {"x-mini-llm-token-count": "estimate"}


class GeminiEmbed(GeminiDialect):
    name = "gemini.embed_content"
    operation = EMBEDDINGS
    batch = False

    __slots__ = ()

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        kind = BatchEmbedContentsRequest if self.batch else EmbedContentRequest
        request = validate_gemini(body, kind)
        model = self.model

        def convert(_: dict[str, Any]) -> dict[str, Any]:
            requests = request if self.batch else [request]
            return to_canonical_embeddings(requests, model)

        return Call(EMBEDDINGS, GEMINI, body, model, False, to_canonical=convert)

    def whole(self, call: Call, answer: Answer) -> bytes:
        completion = answer.completion
        if completion is None:
            return answer.data or b""
        if not isinstance(completion.get("usage"), dict):  # for the ledger
            tokens = sum(estimate_tokens(t) for t in call.canonical().get("input") or ())
            completion["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _encode(to_gemini_embeddings_answer(completion, self.batch))


class GeminiBatchEmbed(GeminiEmbed):
    name = "gemini.batch_embed_contents"
    batch = True

    __slots__ = ()


GEMINI_METHODS: dict[str, Callable[[str], GeminiDialect]] = {
    "generateContent": GeminiGenerate,
    "streamGenerateContent": GeminiStreamGenerate,
    "countTokens": GeminiCountTokens,
    "embedContent": GeminiEmbed,
    "batchEmbedContents": GeminiBatchEmbed,
}
"""Each method a Gemini client may call on a model, and its dialect."""


def gemini_dialect(spec: str) -> GeminiDialect | None:
    """The dialect for `{model}:{method}` (the model may hold `/` and `:`), or None for a
    method the gateway does not serve. A leading `models/` is the model's resource prefix."""
    model, sep, method = spec.rpartition(":")
    factory = GEMINI_METHODS.get(method)
    if not sep or factory is None:
        return None
    model = model.removeprefix("models/")
    return factory(model) if model else None
