"""HMAC request signing for keys that have a signing secret.

    x-timestamp: <Unix seconds>
    x-signature: v1=<hex of HMAC-SHA256(secret, "{timestamp}.{METHOD}.{path}." + raw body)>

`path` is the request's path without its query string, as sent (`/v1/chat/completions`);
the body is the bytes on the wire (compressed, when the client compressed it). A timestamp
more than `window` seconds off either way is stale; a signature seen within the window is a
replay (remembered in the state backend for twice the window, so every instance knows it).
"""

from __future__ import annotations

import hashlib
import hmac

from ..errors import AuthenticationError

__all__ = ["SignatureError", "check_signature", "signature"]


class SignatureError(AuthenticationError):
    default_code = "invalid_signature"


def signature(secret: str, timestamp: str, method: str, path: str, body: bytes) -> str:
    """The `x-signature` value for a request."""
    message = f"{timestamp}.{method.upper()}.{path}.".encode() + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def check_signature(
    secret: str,
    timestamp: str | None,
    given: str | None,
    method: str,
    path: str,
    body: bytes,
    now: float,
    window: float,
) -> str:
    """The signature's hex digest when it is good and fresh; raise `SignatureError` else
    (the replay check is the caller's: it needs the state backend)."""
    if not timestamp or not given:
        raise SignatureError(
            "This key signs its requests: x-timestamp and x-signature (v1=<hex>) are required."
        )
    try:
        at = int(timestamp)
    except ValueError:
        raise SignatureError("x-timestamp must be Unix seconds.") from None
    if abs(now - at) > window:
        raise SignatureError(
            f"x-timestamp is more than {window:g} s from the gateway's clock: sign again."
        )
    expected = signature(secret, timestamp, method, path, body)
    if not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise SignatureError("The request signature does not match.")
    return expected[3:]
