"""Turning errors into responses in the client's dialect."""

from __future__ import annotations

import itertools
import os
from enum import Enum

from aiohttp import web

from ..errors import GatewayError

__all__ = ["Dialect", "error_body", "error_response", "internal_error", "request_id"]

_ID_PREFIX = "req_" + os.urandom(6).hex()
_ids = itertools.count(1)


def request_id(request: web.Request) -> str:
    """The client's `x-request-id` when it sent a sane one, else a new unique id."""
    given = request.headers.get("x-request-id")
    if given and len(given) <= 128 and given.isprintable():
        return given
    return f"{_ID_PREFIX}{next(_ids):x}"


class Dialect(Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def error_response(
    exc: GatewayError, dialect: Dialect, request_id: str | None = None
) -> web.Response:
    body = exc.openai_body() if dialect is Dialect.OPENAI else exc.anthropic_body()
    headers = {"Content-Type": "application/json"}
    if exc.headers:
        headers.update(exc.headers)
    if request_id is not None:
        headers["x-request-id"] = request_id
    return web.Response(body=body, status=exc.http_status, headers=headers)


def error_body(exc: GatewayError, dialect: Dialect) -> bytes:
    return exc.openai_body() if dialect is Dialect.OPENAI else exc.anthropic_body()


def internal_error() -> GatewayError:
    return GatewayError("The gateway failed to handle this request; see its log for details.")
