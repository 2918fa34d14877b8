"""SigV4: AWS's published test suite (aws-sig-v4-test-suite), then the signer as Bedrock uses
it (a retry signed afresh, the path signed as sent, bearer API keys)."""

from __future__ import annotations

import hashlib

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mini_llm.providers.base import Credential, UpstreamRequest
from mini_llm.providers.sigv4 import SigV4Signer, authorization, canonical_request, signing_key

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
DATE = "20150830T123600Z"
SCOPE = "20150830/us-east-1/service/aws4_request"
STS_TOKEN = (
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIe"
    "oIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq"
    "5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC"
    "9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
)
HOST = {"Host": "example.amazonaws.com", "X-Amz-Date": DATE}

# (name, method, url, extra headers, body, signature) from the published suite
SUITE = [
    (
        "get-vanilla",
        "GET",
        "https://example.amazonaws.com/",
        {},
        b"",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    (
        "get-vanilla-query-order-key-case",
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        {},
        b"",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "get-utf8",
        "GET",
        "https://example.amazonaws.com/ሴ",
        {},
        b"",
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    ),
    (
        "get-header-value-trim",
        "GET",
        "https://example.amazonaws.com/",
        {"My-Header1": " value1", "My-Header2": ' "a   b   c"'},
        b"",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ),
    (
        "post-vanilla",
        "POST",
        "https://example.amazonaws.com/",
        {},
        b"",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    (
        "post-vanilla-query",
        "POST",
        "https://example.amazonaws.com/?Param1=value1",
        {},
        b"",
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    ),
    (
        "post-x-www-form-urlencoded",
        "POST",
        "https://example.amazonaws.com/",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"Param1=value1",
        "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
    ),
    (
        "post-sts-header-before",
        "POST",
        "https://example.amazonaws.com/",
        {"X-Amz-Security-Token": STS_TOKEN},
        b"",
        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    ),
]


@pytest.mark.parametrize(
    ("method", "url", "extra", "body", "signature"),
    [case[1:] for case in SUITE],
    ids=[case[0] for case in SUITE],
)
def test_published_suite(
    method: str, url: str, extra: dict[str, str], body: bytes, signature: str
) -> None:
    key = signing_key(SECRET, DATE[:8], "us-east-1", "service")
    header = authorization(method, url, {**HOST, **extra}, body, KEY_ID, key, SCOPE, DATE)
    names = ";".join(sorted(n.lower() for n in {**HOST, **extra}))
    assert header == (
        f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{SCOPE}, SignedHeaders={names}, "
        f"Signature={signature}"
    )


def test_documented_signing_key() -> None:
    """The derived key of AWS's "Signing AWS API requests" example (IAM, 2015-08-30)."""
    key = signing_key(SECRET, "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


def test_the_path_is_signed_as_sent_encoded_once_more() -> None:
    """A model id's `:` travels as `%3A` and is signed as `%253A` (AWS's rule for every
    service but S3, and botocore's)."""
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-v2%3A1/converse"
    text, _ = canonical_request("POST", url, {"Host": "h"}, hashlib.sha256(b"").hexdigest())
    assert text.splitlines()[1] == "/model/anthropic.claude-v2%253A1/converse"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _request(url: str) -> UpstreamRequest:
    headers = {"Content-Type": "application/json", "User-Agent": "mini-llm"}
    return UpstreamRequest("POST", url, headers, b'{"messages": []}')


def _botocore_signature(request: UpstreamRequest, fields: dict[str, str]) -> str:
    auth = request.headers["Authorization"]
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    headers = {n: v for n, v in request.headers.items() if n.lower() in signed}
    reference = SigV4Auth(
        Credentials(
            fields["access_key_id"], fields["secret_access_key"], fields.get("session_token")
        ),
        "bedrock",
        "eu-west-3",
    )
    aws = AWSRequest(method=request.method, url=request.url, data=request.body, headers=headers)
    aws.context["timestamp"] = request.headers["X-Amz-Date"]
    canonical = reference.canonical_request(aws)
    return str(reference.signature(reference.string_to_sign(aws, canonical), aws))


def test_each_attempt_is_signed_afresh_and_botocore_agrees() -> None:
    clock = Clock(1_700_000_000.0)
    signer = SigV4Signer("eu-west-3", "bedrock", clock)
    fields = {
        "access_key_id": "AKIDTEST",
        "secret_access_key": "secret/key",
        "session_token": "tok",
    }
    credential = Credential("secret/key", fields)
    url = "http://127.0.0.1:8123/model/eu.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse"
    first = signer.sign(_request(url), credential)
    clock.now += 61
    retry = signer.sign(_request(url), credential)
    assert first.headers["X-Amz-Date"] == "20231114T221320Z"
    assert retry.headers["X-Amz-Date"] == "20231114T221421Z"
    assert first.headers["Authorization"] != retry.headers["Authorization"]
    for signed in (first, retry):
        assert signed.headers["Host"] == "127.0.0.1:8123"
        assert signed.headers["X-Amz-Security-Token"] == "tok"
        assert "user-agent" not in signed.headers["Authorization"]
        assert signed.headers["Authorization"].endswith(
            "Signature=" + _botocore_signature(signed, fields)
        )


def test_bearer_api_keys_are_not_signed() -> None:
    signer = SigV4Signer("us-east-1", "bedrock")
    signed = signer.sign(
        _request("https://x/model/m/converse"), Credential("ABSK-key", {"kind": "bearer"})
    )
    assert signed.headers["Authorization"] == "Bearer ABSK-key"
    assert "X-Amz-Date" not in signed.headers
