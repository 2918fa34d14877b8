"""Reading a request body: size-limited, JSON-decoded, errors as `GatewayError`s."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from ..errors import InvalidRequestError, PayloadTooLargeError

__all__ = ["read_json_object"]

_decode = msgspec.json.decode


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"Request body is larger than the gateway's limit of {limit} bytes "
        "(MINI_LLM_MAX_BODY_BYTES)."
    )


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; 413 before reading anything when Content-Length is too big."""
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()  # aiohttp stops at client_max_size (= limit) for chunked bodies
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if not raw:
        raise InvalidRequestError("Request body is empty; expected a JSON object.")
    try:
        body = _decode(raw)
    except msgspec.DecodeError as e:
        raise InvalidRequestError(
            f"Request body is not valid JSON: {e}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequestError(
            f"Request body must be a JSON object, not {type(body).__name__}.", code="invalid_json"
        )
    return body
