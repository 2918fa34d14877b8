"""The response store's database down (a real PostgreSQL stopped and started again): reading a
stored response is a 503 in OpenAI's shape, never a stack trace; requests that need no stored
response are still served, and what they store is kept on the instance until the sweep writes
it, once the database is back."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import LoopThread, RunningApp, gateway_settings, http, start_gateway
from .services.postgres import PostgresServer, postgres_server

__all__ = ["postgres_server"]


@pytest.fixture
def gateway(
    loop_thread: LoopThread, tmp_path: Path, postgres_server: PostgresServer
) -> Iterator[RunningApp]:
    env = {
        "MINI_LLM_DATABASE_URL": postgres_server.url,
        "MINI_LLM_DATA_DIR": str(tmp_path),
        "MINI_LLM_LOG_LEVEL": "error",
    }
    running = start_gateway(loop_thread, gateway_settings(env))
    yield running
    if postgres_server.proc is None:
        postgres_server.start()
    running.stop()


def _call(
    gateway: RunningApp, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    status, _, raw = http(method, gateway.url + path, data, {"Content-Type": "application/json"})
    return status, json.loads(raw)


def test_a_store_outage_is_a_clear_503_and_answers_go_on(
    gateway: RunningApp, postgres_server: PostgresServer
) -> None:
    status, stored = _call(gateway, "POST", "/v1/responses", {"model": "mock/echo", "input": "a"})
    assert status == 200, stored
    postgres_server.stop()
    try:
        for method, path, body in (
            ("GET", f"/v1/responses/{stored['id']}", None),
            ("GET", f"/v1/responses/{stored['id']}/input_items", None),
            ("DELETE", f"/v1/responses/{stored['id']}", None),
            (
                "POST",
                "/v1/responses",
                {"model": "mock/echo", "input": "b", "previous_response_id": stored["id"]},
            ),
        ):
            status, error = _call(gateway, method, path, body)
            assert status == 503, (method, path, error)
            assert error["error"]["code"] == "response_store_unavailable"
            assert error["error"]["type"] == "api_error"
            assert "Traceback" not in error["error"]["message"]
            assert postgres_server.url not in error["error"]["message"]

        status, answer = _call(
            gateway, "POST", "/v1/responses", {"model": "mock/echo", "input": "c", "store": False}
        )
        assert status == 200 and answer["output"][0]["content"][0]["text"] == "c"
        status, kept = _call(gateway, "POST", "/v1/responses", {"model": "mock/echo", "input": "d"})
        assert status == 200
        # kept on this instance while the database is away
        status, again = _call(gateway, "GET", f"/v1/responses/{kept['id']}")
        assert status == 200 and again["id"] == kept["id"]
        status, follow = _call(
            gateway,
            "POST",
            "/v1/responses",
            {"model": "mock/echo", "input": "e", "previous_response_id": kept["id"]},
        )
        assert status == 200, follow
    finally:
        postgres_server.start()
    status, back = _call(gateway, "GET", f"/v1/responses/{stored['id']}")
    assert status == 200 and back["id"] == stored["id"]
    # what was kept in memory is written by the sweep once the database is back (every 5 s)
    deadline = time.monotonic() + 20
    while not asyncio.run(_rows(postgres_server.url, kept["id"])):
        assert time.monotonic() < deadline, "the response kept in the outage was never written"
        time.sleep(0.5)


async def _rows(url: str, ident: str) -> list[Any]:
    import asyncpg

    db = await asyncpg.connect(url)
    try:
        return list(await db.fetch("SELECT id FROM stored_responses WHERE id = $1", ident))
    finally:
        await db.close()
