"""Bad input and upstream failures: right status, OpenAI-shaped body, no stack, no key."""

from __future__ import annotations

import json
import socket
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .conftest import GatewayFactory
from .harness import RunningApp, http
from .upstreams import openai_upstream as up
from .upstreams.openai_upstream import OpenAIUpstream

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
KEYS = "sk-test-key-one-aaaa,sk-test-key-two-bbbb"


@pytest.fixture
def gateway(make_gateway: GatewayFactory, openai_upstream_url: str) -> RunningApp:
    """Error mapping on its own: one key and one attempt, so nothing is retried."""
    return make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-test-key-one-aaaa",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
            "MINI_LLM_MODEL_ALIASES": '{"fast": "openai/gpt-4o-mini"}',
        }
    )


def post(gateway: RunningApp, body: Any, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else json.dumps(body).encode()
    status, _, payload = http(
        "POST",
        gateway.url + "/v1/chat/completions",
        data,
        {"Content-Type": "application/json"},
    )
    return status, json.loads(payload)


def assert_openai_error(body: dict[str, Any]) -> dict[str, Any]:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    assert "sk-test" not in json.dumps(body)
    return dict(error)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b'{"model": "x",}', b"\xff\xfe", b""],
    ids=["truncated", "text", "trailing-comma", "binary", "empty"],
)
def test_malformed_json_is_400(gateway: RunningApp, raw: bytes) -> None:
    status, body = post(gateway, None, raw=raw)
    assert status == 400
    assert assert_openai_error(body)["type"] == "invalid_request_error"


def test_json_that_is_not_an_object_is_400(gateway: RunningApp) -> None:
    status, body = post(gateway, [1, 2])
    assert status == 400
    assert "object" in assert_openai_error(body)["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": USER}, "model"),
        ({"model": "fast"}, "messages"),
        ({"model": 5, "messages": USER}, "model"),
        ({"model": "", "messages": USER}, "model"),
        ({"model": "fast", "messages": "hi"}, "messages"),
        ({"model": "fast", "messages": []}, "messages"),
        ({"model": "fast", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "fast", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "fast", "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"model": "fast", "messages": USER, "stream": "yes"}, "stream"),
        ({"model": "fast", "messages": USER, "temperature": "hot"}, "temperature"),
        ({"model": "fast", "messages": USER, "max_tokens": 1.5}, "max_tokens"),
    ],
)
def test_wrong_types_name_the_field(
    gateway: RunningApp, openai_upstream: OpenAIUpstream, body: dict[str, Any], param: str
) -> None:
    status, answer = post(gateway, body)
    assert status == 400
    error = assert_openai_error(answer)
    assert error["param"] == param
    assert param in error["message"]
    assert openai_upstream.requests == []


def test_oversize_body_is_413_before_reading(
    make_gateway: GatewayFactory, openai_upstream_url: str
) -> None:
    gateway = make_gateway({"MINI_LLM_MAX_BODY_BYTES": "2048"})
    big = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "x" * 4000}]})
    status, body = post(gateway, None, raw=big.encode())
    assert status == 413
    assert assert_openai_error(body)["code"] == "request_too_large"

    # Content-Length promising 1 GiB: refused on the headers alone, nothing is read.
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1073741824\r\n\r\n{"
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"request_too_large" in answer


def test_oversize_chunked_body_is_413(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway({"MINI_LLM_MAX_BODY_BYTES": "2048"})

    def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1000

    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=chunks(), encode_chunked=True)
    response = conn.getresponse()
    assert response.status == 413
    assert_openai_error(json.loads(response.read()))
    conn.close()


def test_unknown_model_is_404_listing_what_is_configured(gateway: RunningApp) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=USER)
    error = assert_openai_error(info.value.response.json())
    assert error["code"] == "model_not_found"
    assert error["param"] == "model"
    for configured in ("openai", "mock", "fast"):
        assert configured in error["message"]


def test_unknown_provider_is_404(gateway: RunningApp) -> None:
    status, body = post(gateway, {"model": "nowhere/some-model", "messages": USER})
    assert status == 404
    assert assert_openai_error(body)["code"] == "model_not_found"


def test_missing_key_is_401_naming_the_variable(
    make_gateway: GatewayFactory, openai_upstream_url: str
) -> None:
    gateway = make_gateway({"OPENAI_BASE_URL": openai_upstream_url})
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="openai/gpt-4o", messages=USER)
    error = assert_openai_error(info.value.response.json())
    assert "OPENAI_API_KEY" in error["message"]


def test_keyless_local_provider_needs_no_key(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway({"OLLAMA_BASE_URL": openai_upstream_url})
    status, body = post(gateway, {"model": "ollama/llama3.2", "messages": USER})
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "hi"
    assert "Authorization" not in openai_upstream.requests[0].headers


def test_unreachable_upstream_is_502(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        {"OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1", "OPENAI_API_KEY": "sk-test-aaaa1"}
    )
    status, body = post(gateway, {"model": "gpt-4o", "messages": USER})
    assert status == 502
    assert assert_openai_error(body)["code"] == "upstream_unreachable"


def test_upstream_4xx_keeps_status_and_message_only(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.push(
        up.error(
            400,
            "This model's maximum context length is 8 tokens",
            code="context_length_exceeded",
            extra={"internal": {"trace": "secret upstream detail"}},
        )
    )
    status, body = post(gateway, {"model": "fast", "messages": USER})
    assert status == 400
    error = assert_openai_error(body)
    assert error["message"] == "This model's maximum context length is 8 tokens"
    assert error["code"] == "context_length_exceeded"
    assert "secret upstream detail" not in json.dumps(body)


@pytest.mark.parametrize(
    ("upstream_status", "client_status", "exc"),
    [
        (401, 401, openai.AuthenticationError),
        (403, 403, openai.PermissionDeniedError),
        (404, 404, openai.NotFoundError),
        (422, 422, openai.UnprocessableEntityError),
        (429, 429, openai.RateLimitError),
        (500, 502, openai.InternalServerError),
        (503, 502, openai.InternalServerError),
    ],
)
def test_upstream_error_statuses(
    gateway: RunningApp,
    openai_upstream: OpenAIUpstream,
    upstream_status: int,
    client_status: int,
    exc: type[openai.APIStatusError],
) -> None:
    # a long Retry-After: the gateway answers at once instead of waiting for the key
    openai_upstream.push(
        up.error(upstream_status, f"upstream said {upstream_status}", headers={"Retry-After": "60"})
    )
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(exc) as info:
        client.chat.completions.create(model="fast", messages=USER)
    assert info.value.status_code == client_status
    assert assert_openai_error(info.value.response.json())["message"] == (
        f"upstream said {upstream_status}"
    )


def test_upstream_error_without_json_body(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.push(up.raw(500, b"<html>Internal Server Error</html>", "text/html"))
    status, body = post(gateway, {"model": "fast", "messages": USER})
    assert status == 502
    assert "<html>" not in assert_openai_error(body)["message"]


def test_upstream_echoing_our_key_is_redacted(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.push(up.error(401, "Incorrect API key provided: sk-test-key-one-aaaa"))
    status, body = post(gateway, {"model": "fast", "messages": USER})
    assert status == 401
    error = assert_openai_error(body)  # asserts no "sk-test" anywhere in the body
    assert error["message"].endswith("aaaa")


def test_upstream_dropping_the_connection_is_502(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.push(up.drop())
    status, body = post(gateway, {"model": "fast", "messages": USER})
    assert status == 502
    assert_openai_error(body)


def test_first_byte_timeout_is_504(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-test-aaaa1",
            "MINI_LLM_TIMEOUT_FIRST_BYTE": "0.3",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
        }
    )
    openai_upstream.push(up.stall(3))
    status, body = post(gateway, {"model": "gpt-4o", "messages": USER})
    assert status == 504
    assert assert_openai_error(body)["code"] == "upstream_timeout"


def test_total_timeout_is_504(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-test-aaaa1",
            "MINI_LLM_TIMEOUT_TOTAL": "0.5",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
        }
    )
    openai_upstream.push(up.stream(["a"] * 50, delay=0.05))
    status, _, payload = http(
        "POST",
        gateway.url + "/v1/chat/completions",
        json.dumps({"model": "gpt-4o", "messages": USER, "stream": True}).encode(),
        {"Content-Type": "application/json"},
    )
    # the stream had begun: it ends with an error event instead of a 504 status
    assert status == 200
    assert b'"code":"upstream_timeout"' in payload
    assert not payload.endswith(b"data: [DONE]\n\n")

    openai_upstream.push(up.stall(2))
    status, body = post(gateway, {"model": "gpt-4o", "messages": USER})
    assert status == 504
    assert_openai_error(body)


def test_reset_mid_stream_ends_with_clean_error(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    openai_upstream.push(up.reset_mid_stream(["par", "tial"]))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="fast",
            messages=USER,
            stream=True,
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "partial"
    assert "closed the connection" in str(info.value)


def test_unknown_route_and_wrong_method(gateway: RunningApp) -> None:
    status, _, payload = http("GET", gateway.url + "/v1/nothing-here")
    assert status == 404
    assert_openai_error(json.loads(payload))
    status, headers, payload = http("GET", gateway.url + "/v1/chat/completions")
    assert status == 405
    assert headers["Allow"] == "POST"
    assert_openai_error(json.loads(payload))


def test_health(gateway: RunningApp) -> None:
    status, _, payload = http("GET", gateway.url + "/health")
    assert status == 200
    health = json.loads(payload)
    assert health["status"] == "ok"
    assert health["version"]
    assert health["uptime_s"] >= 0


def test_slow_body_is_408(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway({"MINI_LLM_BODY_TIMEOUT": "0.5"})
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"model": '
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"did not arrive within 0.5 s" in answer


def test_every_answer_has_a_request_id(gateway: RunningApp) -> None:
    for method, path in (("GET", "/v1/nothing"), ("GET", "/v1/chat/completions")):
        _, headers, _ = http(method, gateway.url + path)
        assert headers["x-request-id"].startswith("req_")
    _, headers, _ = http(
        "POST",
        gateway.url + "/v1/chat/completions",
        b"{",
        {"Content-Type": "application/json", "x-request-id": "trace-7"},
    )
    assert headers["x-request-id"] == "trace-7"
