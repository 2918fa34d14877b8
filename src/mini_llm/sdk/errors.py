"""The SDK's exceptions (what `Client`, `AsyncClient` and the manager raise).

    MiniLLMError                      base of everything the SDK raises
    ├── GatewayStartError             the gateway could not be started (message: why, log tail)
    │   └── GatewayConfigError        ... because its configuration is invalid (`.problems`)
    ├── GatewayVersionError           a gateway of another version runs (on_version_mismatch)
    ├── APIConnectionError            the gateway could not be reached
    │   └── APITimeoutError           ... or did not answer in time
    └── APIStatusError                the gateway answered an error status; `.status`, `.body`
        ├── BadRequestError           400
        ├── AuthenticationError       401
        ├── PermissionDeniedError     403
        ├── NotFoundError             404 (unknown model: `.code == "model_not_found"`)
        ├── RateLimitError            429
        └── InternalServerError       5xx

These are the client's view; the gateway's own exception tree is `mini_llm.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "GatewayConfigError",
    "GatewayStartError",
    "GatewayVersionError",
    "InternalServerError",
    "MiniLLMError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "status_error",
]


class MiniLLMError(Exception):
    """Base of every exception the SDK raises."""


class GatewayStartError(MiniLLMError):
    """The gateway could not be started; `output`: what it printed, line by line."""

    def __init__(self, message: str, output: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.output = list(output)

    @classmethod
    def exited(cls, code: int, output: Sequence[str], log_file: object) -> GatewayStartError:
        """The gateway exited while starting: its own words as it printed them (without its
        `mini-llm: ` prefix, which whoever shows the error adds once), then where to look."""
        lines = [line.removeprefix("mini-llm: ") for line in output]
        where = f"exit status {code}; log: {log_file}"
        if len(lines) == 1:
            message = f"the gateway did not start: {lines[0]} ({where})"
        elif lines:
            message = f"the gateway did not start ({where}):\n" + "\n".join(lines)
        else:
            message = f"the gateway did not start and printed nothing ({where})"
        return cls(message, output)


class GatewayConfigError(GatewayStartError):
    """The configuration a gateway would start with is invalid; `problems`: one per item."""

    def __init__(
        self, message: str, output: Sequence[str] = (), problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message, output)
        self.problems = list(problems)


class GatewayVersionError(MiniLLMError):
    def __init__(self, message: str, *, running: str, expected: str) -> None:
        super().__init__(message)
        self.running = running
        self.expected = expected


class APIConnectionError(MiniLLMError):
    """`message`: what failed; `hint`: what to do about it, from Python (shown in parentheses)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(f"{message} ({hint})" if hint else message)
        self.message = message
        self.hint = hint


class APITimeoutError(APIConnectionError):
    pass


class APIStatusError(MiniLLMError):
    """An error answer: `status`, the decoded `body` (or raw text), and its message/type/code."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            error = {}
        message = error.get("message")
        if not isinstance(message, str) or not message:
            message = body if isinstance(body, str) and body else f"HTTP {status}"
        self.message: str = message
        self.type: str | None = error.get("type") if isinstance(error.get("type"), str) else None
        self.code: str | None = error.get("code") if isinstance(error.get("code"), str) else None
        super().__init__(f"{status}: {message}")


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def status_error(status: int, raw: bytes | Any) -> APIStatusError:
    """The typed exception for an error answer (`raw`: the body bytes, or an already decoded
    error event from a stream)."""
    body: Any = raw
    if isinstance(raw, (bytes, bytearray)):
        text = bytes(raw).decode("utf-8", errors="replace")
        try:
            body = json.loads(text)
        except ValueError:
            body = text
    cls = _BY_STATUS.get(status) or (InternalServerError if status >= 500 else APIStatusError)
    return cls(status, body)
