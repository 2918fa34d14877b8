"""AWS Signature Version 4, for one request as it will be sent.

Small and dependency-free: hashlib and hmac. Proven against AWS's published SigV4 test suite
(`tests/test_bedrock_sigv4.py`) and checked by botocore's own signer in the Bedrock mock.

The canonical request follows AWS's rules for every service but S3: the path is the one sent
(already percent-encoded), encoded once more (so a model id's `%3A` is signed as `%253A`, as
botocore does and AWS checks); the query's names and values are encoded and sorted; header
names lower-cased and sorted, values trimmed with inner runs of spaces collapsed; the payload
is its SHA-256. The signing key for a day, region and service is derived once and kept.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from urllib.parse import quote, unquote, urlsplit

from .base import Credential, UpstreamRequest

__all__ = ["SigV4Signer", "authorization", "canonical_request", "signing_key"]

_ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret).encode(), day)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&") if query else ():
        name, _, value = item.partition("=")
        pairs.append(
            (quote(unquote(name), safe=_UNRESERVED), quote(unquote(value), safe=_UNRESERVED))
        )
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


@functools.lru_cache(maxsize=1024)
def _canonical_path(path: str) -> str:
    """A target's path is the same on every request: encoded once, remembered."""
    return quote(path, safe="/~")


def _header_value(value: str) -> str:
    return " ".join(value.split())


def canonical_request(
    method: str, url: str, headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """`(canonical request, signed header names)`: every header in `headers` is signed."""
    parts = urlsplit(url)
    path = _canonical_path(parts.path or "/")
    names: dict[str, list[str]] = {}
    for name, value in headers.items():
        names.setdefault(name.lower(), []).append(_header_value(value))
    ordered = sorted(names)
    lines = "".join(f"{n}:{','.join(names[n])}\n" for n in ordered)
    signed = ";".join(ordered)
    text = f"{method}\n{path}\n{_canonical_query(parts.query)}\n{lines}\n{signed}\n{payload_hash}"
    return text, signed


def authorization(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key_id: str,
    key: bytes,
    scope: str,
    amz_date: str,
) -> str:
    """The `Authorization` header for a request whose signed headers are `headers`."""
    payload_hash = hashlib.sha256(body).hexdigest()
    text, signed = canonical_request(method, url, headers, payload_hash)
    to_sign = "\n".join((_ALGORITHM, amz_date, scope, hashlib.sha256(text.encode()).hexdigest()))
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{_ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or (parts.scheme, port) in (("https", 443), ("http", 80)):
        return host
    return f"{host}:{port}"


class SigV4Signer:
    """Signs each attempt afresh (a new `X-Amz-Date`) with a credential's fields
    (`access_key_id`, `secret_access_key`, optional `session_token`); a credential of kind
    `bearer` (a Bedrock API key) goes as `Authorization: Bearer` instead.

    Signed: `host` (set explicitly, so that what is signed is what is sent), `x-amz-date`,
    `x-amz-security-token` when there is one, and the request's own headers but those the
    transport may change on the way (`user-agent`, `accept-encoding`, `content-length`).
    """

    __slots__ = ("_clock", "_keys", "region", "service")

    _UNSIGNED = frozenset({"user-agent", "accept-encoding", "content-length", "authorization"})

    def __init__(self, region: str, service: str, clock: Callable[[], float] = time.time) -> None:
        self.region = region
        self.service = service
        self._clock = clock
        self._keys: dict[tuple[str, str], bytes] = {}

    def _key(self, secret: str, day: str) -> bytes:
        found = self._keys.get((secret, day))
        if found is None:
            if len(self._keys) > 64:
                self._keys.clear()
            found = self._keys[(secret, day)] = signing_key(secret, day, self.region, self.service)
        return found

    def sign(self, request: UpstreamRequest, credential: Credential | None) -> UpstreamRequest:
        if credential is None:
            return request
        fields = credential.fields
        headers = dict(request.headers)
        if fields.get("kind") == "bearer":
            headers["Authorization"] = "Bearer " + credential.secret
            return UpstreamRequest(
                request.method, request.url, headers, request.body, request.dropped
            )
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        day = amz_date[:8]
        headers["Host"] = _host(request.url)
        headers["X-Amz-Date"] = amz_date
        token = fields.get("session_token")
        if token:
            headers["X-Amz-Security-Token"] = token
        signed = {k: v for k, v in headers.items() if k.lower() not in self._UNSIGNED}
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        headers["Authorization"] = authorization(
            request.method,
            request.url,
            signed,
            request.body,
            fields.get("access_key_id", ""),
            self._key(fields.get("secret_access_key", credential.secret), day),
            scope,
            amz_date,
        )
        return UpstreamRequest(request.method, request.url, headers, request.body, request.dropped)
