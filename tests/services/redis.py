"""A real `redis-server` for the tests: one per session, on a free port of 127.0.0.1, in a
temporary directory, with no persistence; stopped by its pid. `stop()` and `start()` again
(same port) make an outage. Without `redis-server` the tests that need it skip, loudly
(`bash scripts/services` installs it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "fresh_redis", "redis_server"]

_MISSING = (
    "redis-server is not installed: the Redis tests are SKIPPED (bash scripts/services installs it)"
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        assert self.proc is None, "already running"
        self.proc = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--daemonize", "no",
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.command(b"PING") == b"+PONG":
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise AssertionError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def command(self, *parts: bytes) -> bytes | None:
        """One command over a fresh connection: the first line of the reply (None when the
        server does not answer)."""
        request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(request)
                reply = b""
                while not reply.endswith(b"\r\n"):
                    data = sock.recv(4096)
                    if not data:
                        break
                    reply += data
                return reply.split(b"\r\n", 1)[0]
        except OSError:
            return None

    def flush(self) -> None:
        assert self.command(b"FLUSHALL") == b"+OK"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    executable = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if executable is None:
        print(f"\n!!! {_MISSING}\n", file=sys.stderr)
        pytest.skip(_MISSING)
    server = RedisServer(executable, tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    """The session's server, running and empty."""
    if redis_server.proc is None:
        redis_server.start()
    redis_server.flush()
    return redis_server
