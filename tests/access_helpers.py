"""Gateways with auth on, for the access tests, on both backends the issue names: the embedded
default (SQLite + memory) and the shared one (Redis for counters, PostgreSQL for keys and
spend), on 127.0.0.1 in the tests' loop thread. Each PostgreSQL test gets a database of its
own, each Redis test an empty server."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import LoopThread, RunningApp, gateway_settings, http, start_gateway
from .services.postgres import postgres_url
from .services.redis import RedisServer, redis_server

__all__ = [
    "BACKENDS",
    "MASTER",
    "Gateways",
    "admin",
    "chat",
    "create_key",
    "embedded",
    "gateways",
    "new_database",
    "postgres_url",
    "redis_server",
    "shared_service",
]

MASTER = "master-key-for-tests-0123456789"
BACKENDS = ("embedded", "redis+postgres")
_numbers = itertools.count()


def new_database(base_url: str) -> str:
    """A new, empty database on the server of `base_url`: its URL."""
    name = f"access_{os.getpid()}_{next(_numbers)}"

    async def make() -> None:
        import asyncpg

        db = await asyncpg.connect(base_url)
        try:
            await db.execute(f"CREATE DATABASE {name}")
        finally:
            await db.close()

    asyncio.run(make())
    return base_url.rsplit("/", 1)[0] + "/" + name


class Gateways:
    """Starts gateways sharing one key store (and Redis when given), stops them at the end."""

    def __init__(
        self, loop: LoopThread, folder: Path, redis_url: str = "", database_url: str = ""
    ) -> None:
        self.loop = loop
        self.folder = folder
        self.redis_url = redis_url
        self.database_url = database_url
        self.running: list[RunningApp] = []

    def env(self, **env: str) -> dict[str, str]:
        base = {"MINI_LLM_MASTER_KEY": MASTER, "MINI_LLM_DATA_DIR": str(self.folder)}
        if self.redis_url:
            base["MINI_LLM_REDIS_URL"] = self.redis_url
        if self.database_url:
            base["MINI_LLM_DATABASE_URL"] = self.database_url
        base["MINI_LLM_LOG_LEVEL"] = "warning"
        return {**base, **env}

    def start(self, **env: str) -> RunningApp:
        gateway = start_gateway(self.loop, gateway_settings(self.env(**env)))
        self.running.append(gateway)
        return gateway

    def stop(self) -> None:
        for gateway in self.running:
            gateway.stop()


def admin(
    gateway: RunningApp, method: str, path: str, body: Any = None, key: str = MASTER
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    status, _, raw = http(
        method,
        gateway.url + path,
        data,
        {"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    return status, json.loads(raw) if raw else None


def create_key(gateway: RunningApp, **fields: Any) -> dict[str, Any]:
    status, body = admin(gateway, "POST", "/admin/keys", {"name": "test", **fields})
    assert status == 201, body
    return dict(body)


def chat(
    gateway: RunningApp, key: str | None, model: str = "mock/echo", **extra: Any
) -> tuple[int, dict[str, str], Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    status, got, raw = http(
        "POST", gateway.url + "/v1/chat/completions", json.dumps(body).encode(), headers
    )
    return status, {k.lower(): v for k, v in got.items()}, json.loads(raw)


@pytest.fixture
def embedded(loop_thread: LoopThread, tmp_path: Path) -> Iterator[Gateways]:
    gateways = Gateways(loop_thread, tmp_path)
    yield gateways
    gateways.stop()


_SHARED: dict[str, Any] = {}


def shared_service(request: pytest.FixtureRequest, name: str) -> Any:
    """The session fixture `name` (`postgres_url`, `redis_server`), started once for every
    access test module: each module that imports a session fixture would otherwise start
    its own server (it lives until the session ends either way)."""
    if name not in _SHARED:
        _SHARED[name] = request.getfixturevalue(name)
    return _SHARED[name]


@pytest.fixture(params=BACKENDS)
def gateways(
    request: pytest.FixtureRequest, loop_thread: LoopThread, tmp_path: Path
) -> Iterator[Gateways]:
    """Gateways on the embedded default, then on Redis + PostgreSQL (a fresh database and an
    empty Redis for each test)."""
    redis_url = database_url = ""
    if request.param == "redis+postgres":
        server: RedisServer = shared_service(request, "redis_server")
        if server.proc is None:
            server.start()
        server.flush()
        redis_url = server.url
        database_url = new_database(shared_service(request, "postgres_url"))
    made = Gateways(loop_thread, tmp_path, redis_url, database_url)
    yield made
    made.stop()
