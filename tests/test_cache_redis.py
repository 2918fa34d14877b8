"""The response cache shared through a real redis-server: two `mini-llm serve` processes share
answers; Redis stopped → the cache steps aside and requests are still answered, then it comes
back; single flight across two gateways; values compressed, TTL kept by Redis."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import pytest

from mini_llm.gateway.app import GATEWAY

from .conftest import GatewayFactory
from .harness import RunningApp, Served, clean_env, http, start_serve
from .services import redis as services
from .services.redis import RedisServer
from .upstreams.openai_upstream import OpenAIUpstream, echo, stall

redis_server = services.redis_server  # the session's redis-server
fresh_redis = services.fresh_redis


def post(url: str, body: Mapping[str, object]) -> tuple[int, str, bytes]:
    status, headers, data = http(
        "POST",
        url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    return status, {k.lower(): v for k, v in headers.items()}.get("x-mini-llm-cache", ""), data


@pytest.fixture
def two_gateways(fresh_redis: RedisServer) -> Iterator[list[Served]]:
    env = clean_env(
        MINI_LLM_REDIS_URL=fresh_redis.url, MINI_LLM_CACHE="true", MINI_LLM_LOG_LEVEL="warning"
    )
    started: list[Served] = []
    try:
        for _ in range(2):
            started.append(start_serve("--port", "0", "--no-state", env=env))
        yield started
    finally:
        for s in started:
            if s.proc.poll() is None:
                s.proc.terminate()
                s.proc.wait(10)
            if s.proc.stdout is not None:
                s.proc.stdout.close()
        if fresh_redis.proc is None:
            fresh_redis.start()


def test_two_gateway_processes_share_answers_and_survive_a_redis_outage(
    two_gateways: list[Served], fresh_redis: RedisServer
) -> None:
    one, two = two_gateways
    body = {"model": "mock/echo", "messages": [{"role": "user", "content": "shared"}]}
    assert post(one.url, body)[:2] == (200, "miss")
    stored = _until_stored(fresh_redis)
    assert post(two.url, body)[:2] == (200, "hit")
    assert post(two.url, {**body, "stream": True})[:2] == (200, "hit")
    ttl = fresh_redis.command(b"PTTL", stored)
    assert ttl is not None and 3_500_000 < int(ttl[1:]) <= 3_600_000  # Redis keeps the TTL

    fresh_redis.stop()
    began = time.monotonic()
    for gateway in (one, two, one, two):
        status, state, data = post(gateway.url, body)
        assert (status, state) == (200, "skip")
        assert json.loads(data)["choices"][0]["message"]["content"] == "shared"
    assert time.monotonic() - began < 5  # bypassed, not blocked

    fresh_redis.start()  # empty again: no persistence
    deadline = time.monotonic() + 10
    while post(one.url, body)[1] != "miss":  # back once the fail-fast window has passed
        assert time.monotonic() < deadline, "the cache did not come back"
        time.sleep(0.2)
    _until_stored(fresh_redis)
    assert post(two.url, body)[1] == "hit"


def _until_stored(server: RedisServer) -> bytes:
    """The key of the one cached answer, once the store (off the hot path) has happened."""
    import socket

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with socket.create_connection(("127.0.0.1", server.port), timeout=1) as sock:
            sock.sendall(b"*2\r\n$4\r\nKEYS\r\n$16\r\nmini-llm:cache:*\r\n")
            time.sleep(0.02)
            reply = sock.recv(65536)
        keys = [line for line in reply.split(b"\r\n") if line.startswith(b"mini-llm:cache:")]
        keys = [k for k in keys if b":lock:" not in k]
        if keys:
            return keys[0]
        time.sleep(0.05)
    raise AssertionError("nothing was stored in Redis")


def test_single_flight_across_two_gateways(
    make_gateway: GatewayFactory,
    fresh_redis: RedisServer,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
) -> None:
    env = {
        "OPENAI_BASE_URL": openai_upstream_url,
        "OPENAI_API_KEY": "sk-test-0000",
        "MINI_LLM_REDIS_URL": fresh_redis.url,
        "MINI_LLM_CACHE": "redis",
        "MINI_LLM_LOG_LEVEL": "warning",
    }
    gateways: list[RunningApp] = [make_gateway(env), make_gateway(env)]
    openai_upstream.default = stall(0.6, echo())
    body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "once"}]}
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda i: post(gateways[i % 2].url, body), range(10)))
    assert [status for status, _, _ in answers] == [200] * 10
    assert len(openai_upstream.requests) == 1
    assert sorted(state for _, state, _ in answers) == ["hit"] * 9 + ["miss"]
    for gateway in gateways:
        policy = gateway.app[GATEWAY].runtime.cache
        assert policy is not None and policy.counters.errors == 0
