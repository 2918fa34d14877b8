"""Fault injection: retries, key cooldown, fallbacks, balancing, timeouts, disconnects."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .conftest import GatewayFactory
from .harness import LoopThread, RunningApp, http
from .upstreams import openai_upstream as up
from .upstreams.openai_upstream import OpenAIUpstream

KEY1, KEY2 = "sk-test-key-one-aaaa", "sk-test-key-two-bbbb"
USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
FAST_RETRIES = {"MINI_LLM_RETRY_BACKOFF": "0.01", "MINI_LLM_RETRY_BACKOFF_MAX": "0.05"}


@pytest.fixture
def fresh_upstream(loop_thread: LoopThread) -> Iterator[tuple[OpenAIUpstream, RunningApp]]:
    """An upstream of this test's own, so its connections can be counted."""
    upstream = OpenAIUpstream()
    running = RunningApp(loop_thread, upstream.app())
    yield upstream, running
    running.stop()


def env(upstream_url: str, keys: str = f"{KEY1},{KEY2}", **extra: str) -> dict[str, str]:
    return {"OPENAI_BASE_URL": upstream_url, "OPENAI_API_KEYS": keys, **FAST_RETRIES, **extra}


def chat(
    gateway: RunningApp,
    model: str = "openai/gpt-4o",
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    body = {"model": model, "messages": USER, "stream": stream}
    return http(
        "POST",
        gateway.url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )


def keys_seen(upstream: OpenAIUpstream) -> list[str]:
    return [r.headers["Authorization"].removeprefix("Bearer ") for r in upstream.requests]


def health(gateway: RunningApp) -> dict[str, Any]:
    return dict(json.loads(http("GET", gateway.url + "/health")[2]))


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


# keys ---------------------------------------------------------------------------------------


def test_429_on_key_one_is_survived_with_key_two(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url))
    openai_upstream.push(up.error(429, "slow down", headers={"Retry-After": "30"}))
    status, headers, body = chat(gateway)
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "hello"
    assert keys_seen(openai_upstream) == [KEY1, KEY2]
    assert headers["x-mini-llm-attempts"] == "2"
    # key 1 now cools down for 30 s: the next requests use key 2 only
    chat(gateway)
    chat(gateway)
    assert keys_seen(openai_upstream)[2:] == [KEY2, KEY2]
    assert health(gateway)["providers"]["openai"]["cooling"] == 1


def test_all_keys_cooling_is_429_with_the_soonest_retry_after(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url))
    openai_upstream.push(
        up.error(429, "slow down", headers={"Retry-After": "40"}),
        up.error(429, "slow down", headers={"retry-after-ms": "20000"}),
    )
    status, headers, body = chat(gateway)
    assert status == 429
    assert json.loads(body)["error"]["message"] == "slow down"
    assert 19 <= int(headers["Retry-After"]) <= 20
    # nothing is sent upstream while every key cools down
    status, headers, body = chat(gateway)
    assert status == 429
    assert len(openai_upstream.requests) == 2
    assert "rate limited" in json.loads(body)["error"]["message"]
    assert 1 <= int(headers["Retry-After"]) <= 20


def test_all_keys_cooling_falls_back(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        env(openai_upstream_url, keys=KEY1, MINI_LLM_FALLBACKS='{"openai/gpt-4o": ["mock/echo"]}')
    )
    openai_upstream.push(up.error(429, "slow down", headers={"Retry-After": "60"}))
    status, headers, body = chat(gateway)
    assert status == 200
    assert headers["x-mini-llm-provider"] == "mock"
    assert headers["x-mini-llm-model"] == "echo"
    assert json.loads(body)["choices"][0]["message"]["content"] == "hello"


def test_refused_key_is_set_aside_and_reported(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url))
    openai_upstream.default = up.by_key({KEY1: up.error(401, "Incorrect API key provided")})
    for _ in range(3):
        status, _, _ = chat(gateway)
        assert status == 200
    assert keys_seen(openai_upstream) == [KEY1, KEY2, KEY2, KEY2]
    report = health(gateway)["providers"]["openai"]
    assert report["set_aside"] == ["…aaaa"]
    assert KEY1 not in json.dumps(health(gateway))


def test_every_key_refused_is_401(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url))
    openai_upstream.default = up.error(403, "Key revoked")
    status, _, body = chat(gateway)
    assert status == 403
    assert json.loads(body)["error"]["message"] == "Key revoked"
    status, _, body = chat(gateway)
    assert status == 401
    assert "Every key configured for provider 'openai' was refused" in body.decode()
    assert len(openai_upstream.requests) == 2


# retries ------------------------------------------------------------------------------------


@pytest.mark.parametrize("failing", [500, 502, 503, 504, 529])
def test_server_errors_are_retried(
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    failing: int,
) -> None:
    gateway = make_gateway(env(openai_upstream_url, keys=KEY1))
    openai_upstream.push(up.error(failing, "boom", type_="server_error"))
    status, headers, _ = chat(gateway)
    assert status == 200
    assert headers["x-mini-llm-attempts"] == "2"
    assert len(openai_upstream.requests) == 2


def test_retries_stop_after_the_configured_attempts(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url, keys=KEY1, MINI_LLM_RETRY_ATTEMPTS="4"))
    openai_upstream.default = up.error(503, "overloaded", type_="server_error")
    status, headers, body = chat(gateway)
    assert status == 502
    assert json.loads(body)["error"]["message"] == "overloaded"
    assert headers["x-mini-llm-attempts"] == "4"
    assert len(openai_upstream.requests) == 4


def test_retry_after_ms_is_honoured(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url, keys=KEY1))
    openai_upstream.push(up.error(503, "busy", headers={"retry-after-ms": "400"}))
    started = time.monotonic()
    status, _, _ = chat(gateway)
    assert status == 200
    assert time.monotonic() - started >= 0.4


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_never_retried(
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    status: int,
) -> None:
    gateway = make_gateway(
        env(openai_upstream_url, MINI_LLM_FALLBACKS='{"openai/gpt-4o": ["mock/echo"]}')
    )
    openai_upstream.push(up.error(status, "your fault"))
    got, headers, _ = chat(gateway)
    assert got == status
    assert len(openai_upstream.requests) == 1
    assert headers["x-mini-llm-attempts"] == "1"


def test_retry_budget_caps_the_time_spent(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        env(
            openai_upstream_url,
            keys=KEY1,
            MINI_LLM_RETRY_ATTEMPTS="10",
            MINI_LLM_RETRY_BUDGET="0.5",
        )
    )
    openai_upstream.default = up.error(500, "down", headers={"Retry-After": "0.2"})
    openai_upstream.default = up.error(503, "down", headers={"retry-after-ms": "200"})
    started = time.monotonic()
    status, _, _ = chat(gateway)
    assert status == 502
    assert time.monotonic() - started < 1.5
    assert 2 <= len(openai_upstream.requests) <= 4


def test_malformed_json_answer_is_retried_then_502(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url, keys=KEY1))
    openai_upstream.push(up.malformed_json())
    status, _, body = chat(gateway)
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "hello"
    openai_upstream.default = up.malformed_json()
    status, _, body = chat(gateway)
    assert status == 502
    assert "malformed JSON" in json.loads(body)["error"]["message"]


# fallbacks ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_alias_chain_falls_back_in_order(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        env(
            openai_upstream_url,
            keys=KEY1,
            MINI_LLM_RETRY_ATTEMPTS="1",
            GROQ_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",  # nobody listens there
            GROQ_API_KEY="gsk_test_key_1234",
            MINI_LLM_MODEL_ALIASES='{"smart": ["groq/llama-3.3", "openai/gpt-4.1", "mock/echo"]}',
        )
    )
    openai_upstream.push(up.error(500, "down"))
    status, headers, _ = chat(gateway, "smart")
    assert status == 200
    assert headers["x-mini-llm-provider"] == "mock"
    assert headers["x-mini-llm-attempts"] == "3"
    assert [r.body["model"] for r in openai_upstream.requests] == ["gpt-4.1"]
    # groq is still unreachable; openai answers this time
    status, headers, _ = chat(gateway, "smart")
    assert status == 200
    assert headers["x-mini-llm-provider"] == "openai"
    assert headers["x-mini-llm-attempts"] == "2"


def test_context_length_exceeded_falls_back_without_retrying(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        env(
            openai_upstream_url,
            MINI_LLM_MODEL_ALIASES='{"big": ["openai/gpt-4o-mini", "openai/gpt-4.1"]}',
        )
    )
    openai_upstream.push(up.error(400, "too long", code="context_length_exceeded"))
    status, headers, _ = chat(gateway, "big")
    assert status == 200
    assert [r.body["model"] for r in openai_upstream.requests] == ["gpt-4o-mini", "gpt-4.1"]
    assert headers["x-mini-llm-model"] == "gpt-4.1"


def test_stream_falls_back_before_its_first_byte(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        env(
            openai_upstream_url,
            keys=KEY1,
            MINI_LLM_RETRY_ATTEMPTS="1",
            MINI_LLM_FALLBACKS='{"openai/gpt-4o": ["openai/gpt-4.1"]}',
        )
    )
    openai_upstream.push(up.reset_after_headers())
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    chunks = list(client.chat.completions.create(model="openai/gpt-4o", messages=USER, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello"
    assert [r.body["model"] for r in openai_upstream.requests] == ["gpt-4o", "gpt-4.1"]


def test_mid_stream_failure_is_not_retried_and_ends_cleanly(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        env(openai_upstream_url, MINI_LLM_FALLBACKS='{"openai/gpt-4o": ["mock/echo"]}')
    )
    openai_upstream.push(up.reset_mid_stream(["hel"]))
    status, _, payload = chat(gateway, stream=True)
    assert status == 200
    events = [e for e in payload.split(b"\n\n") if e]
    assert b'"content": "hel"' in payload
    assert events[-1].startswith(b'data: {"error"')
    assert len(openai_upstream.requests) == 1


def test_truncated_stream_ends_with_an_error_event(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url))
    openai_upstream.push(up.truncated_stream(["hel", "lo"]))
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIError, match="before the answer was complete"):
        for _ in client.chat.completions.create(model="gpt-4o", messages=USER, stream=True):
            pass


# timeouts -----------------------------------------------------------------------------------


def test_stall_before_first_byte_is_retried(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url, MINI_LLM_TIMEOUT_FIRST_BYTE="0.3"))
    openai_upstream.push(up.stall(5))
    started = time.monotonic()
    status, headers, _ = chat(gateway, stream=True)
    assert status == 200
    assert headers["x-mini-llm-attempts"] == "2"
    assert time.monotonic() - started < 2


def test_stall_mid_stream_ends_with_a_timeout_event(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url, MINI_LLM_TIMEOUT_IDLE="0.3"))
    openai_upstream.push(up.stall_mid_stream(["a", "b", "c"], after=1, seconds=5))
    started = time.monotonic()
    status, _, payload = chat(gateway, stream=True)
    assert status == 200
    assert time.monotonic() - started < 2.5
    assert b'"content": "a"' in payload
    assert b'"code":"upstream_timeout"' in payload
    assert b"[DONE]" not in payload


# balancing ----------------------------------------------------------------------------------


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mini-llm.toml"
    path.write_text(text)
    return str(path)


def test_weighted_round_robin(
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path,
        "[deployments.gpt]\n"
        'targets = [{ model = "openai/gpt-a", weight = 3 }, { model = "openai/gpt-b" }]\n',
    )
    gateway = make_gateway(env(openai_upstream_url), config)
    for _ in range(8):
        assert chat(gateway, "gpt")[0] == 200
    models = [r.body["model"] for r in openai_upstream.requests]
    assert models.count("gpt-a") == 6
    assert models.count("gpt-b") == 2
    assert models[:4].count("gpt-b") == 1  # spread out, not 3 then 1 in a block


def test_least_in_flight_avoids_the_busy_target(
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    tmp_path: Path,
    loop_thread: LoopThread,
) -> None:
    config = write_config(
        tmp_path,
        '[deployments.gpt]\nstrategy = "least-in-flight"\n'
        'targets = ["openai/gpt-a", "openai/gpt-b"]\n',
    )
    gateway = make_gateway(env(openai_upstream_url), config)
    openai_upstream.default = up.echo()

    async def slow_then_fast() -> list[str]:
        import aiohttp

        async with aiohttp.ClientSession() as session:

            async def one(delay: float) -> str:
                import asyncio

                await asyncio.sleep(delay)
                async with session.post(
                    gateway.url + "/v1/chat/completions",
                    json={"model": "gpt", "messages": USER},
                ) as r:
                    return r.headers["x-mini-llm-model"]

            import asyncio

            return await asyncio.gather(one(0), *(one(0.2 + 0.05 * i) for i in range(5)))

    openai_upstream.push(up.stall(1.0))  # the first request keeps its target busy
    models = loop_thread.run(slow_then_fast())
    first, rest = models[0], models[1:]
    assert all(m != first for m in rest)


# disconnects and shutdown ---------------------------------------------------------------------


def test_client_disconnect_mid_stream_closes_the_upstream_connection(
    make_gateway: GatewayFactory, fresh_upstream: tuple[OpenAIUpstream, RunningApp]
) -> None:
    upstream, server = fresh_upstream
    gateway = make_gateway(env(server.url + "/v1"))
    upstream.push(up.stream(["x"] * 200, delay=0.02))
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        body = json.dumps({"model": "gpt-4o", "messages": USER, "stream": True}).encode()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert b"200 OK" in sock.recv(4096)
        assert wait_until(lambda: upstream.active == 1)
    # the client is gone: the upstream answer is dropped, not pooled
    assert wait_until(lambda: upstream.active == 0 and server.connections() == 0)


def test_client_disconnect_while_waiting_cancels_the_upstream_call(
    make_gateway: GatewayFactory, fresh_upstream: tuple[OpenAIUpstream, RunningApp]
) -> None:
    upstream, server = fresh_upstream
    gateway = make_gateway(env(server.url + "/v1"))
    upstream.push(up.stall(30))
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        body = json.dumps({"model": "gpt-4o", "messages": USER}).encode()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert wait_until(lambda: upstream.active == 1)
    assert wait_until(lambda: upstream.active == 0 and server.connections() == 0)


def test_headers_say_what_happened(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url))
    _, headers, _ = chat(gateway, "gpt-4o", headers={"x-request-id": "my-trace-42"})
    assert headers["x-request-id"] == "my-trace-42"
    assert headers["x-mini-llm-provider"] == "openai"
    assert headers["x-mini-llm-model"] == "gpt-4o"
    assert headers["x-mini-llm-attempts"] == "1"
    _, first, _ = chat(gateway, stream=True)
    _, second, _ = chat(gateway, "nope/nothing")
    assert first["x-request-id"] != second["x-request-id"]
    assert second["x-request-id"].startswith("req_")


# regressions found in review ---------------------------------------------------------------


def in_flight(gateway: RunningApp) -> int:
    return int(health(gateway)["in_flight"])


def test_in_flight_returns_to_zero_after_every_kind_of_ending(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url, MINI_LLM_RETRY_ATTEMPTS="1"))
    openai_upstream.push(
        up.error(500, "down"),
        up.reset_mid_stream(["a"]),
        up.reset_after_headers(),
        up.malformed_json(),
        up.truncated_stream(["x"]),
    )
    chat(gateway)
    chat(gateway, stream=True)
    chat(gateway, stream=True)
    chat(gateway)
    chat(gateway, stream=True)
    chat(gateway, stream=True)  # a healthy one
    assert wait_until(lambda: in_flight(gateway) == 0)


def test_fallbacks_naming_each_other_do_not_loop(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        env(
            openai_upstream_url,
            MINI_LLM_RETRY_ATTEMPTS="1",
            MINI_LLM_FALLBACKS='{"openai/gpt-a": ["mock/echo"], "mock/echo": ["openai/gpt-a"]}',
        )
    )
    status, headers, _ = chat(gateway, "mock/echo")
    assert status == 200
    assert headers["x-mini-llm-provider"] == "mock"
    openai_upstream.push(up.error(500, "down"))
    status, headers, _ = chat(gateway, "openai/gpt-a")
    assert status == 200
    assert headers["x-mini-llm-provider"] == "mock"


def test_slow_client_is_not_upstream_silence(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url, MINI_LLM_TIMEOUT_IDLE="0.4"))
    big = "y" * 65536
    openai_upstream.push(up.stream([big] * 512))  # 32 MiB: more than the sockets buffer

    async def slow_reader() -> bytes:
        import asyncio

        import aiohttp

        async with (
            aiohttp.ClientSession() as session,
            session.post(
                gateway.url + "/v1/chat/completions",
                json={"model": "gpt-4o", "messages": USER, "stream": True},
            ) as response,
        ):
            first = await response.content.read(1024)
            await asyncio.sleep(1.5)  # the gateway waits on us, not on the upstream
            return first + await response.content.read()

    import asyncio

    payload = asyncio.run(slow_reader())
    assert payload.endswith(b"data: [DONE]\n\n")
    assert b"upstream_timeout" not in payload


def test_translated_malformed_answer_is_retried_and_falls_back(
    make_gateway: GatewayFactory,
    anthropic_upstream: Any,
    anthropic_upstream_url: str,
) -> None:
    gateway = make_gateway(
        {
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-test-0001",
            "MINI_LLM_RETRY_ATTEMPTS": "2",
            **FAST_RETRIES,
            "MINI_LLM_FALLBACKS": '{"anthropic/claude-x": ["mock/echo"]}',
        }
    )
    anthropic_upstream.push(up.malformed_json())
    status, headers, body = chat(gateway, "anthropic/claude-x")
    assert status == 200
    assert headers["x-mini-llm-attempts"] == "2"
    assert headers["x-mini-llm-provider"] == "anthropic"
    anthropic_upstream.push(up.malformed_json(), up.malformed_json())
    status, headers, body = chat(gateway, "anthropic/claude-x")
    assert status == 200
    assert headers["x-mini-llm-provider"] == "mock"
    assert json.loads(body)["choices"][0]["message"]["content"] == "hello"


@pytest.mark.parametrize(
    "header", [{"Retry-After": "inf"}, {"retry-after-ms": "1e309"}, {"Retry-After": "nan"}]
)
def test_absurd_retry_after_is_ignored(
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    header: dict[str, str],
) -> None:
    gateway = make_gateway(env(openai_upstream_url, keys=KEY1))
    openai_upstream.push(up.error(503, "busy", headers=header))
    status, _, _ = chat(gateway)
    assert status == 200
    openai_upstream.push(up.error(429, "slow", headers=header))
    status, _, _ = chat(gateway)
    assert status == 200  # backed off for a moment, then key 1 again
    assert chat(gateway)[0] == 200


def test_403_sets_a_key_aside_for_that_model_only(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(env(openai_upstream_url))
    openai_upstream.push(up.error(403, "not allowed to use gpt-restricted"))
    status, _, _ = chat(gateway, "openai/gpt-restricted")
    assert status == 200
    assert keys_seen(openai_upstream) == [KEY1, KEY2]
    for _ in range(2):
        chat(gateway, "openai/gpt-restricted")
    assert keys_seen(openai_upstream)[2:] == [KEY2, KEY2]
    # key 1 still serves other models
    for _ in range(2):
        chat(gateway, "openai/gpt-4o")
    assert KEY1 in keys_seen(openai_upstream)[4:]
    report = health(gateway)["providers"]["openai"]
    assert report["refused_for"] == {"openai/gpt-restricted": ["…aaaa"]}
    assert report["set_aside"] == []


def test_unexpected_failure_mid_stream_ends_with_an_error_event(
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mini_llm.providers.openai import OpenAIStreamReader

    gateway = make_gateway(env(openai_upstream_url))
    original = OpenAIStreamReader.feed
    seen = [0]

    def feed(self: OpenAIStreamReader, event: Any) -> Any:
        seen[0] += 1
        if seen[0] == 3:
            raise ValueError("a bug in translation")
        return original(self, event)

    monkeypatch.setattr(OpenAIStreamReader, "feed", feed)
    openai_upstream.push(up.stream(["one", "two", "three"], delay=0.05))
    # an Anthropic client on an OpenAI upstream goes through the translator
    status, _, payload = http(
        "POST",
        gateway.url + "/v1/messages",
        json.dumps(
            {"model": "openai/gpt-4o", "max_tokens": 50, "messages": USER, "stream": True}
        ).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    assert payload.rstrip().endswith(b"}")
    assert b"event: error" in payload
    assert b"HTTP/1.1" not in payload
