"""A real PostgreSQL for the tests: `initdb` and `postgres` from /usr/lib/postgresql/*/bin, on a
free port of 127.0.0.1, in a temporary directory, as an unprivileged user when run as root
(`initdb` refuses root), stopped by its pid. Absent binaries skip the tests that need it,
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

import pytest

__all__ = ["postgres_url"]


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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        message = "!!! PostgreSQL is not installed (bash scripts/services): its tests are SKIPPED"
        print(message, file=sys.stderr)
        pytest.skip(message)
    bin_dir = os.path.dirname(found[-1])
    home = tempfile.mkdtemp(prefix="mini-llm-pg-")
    data = os.path.join(home, "data")
    _, uid = _as_user([])
    if uid is not None:
        os.chown(home, uid, -1)
    initdb, _ = _as_user(
        [os.path.join(bin_dir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres",
         "-E", "UTF8", "--no-sync"]
    )  # fmt: skip
    done = subprocess.run(initdb, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        shutil.rmtree(home, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
    port = _free_port()
    command, _ = _as_user(
        [os.path.join(bin_dir, "postgres"), "-D", data, "-p", str(port), "-k", home,
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off"]
    )  # fmt: skip
    log = open(os.path.join(home, "postgres.log"), "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                with open(os.path.join(home, "postgres.log")) as failed:
                    raise RuntimeError("postgres exited: " + failed.read())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("postgres did not listen within 30 s") from None
                time.sleep(0.1)
        time.sleep(0.3)  # listening comes just before accepting logins
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGINT)  # fast shutdown
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(server.pid, signal.SIGKILL)
                server.wait(5)
        log.close()
        shutil.rmtree(home, ignore_errors=True)
