"""The OpenAI embeddings dialect: `POST /v1/embeddings` (also without `/v1`).

Its bodies are the canonical embeddings form, so an OpenAI-format provider gets them as they
came (only `model` rewritten) and the client gets the upstream's bytes; a Gemini provider gets
them translated (`providers/gemini_embeddings.py`) and the canonical answer comes back here,
where the gateway does what that upstream cannot: `encoding_format: "base64"` (little-endian
float32, as OpenAI encodes it) and usage, estimated from the input when the upstream reported
none. Embeddings never stream.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from ..call import Answer, Call
from ..canonical import estimate_tokens
from ..errors import GatewayError
from ..formats import EMBEDDINGS, OPENAI
from ..schema.embeddings import validate_embeddings_request

__all__ = ["OPENAI_EMBEDDINGS", "OpenAIEmbeddingsDialect", "as_base64", "estimate_input"]

_encode = msgspec.json.encode


def as_base64(vector: list[float]) -> str:
    """A vector as OpenAI's `encoding_format: "base64"` gives it."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def estimate_input(value: Any) -> int:
    """About 4 characters a token over the texts; one token per token id."""
    if isinstance(value, str):
        return estimate_tokens(value)
    total = 0
    for item in value if isinstance(value, list) else ():
        if isinstance(item, str):
            total += estimate_tokens(item)
        elif isinstance(item, list):
            total += len(item)
        else:
            total += 1
    return total


def finish_answer(call: Call, answer: dict[str, Any], model: str) -> dict[str, Any]:
    """A translated canonical answer made whole: model, usage (estimated when missing) and
    the encoding the client asked for."""
    answer["model"] = answer.get("model") or model
    if not isinstance(answer.get("usage"), dict):
        tokens = estimate_input(call.body.get("input"))
        answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    if call.body.get("encoding_format") == "base64":
        for item in answer.get("data") or ():
            vector = item.get("embedding") if isinstance(item, dict) else None
            if isinstance(vector, list):
                item["embedding"] = as_base64(vector)
    return answer


class OpenAIEmbeddingsDialect:
    name = "openai.embeddings"
    format = OPENAI
    operation = EMBEDDINGS

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        request = validate_embeddings_request(body)
        return Call(EMBEDDINGS, OPENAI, body, request.model, False)

    async def prepare(self, call: Call) -> None:
        return None

    def ask_usage(self, call: Call) -> None:
        return None

    def whole(self, call: Call, answer: Answer) -> bytes:
        completion = answer.completion
        if completion is None:
            return answer.data or b""
        model = answer.target.model if answer.target is not None else call.model
        return _encode(finish_answer(call, completion, model))

    async def events(
        self, call: Call, answer: Answer, chunks: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncIterator[bytes]:
        async for _ in chunks:  # never asked: embeddings do not stream
            pass
        yield b""

    def passthrough(self, call: Call, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return stream

    def local(self, call: Call) -> tuple[bytes, dict[str, str]] | None:
        return None

    def error_body(self, error: GatewayError) -> bytes:
        return error.openai_body()

    def error_event(self, error: GatewayError) -> bytes:
        return b"data: " + error.openai_body() + b"\n\n"


OPENAI_EMBEDDINGS = OpenAIEmbeddingsDialect()
