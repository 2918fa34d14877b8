"""Turning errors into responses in the client's dialect, and request ids."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Protocol

from aiohttp import web

from ..errors import GatewayError

__all__ = ["ErrorRenderer", "error_response", "internal_error", "request_id"]

_ID_PREFIX = "req_" + os.urandom(6).hex()
_ids = itertools.count(1)


def request_id(request: web.Request) -> str:
    """The client's `x-request-id` when it sent a sane one, else a new unique id."""
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and given.isprintable() and given.isascii():
        return given
    return f"{_ID_PREFIX}{next(_ids):x}"


class ErrorRenderer(Protocol):
    def error_body(self, error: GatewayError) -> bytes: ...


def error_response(
    exc: GatewayError,
    dialect: ErrorRenderer,
    request_id: str | None = None,
    scrub: Callable[[bytes], bytes] | None = None,
) -> web.Response:
    """The error as a response in `dialect`, its body through `scrub` (the redactor) when it
    may carry an upstream's words."""
    headers = {"Content-Type": "application/json"}
    if exc.headers:
        headers.update(exc.headers)
    if request_id is not None:
        headers["x-request-id"] = request_id
    body = dialect.error_body(exc)
    if scrub is not None:
        body = scrub(body)
    return web.Response(body=body, status=exc.http_status, headers=headers)


def internal_error() -> GatewayError:
    return GatewayError("The gateway failed to handle this request; see its log for details.")
