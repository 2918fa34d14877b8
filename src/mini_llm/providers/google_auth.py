"""OAuth access tokens for a Google service account: the JWT bearer grant (RFC 7523), RS256.

`ServiceAccountTokens` is the Vertex wires' `CredentialSource`: given a service-account
credential (the private key as its secret; `client_email`, `token_uri`, `private_key_id` as
fields) it returns a credential whose secret is a current access token. A token is cached per
account and fetched again once less than min(5 min, half its lifetime) remains, so one is
never sent close to (let alone past) its expiry. Concurrent requests share one fetch: the
first takes the account's lock and fetches, the others wait on the lock and find the token.
The fetch goes through the provider's transport (the gateway's one pooled client).

RS256 needs RSA: the `cryptography` package (`pip install 'mini-llm[vertex]'`), imported on
the first token, so a gateway without a Vertex provider never loads it.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import msgspec

from ..errors import UpstreamError, UpstreamStatusError
from .base import Credential, Transport, UpstreamRequest

__all__ = ["CLOUD_PLATFORM", "ServiceAccountTokens", "jwt_assertion", "refresh_margin", "rs256"]

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600

_encode = msgspec.json.encode
_decode = msgspec.json.decode


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refresh_margin(lifetime: float) -> float:
    """How long before its expiry a token is replaced: min(5 min, half its lifetime)."""
    return min(300.0, lifetime / 2)


def rs256(private_key: Any, data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    signature: bytes = private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return signature


def load_private_key(pem: str) -> Any:
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise UpstreamError(
            "Vertex AI needs the cryptography package: pip install 'mini-llm[vertex]'"
        ) from None
    try:
        return load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise UpstreamError("the service account's private key cannot be read") from None


def jwt_assertion(private_key: Any, claims: dict[str, Any], key_id: str = "") -> str:
    """A compact RS256 JWS of `claims`."""
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT"}
    if key_id:
        header["kid"] = key_id
    signing_input = _b64(_encode(header)) + "." + _b64(_encode(claims))
    return signing_input + "." + _b64(rs256(private_key, signing_input.encode()))


@dataclass(slots=True)
class _Account:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    key: Any = None
    token: Credential | None = None
    renew_at: float = 0.0


class ServiceAccountTokens:
    """Access tokens per service account, fetched one at a time and cached."""

    __slots__ = ("_accounts", "_clock", "provider", "scope")

    def __init__(
        self,
        provider: str = "vertex",
        scope: str = CLOUD_PLATFORM,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.scope = scope
        self._clock = clock
        self._accounts: dict[str, _Account] = {}

    async def prepare(self, credential: Credential, transport: Transport) -> Credential:
        account = self._accounts.get(credential.secret)
        if account is None:
            account = self._accounts[credential.secret] = _Account()
        if account.token is not None and self._clock() < account.renew_at:
            return account.token
        async with account.lock:
            if account.token is not None and self._clock() < account.renew_at:
                return account.token  # fetched by whoever held the lock before
            return await self._fetch(account, credential, transport)

    async def _fetch(
        self, account: _Account, credential: Credential, transport: Transport
    ) -> Credential:
        fields = credential.fields
        if account.key is None:
            account.key = load_private_key(credential.secret)
        token_uri = fields["token_uri"]
        now = int(self._clock())
        claims = {
            "iss": fields["client_email"],
            "scope": self.scope,
            "aud": token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        assertion = jwt_assertion(account.key, claims, fields.get("private_key_id", ""))
        body = urlencode({"grant_type": GRANT, "assertion": assertion}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        response = await transport.send(UpstreamRequest("POST", token_uri, headers, body))
        try:
            raw = await response.read()
        finally:
            response.release()
        if response.status != 200:
            raise self._refused(response.status, raw)
        try:
            data = _decode(raw)
            access = data["access_token"]
            lifetime = float(data.get("expires_in", 3600))
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            raise UpstreamError("the token endpoint answered without an access token") from None
        if not isinstance(access, str) or not access or lifetime <= 0:
            raise UpstreamError("the token endpoint answered without an access token")
        account.token = Credential(access)
        account.renew_at = now + lifetime - refresh_margin(lifetime)
        return account.token

    def _refused(self, status: int, raw: bytes) -> UpstreamStatusError:
        try:
            data = _decode(raw)
        except msgspec.DecodeError:
            data = {}
        data = data if isinstance(data, dict) else {}
        reason = data.get("error_description") or data.get("error") or f"HTTP {status}"
        # a refused grant (bad key, wrong clock, unknown account) is this credential's fault:
        # as a 401, the dispatcher sets it aside and tries the next
        return UpstreamStatusError(
            f"the service account's token request was refused: {reason}",
            provider=self.provider,
            upstream_status=401 if status in (400, 401, 403) else status,
            raw=raw,
            code="token_refused",
        )
