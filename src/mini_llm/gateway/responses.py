"""Turning errors into responses in the client's dialect."""

from __future__ import annotations

from enum import Enum

from aiohttp import web

from ..errors import GatewayError

__all__ = ["Dialect", "error_body", "error_response", "internal_error"]


class Dialect(Enum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def error_response(exc: GatewayError, dialect: Dialect) -> web.Response:
    body = exc.openai_body() if dialect is Dialect.OPENAI else exc.anthropic_body()
    return web.Response(
        body=body,
        status=exc.http_status,
        content_type="application/json",
        headers=exc.headers,
    )


def error_body(exc: GatewayError, dialect: Dialect) -> bytes:
    return exc.openai_body() if dialect is Dialect.OPENAI else exc.anthropic_body()


def internal_error() -> GatewayError:
    return GatewayError("The gateway failed to handle this request; see its log for details.")
