"""The OpenAI Chat Completions wire format, spoken by OpenAI and every OpenAI-compatible server.

It is also the canonical format, so a request goes out as it came in, with only `model`
rewritten: unknown fields pass through untouched.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..config import ProviderConfig
from ..routing.keys import KeyEntry
from .base import ErrorInfo, Provider, UpstreamRequest

__all__ = ["OPENAI_WIRE", "OpenAIWire", "openai_error_info"]

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


class OpenAIWire:
    name = "openai"

    def chat_url(self, config: ProviderConfig) -> str:
        return config.base_url + "/chat/completions"

    def auth_headers(self, config: ProviderConfig, key: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **dict(config.headers)}
        if key:
            headers["Authorization"] = "Bearer " + key
        return headers

    def chat_request(
        self, provider: Provider, body: dict[str, Any], key: KeyEntry | None
    ) -> UpstreamRequest:
        headers = key.headers if key is not None else provider.keyless_headers
        return UpstreamRequest("POST", provider.chat_url, headers, _encode(body))

    def error_info(self, status: int, body: bytes) -> ErrorInfo:
        return openai_error_info(status, body)


OPENAI_WIRE = OpenAIWire()
