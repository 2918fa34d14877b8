"""Helpers for tests that run real gateway processes through the SDK manager and the CLI.

Every test gets its own state directory; a gateway belongs to a test when its command line
names that directory's state file, which is how leftovers are found and killed (by pid).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import mini_llm

T = TypeVar("T")

SRC = str(Path(mini_llm.__file__).resolve().parents[1])


def clean_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """The test process's environment without mini-llm settings or provider keys, pointed at
    `state_dir`, importing this checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("MINI_LLM_") or k.endswith(("_API_KEY", "_API_KEYS", "_BASE_URL")))
    }
    env["MINI_LLM_STATE_DIR"] = str(state_dir)
    env["PYTHONPATH"] = os.pathsep.join([SRC, *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    from mini_llm.sdk.state import pid_alive

    return pid_alive(pid)


def gateway_pids(state_dir: Path) -> list[int]:
    """Live processes whose command line names this state directory's state file."""
    marker = str(state_dir / "gateway.json").encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline.split(b"\0") and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def kill_gateways(state_dir: Path) -> list[int]:
    """SIGKILL every gateway of this state directory (by pid); the pids that were found."""
    pids = gateway_pids(state_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        wait_for(lambda pid=pid: not alive(pid), 10, f"pid {pid} to die")  # type: ignore[misc]
    return pids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(
    *args: str,
    env: dict[str, str],
    timeout: float = 30,
    stdin: str | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mini_llm", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )


FAKE_GATEWAY = r"""
import http.server, json, os, signal, sys
version, ignore_term, grace = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
if ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "ok", "pid": os.getpid(), "version": version,
                           "uptime_s": 1.0, "started_at": 0,
                           "shutdown_grace_s": grace}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Health)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class FakeGateway:
    """A process that answers `/health` as a gateway would (its own pid, a chosen version) and
    whose command line looks like `mini_llm serve --state-file <this dir's file>`."""

    def __init__(
        self,
        state_dir: Path,
        version: str,
        ignore_sigterm: bool = False,
        shutdown_grace_s: float = 30.0,
    ) -> None:
        from mini_llm.sdk.state import GatewayState, write_state

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                FAKE_GATEWAY,
                version,
                "1" if ignore_sigterm else "0",
                str(shutdown_grace_s),
                "mini_llm",
                "serve",
                "--state-file",
                str(state_dir / "gateway.json"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = GatewayState(self.proc.pid, "127.0.0.1", self.port, self.url, version, 0.0)
        write_state(state_dir / "gateway.json", self.state)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
