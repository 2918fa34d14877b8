"""A real PostgreSQL for the tests: `initdb` and `postgres` from /usr/lib/postgresql/*/bin, on a
free port of 127.0.0.1, in a temporary directory, as an unprivileged user when run as root
(`initdb` refuses root), stopped by its pid; `postgres_server` gives a module its own one to
stop and start (an outage). Absent binaries skip the tests that need it,
loudly (`bash scripts/services` installs them)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["PostgresServer", "postgres_server", "postgres_url"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _as_user(command: list[str]) -> tuple[list[str], int | None]:
    """The command run as `nobody` when we are root (and that user's uid)."""
    if os.geteuid() != 0:
        return command, None
    user = pwd.getpwnam("nobody")
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("!!! PostgreSQL tests SKIPPED: running as root and setpriv is missing")
    return [
        setpriv,
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        *command,
    ], user.pw_uid


class PostgresServer:
    """A running PostgreSQL in its own temporary directory; `stop()` (a fast shutdown, as
    `pg_ctl stop -m fast` does it: SIGINT to the postmaster) and `start()` again on the same
    port and data make an outage; `close()` stops it and removes the directory."""

    def __init__(self, bin_dir: str) -> None:
        self.bin_dir = bin_dir
        self.home = tempfile.mkdtemp(prefix="mini-llm-pg-")
        self.data = os.path.join(self.home, "data")
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        _, uid = _as_user([])
        if uid is not None:
            os.chown(self.home, uid, -1)
        initdb, _ = _as_user(
            [os.path.join(bin_dir, "initdb"), "-D", self.data, "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--no-sync"]
        )  # fmt: skip
        done = subprocess.run(initdb, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            shutil.rmtree(self.home, ignore_errors=True)
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        assert self.proc is None, "already running"
        command, _ = _as_user(
            [os.path.join(self.bin_dir, "postgres"), "-D", self.data, "-p", str(self.port),
             "-k", self.home, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        )  # fmt: skip
        if self._log is None:
            self._log = open(os.path.join(self.home, "postgres.log"), "ab")  # noqa: SIM115
        server = self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                self.proc = None
                with open(os.path.join(self.home, "postgres.log")) as failed:
                    raise RuntimeError("postgres exited: " + failed.read())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("postgres did not listen within 30 s") from None
                time.sleep(0.1)
        time.sleep(0.3)  # listening comes just before accepting logins

    def stop(self) -> None:
        server, self.proc = self.proc, None
        if server is None or server.poll() is not None:
            return
        os.kill(server.pid, signal.SIGINT)  # fast shutdown
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            server.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.home, ignore_errors=True)


def _bin_dir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        message = "!!! PostgreSQL is not installed (bash scripts/services): its tests are SKIPPED"
        print(message, file=sys.stderr)
        pytest.skip(message)
    return os.path.dirname(found[-1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The session's PostgreSQL (shared by the tests that only need a URL)."""
    server = PostgresServer(_bin_dir())
    try:
        server.start()
        yield server.url
    finally:
        server.close()


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of the module's own, which its tests may stop and start."""
    server = PostgresServer(_bin_dir())
    try:
        server.start()
        yield server
    finally:
        server.close()
