"""The gateway's exceptions, and their one mapping to HTTP statuses and error bodies.

    GatewayError                      500 any failure the gateway reports to a client
    ├── InvalidRequestError           400 malformed JSON, wrong types, missing fields
    ├── AuthenticationError           401 no key configured, or a key the upstream refused
    ├── PermissionDeniedError         403
    ├── NotFoundError                 404 unknown route
    │   └── ModelNotFoundError        404 unknown model or provider
    ├── MethodNotAllowedError         405
    ├── RequestTimeoutError           408 the client was too slow sending its body
    ├── PayloadTooLargeError          413 body over the configured limit (decompressed too)
    ├── UnsupportedMediaTypeError     415 a Content-Encoding the gateway does not decode
    ├── UnprocessableEntityError      422
    ├── RateLimitError                429
    ├── UpstreamError                 502 the upstream failed or answered garbage
    │   └── UpstreamConnectionError   502 the upstream could not be reached
    ├── ServiceUnavailableError       503
    └── UpstreamTimeoutError          504 connect, first byte or total timeout

An `UpstreamStatusError` carries an upstream's own 4xx/5xx answer: the client gets the same
status (5xx becomes 502) with the upstream's message and nothing else of its body.

Every error renders in the client's dialect: OpenAI `{"error": {message, type, param, code}}`
or Anthropic `{"type": "error", "error": {type, message}}`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

__all__ = [
    "AuthenticationError",
    "GatewayError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "ModelNotFoundError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeoutError",
    "anthropic_error_type",
]

_encode = msgspec.json.encode


class GatewayError(Exception):
    """Base of every error the gateway reports; `status` and `type` say how it renders."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "api_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers = headers

    @property
    def http_status(self) -> int:
        return self.status

    def openai_body(self) -> bytes:
        return _encode(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )

    def anthropic_body(self) -> bytes:
        return _encode(
            {
                "type": "error",
                "error": {"type": anthropic_error_type(self.http_status), "message": self.message},
            }
        )


class InvalidRequestError(GatewayError):
    status = 400
    type = "invalid_request_error"


class AuthenticationError(GatewayError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status = 403
    type = "permission_error"


class NotFoundError(GatewayError):
    status = 404
    type = "not_found_error"


class ModelNotFoundError(NotFoundError):
    type = "invalid_request_error"
    default_code = "model_not_found"


class MethodNotAllowedError(GatewayError):
    status = 405
    type = "invalid_request_error"


class RequestTimeoutError(GatewayError):
    status = 408
    type = "invalid_request_error"


class PayloadTooLargeError(GatewayError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class UnsupportedMediaTypeError(GatewayError):
    status = 415
    type = "invalid_request_error"
    default_code = "unsupported_content_encoding"


class UnprocessableEntityError(GatewayError):
    status = 422
    type = "invalid_request_error"


class RateLimitError(GatewayError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamError(GatewayError):
    status = 502
    type = "api_error"
    default_code = "upstream_error"


class UpstreamConnectionError(UpstreamError):
    default_code = "upstream_unreachable"


class ServiceUnavailableError(GatewayError):
    status = 503
    type = "api_error"
    default_code = "service_unavailable"


class UpstreamTimeoutError(GatewayError):
    status = 504
    type = "timeout_error"
    default_code = "upstream_timeout"


_TYPE_BY_STATUS: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    """Anthropic's `error.type` for an HTTP status."""
    return _TYPE_BY_STATUS.get(status, "invalid_request_error" if status < 500 else "api_error")


class UpstreamStatusError(GatewayError):
    """An upstream answered with an error status; the client sees its message, not its body.

    `provider`, `upstream_status` and `raw` (redacted before logging) are kept for the log.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        upstream_status: int,
        raw: bytes = b"",
        param: str | None = None,
        code: str | None = None,
        upstream_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, headers=headers)
        self.provider = provider
        self.upstream_status = upstream_status
        self.raw = raw
        self.upstream_type = upstream_type
        self.retry_after: float | None = None
        """Seconds the upstream asked to wait (Retry-After / retry-after-ms), when it said."""

    @property
    def http_status(self) -> int:
        s = self.upstream_status
        return s if 400 <= s < 500 else 502

    def openai_body(self) -> bytes:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.upstream_type or _openai_type(self.http_status),
            "param": self.param,
            "code": self.code,
        }
        return _encode({"error": error})


def _openai_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    return "invalid_request_error" if status < 500 else "api_error"
