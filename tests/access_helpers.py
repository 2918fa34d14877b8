"""Gateways with auth on, for the access tests: the embedded default (SQLite + memory) and
the shared one (Redis + the same store file), on 127.0.0.1 in the tests' loop thread."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import LoopThread, RunningApp, gateway_settings, http, start_gateway

MASTER = "master-key-for-tests-0123456789"


class Gateways:
    """Starts gateways sharing one store (and Redis when given), stops them at the end."""

    def __init__(self, loop: LoopThread, folder: Path, redis_url: str = "") -> None:
        self.loop = loop
        self.folder = folder
        self.redis_url = redis_url
        self.running: list[RunningApp] = []

    def start(self, **env: str) -> RunningApp:
        base = {"MINI_LLM_MASTER_KEY": MASTER, "MINI_LLM_DATA_DIR": str(self.folder)}
        if self.redis_url:
            base["MINI_LLM_REDIS_URL"] = self.redis_url
        base["MINI_LLM_LOG_LEVEL"] = "warning"
        gateway = start_gateway(self.loop, gateway_settings({**base, **env}))
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
