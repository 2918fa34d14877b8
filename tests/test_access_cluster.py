"""Two gateway processes (`python -m mini_llm serve`, real OS processes on free ports) sharing
Redis for counters and PostgreSQL for keys and spend, as the issue's many-instances setup:
one key's rpm holds across both under concurrency, and a key revoked through one is refused
by the other within a second."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from .access_helpers import MASTER, new_database, postgres_url, redis_server, shared_service
from .harness import Served, clean_env, http, start_serve
from .services.redis import RedisServer

__all__ = ["postgres_url", "redis_server"]  # fixtures, used by name

_BODY = {"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[Served]]:
    redis_server: RedisServer = shared_service(request, "redis_server")
    postgres_url: str = shared_service(request, "postgres_url")
    if redis_server.proc is None:
        redis_server.start()
    redis_server.flush()
    env = clean_env(
        MINI_LLM_MASTER_KEY=MASTER,
        MINI_LLM_REDIS_URL=redis_server.url,
        MINI_LLM_DATABASE_URL=new_database(postgres_url),
        MINI_LLM_DATA_DIR=str(tmp_path / "data"),
        MINI_LLM_STATE_DIR=str(tmp_path / "state"),
        MINI_LLM_LOG_LEVEL="warning",
    )
    started: list[Served] = []
    try:
        for _ in range(2):
            started.append(start_serve("--port", "0", "--no-state", env=env))
        assert started[0].proc.pid != started[1].proc.pid
        yield started
    finally:
        for served in started:  # stopped by pid
            if served.proc.poll() is None:
                served.proc.terminate()
                served.proc.wait(15)
            if served.proc.stdout is not None:
                served.proc.stdout.close()


def _call(
    served: Served, method: str, path: str, key: str, body: object = None
) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    status, _, raw = http(
        method,
        served.url + path,
        data,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    return status, json.loads(raw) if raw else {}


def _known_by(served: Served, key_id: str) -> None:
    """Wait until `served` has loaded the key (it reloads its keys every 0.5 s), asking
    the admin API so that no request is spent."""
    deadline = time.monotonic() + 5
    while _call(served, "GET", f"/admin/keys/{key_id}", MASTER)[0] != 200:
        assert time.monotonic() < deadline, "the other instance never saw the key"
        time.sleep(0.05)


def _clear_of_a_minute_boundary() -> None:
    """rpm windows are whole minutes: a burst must not straddle two."""
    into = time.time() % 60
    if into > 55:
        time.sleep(60.5 - into)


def _burst(cluster: list[Served], key: str, count: int) -> list[int]:
    async def run() -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> int:
                url = cluster[i % len(cluster)].url + "/v1/chat/completions"
                headers = {"Authorization": f"Bearer {key}"}
                async with session.post(url, json=_BODY, headers=headers) as response:
                    await response.read()
                    return response.status

            return list(await asyncio.gather(*(one(i) for i in range(count))))

    return asyncio.run(run())


def test_two_processes_admit_exactly_the_rpm_of_a_key_under_concurrency(
    cluster: list[Served],
) -> None:
    first, second = cluster
    status, made = _call(first, "POST", "/admin/keys", MASTER, {"name": "shared", "rpm": 11})
    assert status == 201
    _known_by(second, str(made["id"]))
    _clear_of_a_minute_boundary()
    statuses = _burst(cluster, str(made["key"]), 60)
    assert statuses.count(200) == 11 and statuses.count(429) == 49
    # both processes answered, and both refuse now
    for served in cluster:
        status, answer = _call(served, "POST", "/v1/chat/completions", str(made["key"]), _BODY)
        assert status == 429
        error = answer["error"]
        assert isinstance(error, dict) and error["code"] == "rate_limit_exceeded"


def test_a_key_revoked_through_one_process_is_refused_by_the_other_within_1s(
    cluster: list[Served],
) -> None:
    first, second = cluster
    status, made = _call(first, "POST", "/admin/keys", MASTER, {"name": "leaving"})
    assert status == 201
    key = str(made["key"])
    _known_by(second, str(made["id"]))
    assert _call(second, "POST", "/v1/chat/completions", key, _BODY)[0] == 200
    assert _call(first, "DELETE", f"/admin/keys/{made['id']}", MASTER)[0] == 200
    revoked_at = time.monotonic()
    while True:
        status, answer = _call(second, "POST", "/v1/chat/completions", key, _BODY)
        if status == 401:
            break
        assert status == 200
        assert time.monotonic() - revoked_at < 1.0, "still admitted a second after revocation"
        time.sleep(0.02)
    error = answer["error"]
    assert isinstance(error, dict) and error["code"] == "invalid_api_key"
    assert _call(first, "POST", "/v1/chat/completions", key, _BODY)[0] == 401
