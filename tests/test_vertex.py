"""Vertex AI: RS256 against RFC 7515's published example, the token cache's rules (refresh at
min(5 min, half the lifetime), one fetch for concurrent requests, never an expired token), the
wires by publisher, and the gateway against the mock Vertex (whose token endpoint checks the
JWT's signature and whose models refuse an expired token)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping
from typing import Any

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mini_llm.config import ConfigError, load_settings
from mini_llm.errors import UpstreamStatusError
from mini_llm.formats import ANTHROPIC, GEMINI
from mini_llm.providers.base import Credential, UpstreamModel, UpstreamRequest
from mini_llm.providers.google_auth import (
    ServiceAccountTokens,
    refresh_margin,
    rs256,
)
from mini_llm.providers.vertex import vertex_wires

from .conftest import GatewayFactory
from .upstreams.vertex_upstream import VertexUpstream

# RFC 7515, Appendix A.2: an RS256 JWS and the RSA key that signed it (RS256 is deterministic)
A2_N = (
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4Ql"
    "L-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUs"
    "LA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoud"
    "F8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
)
A2_D = (
    "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe"
    "46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9J"
    "YanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuh"
    "LhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ"
)
A2_INPUT = (
    "eyJhbGciOiJSUzI1NiJ9."
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
)
A2_SIGNATURE = (
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujG"
    "bds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K"
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6"
    "LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
)


def pad(text: str) -> str:
    return text + "=" * (-len(text) % 4)


def _int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def test_rs256_matches_rfc7515_a2() -> None:
    n, e, d = _int(A2_N), 65537, _int(A2_D)
    p, q = rsa.rsa_recover_prime_factors(n, e, d)
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, n),
    )
    signature = rs256(numbers.private_key(), A2_INPUT.encode())
    assert base64.urlsafe_b64encode(signature).rstrip(b"=").decode() == A2_SIGNATURE


def test_refresh_margin() -> None:
    assert refresh_margin(3600) == 300
    assert refresh_margin(120) == 60
    assert refresh_margin(1) == 0.5


class Response:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.headers: Mapping[str, str] = {"Content-Type": "application/json"}
        self._body = json.dumps(body).encode()

    @property
    def content(self) -> Any:
        raise AssertionError("not a stream")

    async def read(self) -> bytes:
        return self._body

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class TokenEndpoint:
    """A transport that answers token requests, slowly, counting them."""

    def __init__(self, lifetime: float, status: int = 200) -> None:
        self.lifetime = lifetime
        self.status = status
        self.calls = 0
        self.assertions: list[str] = []

    async def send(self, request: UpstreamRequest, timeouts: Any = None) -> Response:
        self.calls += 1
        self.assertions.append(request.body.decode())
        await asyncio.sleep(0.01)
        if self.status != 200:
            return Response(self.status, {"error": "invalid_grant", "error_description": "nope"})
        return Response(200, {"access_token": f"tok-{self.calls}", "expires_in": self.lifetime})

    async def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def account() -> Credential:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    fields = {
        "client_email": "a@b.iam",
        "token_uri": "https://oauth2.example/token",
        "private_key_id": "k1",
    }
    return Credential(pem, fields)


def test_tokens_are_shared_cached_and_refreshed(account: Credential) -> None:
    async def run() -> None:
        clock = Clock()
        tokens = ServiceAccountTokens(clock=clock)
        endpoint = TokenEndpoint(lifetime=3600)
        got = await asyncio.gather(*(tokens.prepare(account, endpoint) for _ in range(20)))
        assert {c.secret for c in got} == {"tok-1"} and endpoint.calls == 1  # one fetch
        clock.now += 3600 - 301  # more than 5 minutes left: still the same token
        assert (await tokens.prepare(account, endpoint)).secret == "tok-1"
        clock.now += 2  # less than 5 minutes left: a new one, before the old expires
        assert (await tokens.prepare(account, endpoint)).secret == "tok-2"
        short = ServiceAccountTokens(clock=clock)
        brief = TokenEndpoint(lifetime=120)
        assert (await short.prepare(account, brief)).secret == "tok-1"
        clock.now += 59  # a 2-minute token is replaced once half of it is gone
        assert (await short.prepare(account, brief)).secret == "tok-1"
        clock.now += 2
        assert (await short.prepare(account, brief)).secret == "tok-2"

    asyncio.run(run())


def test_the_assertion_is_a_signed_jwt_bearer_grant(account: Credential) -> None:
    async def run() -> None:
        endpoint = TokenEndpoint(lifetime=3600)
        await ServiceAccountTokens(clock=Clock()).prepare(account, endpoint)
        form = dict(item.split("=", 1) for item in endpoint.assertions[0].split("&"))
        assert form["grant_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        header, claims, _ = form["assertion"].split(".")
        assert json.loads(base64.urlsafe_b64decode(pad(header))) == {
            "alg": "RS256",
            "typ": "JWT",
            "kid": "k1",
        }
        body = json.loads(base64.urlsafe_b64decode(pad(claims)))
        assert body["aud"] == "https://oauth2.example/token" and body["iss"] == "a@b.iam"
        assert body["exp"] - body["iat"] == 3600

    asyncio.run(run())


def test_a_refused_grant_sets_the_credential_aside(account: Credential) -> None:
    async def run() -> None:
        with pytest.raises(UpstreamStatusError) as refused:
            await ServiceAccountTokens(clock=Clock()).prepare(account, TokenEndpoint(3600, 400))
        assert refused.value.upstream_status == 401

    asyncio.run(run())


def test_wires_by_publisher() -> None:
    wire_for = vertex_wires({})
    gemini, claude = wire_for("gemini-2.5-flash"), wire_for("claude-sonnet-4-5@20250929")
    assert gemini.format is GEMINI and claude.format is ANTHROPIC
    assert gemini.source is claude.source is not None  # one token cache
    base = "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5"
    to = UpstreamModel("vertex", base, "claude-sonnet-4-5@20250929", {})
    body = {"model": "x", "max_tokens": 10, "messages": [], "stream": True}
    request = claude.endpoints[next(iter(claude.endpoints))].request(to, dict(body), True, True)
    assert (
        request.url
        == base + "/publishers/anthropic/models/claude-sonnet-4-5%4020250929:streamRawPredict"
    )
    sent = json.loads(request.body)
    assert "model" not in sent and sent["anthropic_version"] == "vertex-2023-10-16"
    g = gemini.endpoints[next(iter(gemini.endpoints))].request(
        UpstreamModel("vertex", base, "gemini-2.5-flash", {}), {"messages": []}, False, False
    )
    assert g.url == base + "/publishers/google/models/gemini-2.5-flash:generateContent"


def test_configuration(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match=r"credentials file .* does not exist"):
        load_settings(env={"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")})
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "proj",
                "client_email": "e",
                "private_key": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
            }
        )
    )
    vertex = load_settings(
        env={"GOOGLE_APPLICATION_CREDENTIALS": str(path), "VERTEX_LOCATION": "europe-west4"}
    ).providers["vertex"]
    assert (
        vertex.base_url
        == "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj/locations/europe-west4"
    )
    assert vertex.credentials[0].fields["token_uri"] == "https://oauth2.googleapis.com/token"
    config = tmp_path / "mini-llm.toml"
    config.write_text(
        f'[providers.gcp]\ntype = "vertex"\nproject = "other"\ncredentials_file = "{path}"\n'
    )
    gcp = load_settings(env={}, config_path=str(config)).providers["gcp"]
    assert gcp.base_url == "https://aiplatform.googleapis.com/v1/projects/other/locations/global"


# the gateway against the mock ---------------------------------------------------------------


def test_gemini_and_claude_on_vertex(
    make_gateway: GatewayFactory, vertex_upstream: VertexUpstream, vertex_env: dict[str, str]
) -> None:
    gateway = make_gateway(vertex_env)
    chat = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    answer = chat.chat.completions.create(
        model="vertex/gemini-2.5-flash", messages=[{"role": "user", "content": "on vertex"}]
    )
    assert answer.choices[0].message.content == "on vertex"
    messages = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
    message = messages.messages.create(
        model="vertex/claude-sonnet-4-5@20250929",
        max_tokens=50,
        messages=[{"role": "user", "content": "claude on vertex"}],
    )
    assert message.content[0].type == "text" and message.content[0].text == "claude on vertex"
    gemini_call, claude_call = vertex_upstream.requests
    assert gemini_call.path.endswith("/publishers/google/models/gemini-2.5-flash:generateContent")
    assert claude_call.path.endswith(
        "/publishers/anthropic/models/claude-sonnet-4-5%4020250929:rawPredict"
    )
    assert claude_call.body["anthropic_version"] == "vertex-2023-10-16"
    assert vertex_upstream.token_requests == 1  # one token for both publishers
    count = messages.messages.count_tokens(
        model="vertex/claude-sonnet-4-5@20250929", messages=[{"role": "user", "content": "n"}]
    )
    assert count.input_tokens == 17


def test_short_lived_tokens_are_refreshed_before_they_expire(
    make_gateway: GatewayFactory, vertex_upstream: VertexUpstream, vertex_env: dict[str, str]
) -> None:
    vertex_upstream.token_lifetime = 1.0  # refreshed after half a second
    gateway = make_gateway(vertex_env)
    chat = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    for _ in range(3):
        answer = chat.chat.completions.create(
            model="vertex/gemini-2.5-flash", messages=[{"role": "user", "content": "again"}]
        )
        assert answer.choices[0].message.content == "again"
        time.sleep(0.6)
    assert vertex_upstream.token_requests == 3
    tokens = {r.headers["Authorization"] for r in vertex_upstream.requests}
    assert len(tokens) == 3
