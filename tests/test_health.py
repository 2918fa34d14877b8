"""`/health/live` and `/health/ready`: the verdict, its cache, its timeout and the drain (unit);
a gateway whose Redis and PostgreSQL come and go (real servers), open without a key."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from mini_llm.gateway.health import Health, Probe

from .conftest import GatewayFactory
from .harness import http
from .services import redis as redis_services
from .services.postgres import postgres_url
from .services.redis import RedisServer

redis_server = redis_services.redis_server
fresh_redis = redis_services.fresh_redis
__all__ = ["postgres_url"]  # the session's PostgreSQL, used as a fixture below

MASTER = "sk-master-health-0000"


def _probe(name: str, outcome: Callable[[], Awaitable[object]], calls: list[str]) -> Probe:
    async def ping() -> object:
        calls.append(name)
        return await outcome()

    return name, ping


async def _ok() -> None:
    return None


async def _refused() -> None:
    raise ConnectionRefusedError("no")


async def _hangs() -> None:
    await asyncio.sleep(30)


def test_ready_names_each_failing_store_and_keeps_the_verdict_a_second() -> None:
    calls: list[str] = []
    health = Health([_probe("postgresql", _ok, calls), _probe("redis", _refused, calls)], ttl=0.3)

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        first = await health.failing()
        again = await asyncio.gather(*(health.failing() for _ in range(20)))
        assert all(v == first for v in again)
        cached_calls = list(calls)
        await asyncio.sleep(0.35)
        await health.failing()
        return first, cached_calls, list(calls)

    first, cached_calls, later_calls = asyncio.run(scenario())
    assert first == ["redis"]
    assert cached_calls == ["postgresql", "redis"]  # 21 probes, one check
    assert later_calls == ["postgresql", "redis"] * 2  # the verdict expired: checked again


def test_concurrent_probes_share_the_check_under_way_and_a_hang_is_a_failure() -> None:
    calls: list[str] = []
    health = Health([_probe("redis", _hangs, calls)], timeout=0.2)

    async def scenario() -> tuple[list[list[str]], float]:
        began = time.monotonic()
        verdicts = await asyncio.gather(*(health.failing() for _ in range(10)))
        return verdicts, time.monotonic() - began

    verdicts, took = asyncio.run(scenario())
    assert verdicts == [["redis"]] * 10
    assert calls == ["redis"]
    assert took < 1.0  # the timeout, not the hang


def test_draining_is_unready_whatever_the_stores_say() -> None:
    health = Health([])
    app = web.Application()

    def add(method: str, path: str, handler: Any) -> None:
        app.router.add_get(path, handler)

    health.install(app, add)

    async def scenario() -> tuple[int, bytes, int, bytes]:
        ready = await health.ready(_request())
        app.freeze()
        await app.shutdown()  # what SIGTERM's drain runs first
        draining = await health.ready(_request())
        return ready.status, bytes(ready.body), draining.status, bytes(draining.body)  # type: ignore[arg-type]

    ready_status, ready_body, status, body = asyncio.run(scenario())
    assert (ready_status, json.loads(ready_body)) == (200, {"status": "ready", "failing": []})
    assert (status, json.loads(body)) == (503, {"status": "draining", "failing": []})


def _request() -> web.Request:
    return make_mocked_request("GET", "/health/ready")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _get(url: str, path: str) -> tuple[int, dict[str, object]]:
    status, _, body = http("GET", url + path, timeout=10)
    return status, json.loads(body)


def _until_status(url: str, path: str, wanted: int, within: float = 5.0) -> dict[str, object]:
    deadline = time.monotonic() + within
    while True:
        status, body = _get(url, path)
        if status == wanted:
            return body
        assert time.monotonic() < deadline, f"{path} stayed {status}: {body}"
        time.sleep(0.1)


def test_live_and_ready_on_the_embedded_default_open_without_a_key(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    gateway = make_gateway({"MINI_LLM_MASTER_KEY": MASTER, "MINI_LLM_DATA_DIR": str(tmp_path)})
    assert _get(gateway.url, "/health/live") == (200, {"status": "ok"})
    assert _get(gateway.url, "/health/live/") == (200, {"status": "ok"})
    assert _get(gateway.url, "/health/ready") == (200, {"status": "ready", "failing": []})
    status, headers, body = http("HEAD", gateway.url + "/health/ready")
    assert (status, body) == (200, b"")
    assert {k.lower(): v for k, v in headers.items()}["cache-control"] == "no-store"
    # the key still guards everything else
    assert http("GET", gateway.url + "/v1/models")[0] == 401


def test_ready_follows_redis_out_and_back(
    make_gateway: GatewayFactory, fresh_redis: RedisServer, tmp_path: Path
) -> None:
    gateway = make_gateway(
        {
            "MINI_LLM_MASTER_KEY": MASTER,
            "MINI_LLM_REDIS_URL": fresh_redis.url,
            "MINI_LLM_DATA_DIR": str(tmp_path),
        }
    )
    try:
        assert _get(gateway.url, "/health/ready") == (200, {"status": "ready", "failing": []})
        fresh_redis.stop()
        body = _until_status(gateway.url, "/health/ready", 503)
        assert body == {"status": "unready", "failing": ["redis"]}
        assert _get(gateway.url, "/health/live") == (200, {"status": "ok"})
        assert MASTER not in json.dumps(body) and "redis://" not in json.dumps(body)
    finally:
        if fresh_redis.proc is None:
            fresh_redis.start()
    _until_status(gateway.url, "/health/ready", 200, within=5.0)


def test_ready_names_an_unreachable_postgresql_and_answers_within_its_timeout(
    make_gateway: GatewayFactory, postgres_url: str
) -> None:
    good = make_gateway({"MINI_LLM_MASTER_KEY": MASTER, "MINI_LLM_DATABASE_URL": postgres_url})
    assert _get(good.url, "/health/ready") == (200, {"status": "ready", "failing": []})
    gone = f"postgresql://postgres@127.0.0.1:{_closed_port()}/postgres"
    bad = make_gateway(
        {
            "MINI_LLM_MASTER_KEY": MASTER,
            "MINI_LLM_DATABASE_URL": gone,
            "MINI_LLM_REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0",
        }
    )
    began = time.monotonic()
    status, body = _get(bad.url, "/health/ready")
    assert time.monotonic() - began < 2.0
    assert (status, body) == (503, {"status": "unready", "failing": ["postgresql", "redis"]})


@pytest.mark.parametrize("path", ["/health/live", "/health/ready"])
def test_the_probes_are_in_the_openapi_document(
    make_gateway: GatewayFactory, tmp_path: Path, path: str
) -> None:
    gateway = make_gateway({"MINI_LLM_DATA_DIR": str(tmp_path)})
    status, _, body = http("GET", gateway.url + "/openapi.json")
    operation = json.loads(body)["paths"][path]["get"]
    assert status == 200 and operation["security"] == [{}]
    assert "application/json" in operation["responses"]["200"]["content"]


def test_a_served_gateway_drains_after_sigterm_ready_503_and_connections_closed(
    tmp_path: Path,
) -> None:
    """`serve` with a drain delay: after SIGTERM it still answers, readiness says draining,
    every answer closes its connection; then it stops listening and exits 0."""
    import signal

    from .harness import clean_env, start_serve

    env = clean_env(MINI_LLM_DRAIN_DELAY="1.5", MINI_LLM_DATA_DIR=str(tmp_path))
    served = start_serve("--port", "0", "--no-state", env=env)
    try:
        status, headers, _ = http("GET", served.url + "/health/ready")
        assert status == 200 and "close" not in {k.lower(): v for k, v in headers.items()}.get(
            "connection", ""
        )
        served.proc.send_signal(signal.SIGTERM)
        body = _until_status(served.url, "/health/ready", 503)
        assert body == {"status": "draining", "failing": []}
        status, headers, _ = http("GET", served.url + "/health/live")
        assert status == 200
        assert {k.lower(): v for k, v in headers.items()}["connection"] == "close"
        assert served.proc.wait(15) == 0
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(5)
        if served.proc.stdout is not None:
            served.proc.stdout.close()
