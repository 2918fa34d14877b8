"""What the gateway checks of an OpenAI embeddings request, and the answer's shape.

The request travels on as the decoded dict (unknown fields pass through to OpenAI-format
upstreams); these Structs validate it and describe both in the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from .openai import validation_error

__all__ = [
    "Embedding",
    "EmbeddingsList",
    "EmbeddingsRequest",
    "EmbeddingsUsage",
    "validate_embeddings_request",
]

_INPUT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2048},
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
        {
            "type": "array",
            "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
            "minItems": 1,
            "maxItems": 2048,
        },
    ],
    "description": "A string, a list of strings, a token array, or a list of token arrays "
    "(token arrays only where the provider takes them: OpenAI-format providers).",
}


class EmbeddingsRequest(msgspec.Struct, kw_only=True):
    model: Annotated[str, msgspec.Meta(min_length=1)]
    # Any, checked by _valid_input: msgspec would write `str | list[Any]` as an array without
    # items, which code generators cannot type; the schema says exactly what is taken
    input: Annotated[Any, msgspec.Meta(extra_json_schema=_INPUT_SCHEMA)]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=65536)] | None = None
    user: str | None = None


class Embedding(msgspec.Struct):
    index: int
    embedding: Annotated[
        list[float] | str,
        msgspec.Meta(description="floats, or base64 of little-endian float32 when asked"),
    ]
    object: Literal["embedding"] = "embedding"


class EmbeddingsUsage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsList(msgspec.Struct):
    data: list[Embedding]
    model: str
    object: Literal["list"] = "list"
    usage: EmbeddingsUsage | None = None


def _valid_input(value: Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    if not isinstance(value, list) or not value or len(value) > 2048:
        return False
    if all(isinstance(v, str) for v in value):
        return True
    if all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        return True
    return all(
        isinstance(v, list)
        and v
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in v)
        for v in value
    )


def validate_embeddings_request(body: dict[str, Any]) -> EmbeddingsRequest:
    try:
        request = msgspec.convert(body, EmbeddingsRequest)
    except msgspec.ValidationError as e:
        raise validation_error(e) from None
    if not _valid_input(request.input):
        raise validation_error(
            msgspec.ValidationError(
                "'input' must be a non-empty string, a list of 1 to 2048 strings, a token "
                "array, or a list of 1 to 2048 token arrays - at `$.input`"
            )
        )
    return request
