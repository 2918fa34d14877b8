"""Real servers on 127.0.0.1 for tests: an event loop in a thread runs aiohttp apps."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import web

from mini_llm.config import Settings, load_settings
from mini_llm.gateway.app import build_app
from mini_llm.gateway.connections import GatewayRunner

T = TypeVar("T")


class LoopThread:
    """An asyncio loop running in a daemon thread; `run()` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class RunningApp:
    """An aiohttp application served on 127.0.0.1 on a free port."""

    def __init__(
        self, loop: LoopThread, app: web.Application, settings: Settings | None = None
    ) -> None:
        self._loop = loop
        self.app = app
        options: dict[str, Any] = {
            "access_log": None,
            "handle_signals": False,
            "handler_cancellation": True,
            "shutdown_timeout": 1.0,
        }
        # a gateway runs as `serve` runs it: header timeout, connection caps, JSON HTTP errors
        self._runner = (
            GatewayRunner(app, settings, **options)
            if settings is not None
            else web.AppRunner(app, **options)
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.port: int = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

        async def start() -> None:
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()

        loop.run(start())

    def connections(self) -> int:
        """Client connections open to this server right now (idle keep-alive ones included)."""
        server = self._runner.server
        return len(server.connections) if server is not None else 0

    def stop(self) -> None:
        self._loop.run(self._runner.cleanup())


def gateway_settings(
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
    **flags: Any,
) -> Settings:
    """Settings from an explicit environment only: the test machine's variables never leak in."""
    return load_settings(env=dict(env or {}), config_path=config_path, flags=flags)


def start_gateway(loop: LoopThread, settings: Settings) -> RunningApp:
    return RunningApp(loop, build_app(settings), settings)


def http(
    method: str,
    url: str,
    data: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """One plain HTTP request (no client library smoothing anything over)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=data, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# `mini-llm serve` as a real process ------------------------------------------------------------

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:(\d+))")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("MINI_LLM_") or k.endswith(("_API_KEY", "_API_KEYS", "_BASE_URL")))
    }
    env.update(extra)
    return env


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, lines: list[str]) -> None:
        self.proc = proc
        self.url = url
        self.lines = lines
        self.port = int(url.rsplit(":", 1)[1])


def start_serve(*args: str, env: dict[str, str] | None = None) -> Served:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mini_llm", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or clean_env(),
    )
    lines: list[str] = []
    deadline = time.monotonic() + 15
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = LISTENING.search(line)
        if match:
            return Served(proc, match.group(1), lines)
    proc.kill()
    proc.wait(5)
    proc.stdout.close()
    raise AssertionError(f"gateway did not start: {lines}")
