"""Request signing (issue #11): good, stale, replayed, body tampered, wrong secret; the SDK
signs when given a secret; the signature matches the README's openssl recipe."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import subprocess
import time
from pathlib import Path

import pytest

from mini_llm.access.signing import signature
from mini_llm.sdk.client import AsyncClient, Client

from .access_helpers import (
    Gateways,
    create_key,
    gateways,
    postgres_url,
    redis_server,
)
from .harness import RunningApp, http

_PATH = "/v1/chat/completions"
_BODY = b'{"model":"mock/echo","messages":[{"role":"user","content":"signed"}]}'

__all__ = ["gateways", "postgres_url", "redis_server"]  # fixtures, used by name


@pytest.fixture
def signed(gateways: Gateways) -> tuple[RunningApp, dict[str, str]]:
    gateway = gateways.start()
    made = create_key(gateway, signing=True)
    assert made["signing"] is True and made["signing_secret"].startswith("ms-")
    return gateway, made


def _send(
    gateway: RunningApp, key: str, stamp: str, sig: str, body: bytes = _BODY
) -> tuple[int, dict[str, object]]:
    headers = {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "x-timestamp": stamp,
        "x-signature": sig,
    }
    status, _, raw = http("POST", gateway.url + _PATH, body, headers)
    return status, json.loads(raw)


def _code(answer: dict[str, object]) -> object:
    error = answer["error"]
    assert isinstance(error, dict)
    return error["code"]


def test_good_stale_replayed_tampered_and_wrong_secret(
    signed: tuple[RunningApp, dict[str, str]],
) -> None:
    gateway, made = signed
    key, secret = made["key"], made["signing_secret"]
    now = str(int(time.time()))
    good = signature(secret, now, "POST", _PATH, _BODY)
    assert _send(gateway, key, now, good)[0] == 200
    status, answer = _send(gateway, key, now, good)  # the same signature again
    assert status == 401 and _code(answer) == "invalid_signature"
    stale = str(int(time.time()) - 301)
    status, answer = _send(gateway, key, stale, signature(secret, stale, "POST", _PATH, _BODY))
    assert status == 401 and _code(answer) == "invalid_signature"
    fresh = str(int(time.time()) + 1)
    sig = signature(secret, fresh, "POST", _PATH, _BODY)
    status, answer = _send(gateway, key, fresh, sig, _BODY.replace(b"signed", b"forged"))
    assert status == 401 and _code(answer) == "invalid_signature"
    wrong = signature("ms-not-the-secret", fresh, "POST", _PATH, _BODY)
    assert _send(gateway, key, fresh, wrong)[0] == 401
    status, _, raw = http(
        "POST", gateway.url + _PATH, _BODY, {"Authorization": f"Bearer {key}"}
    )  # unsigned
    assert status == 401 and json.loads(raw)["error"]["code"] == "invalid_signature"


def test_the_sdk_signs_when_given_a_secret(signed: tuple[RunningApp, dict[str, str]]) -> None:
    gateway, made = signed
    with Client(gateway.url, api_key=made["key"], signing_secret=made["signing_secret"]) as c:
        assert c.chat("mock/echo", "one").text == "one"
        assert c.chat("mock/echo", "two").text == "two"

    async def run() -> str:
        async with AsyncClient(
            gateway.url, api_key=made["key"], signing_secret=made["signing_secret"]
        ) as client:
            return (await client.chat("mock/echo", "three")).text

    assert asyncio.run(run()) == "three"


def test_the_readme_openssl_recipe_matches(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(_BODY)
    stamp = "1700000000"
    script = (
        f'{{ printf "%s.POST.{_PATH}." "{stamp}"; cat {body}; }} '
        "| openssl dgst -sha256 -hmac ms-secret | sed 's/^.* //'"
    )
    try:
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    except (FileNotFoundError, subprocess.CalledProcessError):
        pytest.skip("openssl is not installed")
    expected = hmac.new(
        b"ms-secret", f"{stamp}.POST.{_PATH}.".encode() + _BODY, hashlib.sha256
    ).hexdigest()
    assert out.stdout.strip() == expected
    assert signature("ms-secret", stamp, "post", _PATH, _BODY) == "v1=" + expected
