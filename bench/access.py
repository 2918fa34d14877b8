"""What the "auth + limits on" scenarios need beside the gateway: a redis-server of the
bench's own, and a gateway key created through the admin API."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from harness import Request, free_port, pinned

LOAD_CPU = "0"  # beside the mock upstream and wrk, never on the gateway's CPU


def start_redis(work: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """A redis-server (free port, no persistence, on the load CPU): (process, URL), or
    (None, why not)."""
    executable = shutil.which("redis-server")
    if executable is None:
        return None, "redis-server is not on PATH: the Redis scenario is not measured"
    port = free_port()
    proc = subprocess.Popen(
        pinned(LOAD_CPU, [executable, "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(work)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    stop_redis(proc)
    return None, f"redis-server did not start on port {port}"


def stop_redis(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()  # by its pid
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def with_gateway_key(request: Request, port: int, master_key: str) -> Request:
    """`request` carrying a new gateway key, created with the master key, whose rpm and tpm
    the load never reaches (so every request reserves and settles both)."""
    body = json.dumps({"name": "bench", "rpm": 10**9, "tpm": 10**12}).encode()
    made = urllib.request.Request(
        f"http://127.0.0.1:{port}/admin/keys",
        body,
        {"Authorization": f"Bearer {master_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(made, timeout=10) as answer:
        key = json.loads(answer.read())["key"]
    headers = {**request.headers, "Authorization": f"Bearer {key}"}
    return Request(request.path, request.body, headers)
