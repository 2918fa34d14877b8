"""Reading a request body: size-limited, time-limited, JSON-decoded, errors as `GatewayError`s."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import msgspec
from aiohttp import web

from ..errors import InvalidRequestError, PayloadTooLargeError, RequestTimeoutError

__all__ = ["BodyReader"]

_decode = msgspec.json.decode


class BodyReader:
    """Reads JSON-object bodies up to `limit` bytes, within `timeout` seconds."""

    __slots__ = ("limit", "timeout")

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout

    async def read_object(self, request: web.Request) -> dict[str, Any]:
        """The body as a JSON object; 413 before reading anything when Content-Length is too
        big; 408 when the client has not sent it all within the timeout."""
        length = request.content_length
        if length is not None and length > self.limit:
            raise self._too_large()
        try:
            if request.content.is_eof():
                raw = await request.read()  # all there already (the usual case): no timer
            else:
                raw = await self._read_slow(request)
        except web.HTTPRequestEntityTooLarge:  # aiohttp stops at client_max_size (= limit)
            raise self._too_large() from None
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
                f"Request body must be a JSON object, not {type(body).__name__}.",
                code="invalid_json",
            )
        return body

    async def _read_slow(self, request: web.Request) -> bytes:
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            return await request.read()
        except asyncio.CancelledError:
            if not expired:
                raise
            if sys.version_info >= (3, 11):
                task.uncancel()
            raise RequestTimeoutError(
                f"The request body did not arrive within {self.timeout:g} s "
                "(MINI_LLM_BODY_TIMEOUT)."
            ) from None
        finally:
            handle.cancel()

    def _too_large(self) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"Request body is larger than the gateway's limit of {self.limit} bytes "
            "(MINI_LLM_MAX_BODY_BYTES)."
        )
