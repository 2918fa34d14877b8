"""A mock Google Vertex AI: an OAuth token endpoint and the publishers' model endpoints.

`POST /token` is the JWT bearer grant as Google serves it: the assertion's RS256 signature is
checked against the service account's public key, its `iss`, `aud` and `scope` too, and an
assertion whose `exp` has passed is refused (`invalid_grant`). The access tokens it issues
live `token_lifetime` seconds; the model endpoints refuse a missing, unknown or expired token
with 401 UNAUTHENTICATED, so a gateway that sent a stale token fails here.

`…/publishers/google/models/{m}:generateContent|streamGenerateContent` answers as the mock
Gemini upstream does; `…/publishers/anthropic/models/{m}:rawPredict|streamRawPredict` as the
mock Anthropic upstream, once the body has `anthropic_version: "vertex-2023-10-16"` and no
`model` (as Vertex requires); `count-tokens:rawPredict` counts.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mini_llm.schema.gemini import camel_keys

from . import anthropic_upstream, gemini_upstream
from .openai_upstream import Recorded

PROJECT = "mini-llm-test"
LOCATION = "us-east5"
EMAIL = "gateway@mini-llm-test.iam.gserviceaccount.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def google_error(status: int, message: str, kind: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "status": kind}}
    return web.json_response(body, status=status)


class VertexUpstream:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.requests: list[Recorded] = []
        self.token_requests = 0
        self.token_lifetime = 3600.0
        self.tokens: dict[str, float] = {}  # access token -> expiry
        self.url = ""  # set once served: the token endpoint's audience
        self._serial = itertools.count(1)

    def reset(self) -> None:
        self.requests.clear()
        self.token_requests = 0
        self.token_lifetime = 3600.0
        self.tokens.clear()

    def service_account(self, url: str) -> dict[str, str]:
        """The service-account JSON a gateway is given (its token_uri is this mock)."""
        self.url = url
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "mock-key-1",
            "private_key": pem,
            "client_email": EMAIL,
            "client_id": "1234567890",
            "token_uri": url + "/token",
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/token", self._token)
        base = "/v1/projects/{project}/locations/{location}/publishers"
        app.router.add_post(base + "/google/models/{model}:{method}", self._google)
        app.router.add_post(base + "/anthropic/models/{model}:{method}", self._anthropic)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = parse_qs((await request.read()).decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        try:
            header_b64, claims_b64, signature_b64 = form["assertion"][0].split(".")
            header = json.loads(_unb64(header_b64))
            claims = json.loads(_unb64(claims_b64))
            self.key.public_key().verify(
                _unb64(signature_b64),
                f"{header_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                status=400,
            )
        now = time.time()
        if header.get("alg") != "RS256" or claims.get("iss") != EMAIL:
            return web.json_response({"error": "invalid_grant"}, status=400)
        if claims.get("aud") != self.url + "/token" or claims.get("scope") != SCOPE:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "aud"}, status=400
            )
        if claims.get("exp", 0) < now or claims.get("iat", now) > now + 60:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT: expired."}, status=400
            )
        token = f"ya29.mock-{next(self._serial)}"
        self.tokens[token] = now + self.token_lifetime
        return web.json_response(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    def _refuse(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        expiry = self.tokens.get(auth.removeprefix("Bearer "))
        if not auth.startswith("Bearer ") or expiry is None or expiry <= time.time():
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token.",
                "UNAUTHENTICATED",
            )
        if request.match_info["project"] != PROJECT:
            return google_error(403, "Permission denied on the project", "PERMISSION_DENIED")
        return None

    async def _read(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(await request.read())
        self.requests.append(
            Recorded(request.method, request.raw_path, dict(request.headers), body)
        )
        return body

    async def _google(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        model = request.match_info["model"]
        if model.startswith("error-") and model[6:].isdigit():
            return gemini_upstream.error_response(int(model[6:]), f"mock vertex error {model[6:]}")
        if (
            request.match_info["method"] == "streamGenerateContent"
            and request.query.get("alt") != "sse"
        ):
            return google_error(400, "this mock streams with alt=sse only", "INVALID_ARGUMENT")
        # like the API (and the mock Gemini), it takes the proto field names too (`mime_type`)
        return await gemini_upstream.smart()(request, camel_keys(body))

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        model, method = request.match_info["model"], request.match_info["method"]
        if model == "count-tokens" and method == "rawPredict":
            return web.json_response({"input_tokens": 17})
        if body.get("anthropic_version") != "vertex-2023-10-16" or "model" in body:
            message = "anthropic_version: vertex-2023-10-16 is required and model is not allowed"
            return google_error(400, message, "INVALID_ARGUMENT")
        if (method == "streamRawPredict") != bool(body.get("stream")):
            return google_error(400, "stream must match the method", "INVALID_ARGUMENT")
        tail = model.rsplit("error-", 1)
        if len(tail) == 2 and tail[1].isdigit():
            return await anthropic_upstream.error(
                int(tail[1]), f"mock vertex claude error {tail[1]}"
            )(request, body)
        return await anthropic_upstream.smart()(request, body)
