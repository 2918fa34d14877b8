"""Gemini's embeddings and token counts: `batchEmbedContents`, `embedContent`, `countTokens`.

Pure. A canonical embeddings request (OpenAI's `/embeddings` body) becomes one
`batchEmbedContents` call, one request per input text (`dimensions` ->
`outputDimensionality`); Gemini embeds text only, so token arrays are a 400. A Gemini body
(from the Gemini-native ingress) goes as it came: `embedContent` for one `content`,
`batchEmbedContents` for `requests`, each request's `model` set to the upstream's. Answers of
either come back as canonical embeddings (floats; the dialect encodes base64 when asked).
`countTokens` takes Gemini bodies only (`translates = False`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec

from ..canonical import invalid
from ..errors import UpstreamError
from .base import SSEDecoder, SSEFraming, UpstreamModel, UpstreamRequest
from .gemini_answer import GeminiStreamTranslator, gemini_error_info

__all__ = [
    "GeminiCountTokens",
    "GeminiEmbed",
    "embedding_texts",
    "method_url",
    "parse_gemini_embeddings",
    "to_gemini_embeddings",
]

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def method_url(base_url: str, model: str, method: str) -> str:
    """`{base}/models/{model}:{method}`, the model percent-encoded as one path segment."""
    return f"{base_url}/models/{quote(model, safe='')}:{method}"


def embedding_texts(value: Any, param: str = "input") -> list[str]:
    """The texts of an embeddings `input` (a string or a list of strings); token arrays and
    anything else are a 400 naming `param`."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise invalid(
        param,
        "this provider embeds text only (a string or a list of strings); token arrays need an "
        "OpenAI-format provider",
    )


def to_gemini_embeddings(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A `batchEmbedContents` body for a canonical (OpenAI) embeddings request."""
    name = "models/" + model
    dimensions = body.get("dimensions")
    requests = []
    for text in embedding_texts(body.get("input")):
        request: dict[str, Any] = {"model": name, "content": {"parts": [{"text": text}]}}
        if isinstance(dimensions, int):
            request["outputDimensionality"] = dimensions
        requests.append(request)
    return {"requests": requests}


def parse_gemini_embeddings(raw: bytes) -> dict[str, Any]:
    """Canonical embeddings (`{"object": "list", "data": [...]}`) for a Gemini
    `embedContent` or `batchEmbedContents` answer. Usage only when Gemini reported it."""
    try:
        answer = _decode(raw)
    except msgspec.DecodeError:
        raise UpstreamError("upstream answered with malformed JSON") from None
    if not isinstance(answer, dict):
        raise UpstreamError("upstream answered with an unexpected shape")
    if isinstance(answer.get("error"), dict):
        info = gemini_error_info(502, raw)
        raise UpstreamError(info.message, code=info.code or "upstream_error")
    found = answer.get("embeddings")
    if found is None and isinstance(answer.get("embedding"), dict):
        found = [answer["embedding"]]
    if not isinstance(found, list):
        raise UpstreamError("upstream answered without embeddings")
    data = []
    for index, embedding in enumerate(found):
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list):
            raise UpstreamError("upstream answered an embedding without values")
        data.append({"object": "embedding", "index": index, "embedding": values})
    out: dict[str, Any] = {"object": "list", "data": data, "model": ""}
    metadata = answer.get("usageMetadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("promptTokenCount"), int):
        tokens = metadata["promptTokenCount"]
        out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return out


class GeminiEmbed:
    """`POST {base}/models/{model}:batchEmbedContents` (`:embedContent` for a Gemini body
    with one `content`)."""

    framing = SSEFraming(b"")
    translates = True
    format = None

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        if not native:
            payload = to_gemini_embeddings(body, to.model)
            url = method_url(to.base_url, to.model, "batchEmbedContents")
            return UpstreamRequest("POST", url, to.headers, _encode(payload))
        body.pop("model", None)
        requests = body.get("requests")
        if isinstance(requests, list):
            for request in requests:
                if isinstance(request, dict):
                    request["model"] = "models/" + to.model
            url = method_url(to.base_url, to.model, "batchEmbedContents")
        else:
            url = method_url(to.base_url, to.model, "embedContent")
        return UpstreamRequest("POST", url, to.headers, _encode(body))

    def parse(self, raw: bytes) -> dict[str, Any]:
        return parse_gemini_embeddings(raw)

    def decoder(self) -> SSEDecoder:
        return SSEDecoder(GeminiStreamTranslator())


class GeminiCountTokens:
    """`POST {base}/models/{model}:countTokens`: Gemini bodies only; elsewhere the Gemini
    dialect estimates."""

    framing = SSEFraming(b"")
    translates = False
    format = None

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        body.pop("model", None)
        url = method_url(to.base_url, to.model, "countTokens")
        return UpstreamRequest("POST", url, to.headers, _encode(body))

    def parse(self, raw: bytes) -> dict[str, Any]:
        try:
            answer = _decode(raw)
        except msgspec.DecodeError:
            raise UpstreamError("upstream answered with malformed JSON") from None
        total = answer.get("totalTokens") if isinstance(answer, dict) else None
        tokens = total if isinstance(total, int) else 0
        return {"usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}}

    def decoder(self) -> SSEDecoder:
        return SSEDecoder(GeminiStreamTranslator())
