"""Measuring tools of the benchmark: processes, /proc accounting, wrk runs, raw-socket probes.

Everything talks to 127.0.0.1 only and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
LUA = BENCH / "post.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")
_LISTENING = re.compile(r"listening (?:on http://[^ ]+:)?(\d+)")


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that configures a gateway or a provider."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("MINI_LLM_") or k.endswith(("_API_KEY", "_API_KEYS", "_BASE_URL")))
    }
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- processes ---------------------------------------------------------------------------


@dataclass
class Server:
    """A server process this benchmark started (and will stop, by its pid only)."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    cpu: int | None = None
    """The one CPU the server is pinned to, if any."""

    @property
    def pids(self) -> list[int]:
        return tree_pids(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                for pid in reversed(tree_pids(self.proc.pid)):
                    _kill(pid)
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pinned(cpus: str | None, cmd: Sequence[str]) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


def start_server(
    name: str, cmd: Sequence[str], cpus: str | None, env: Mapping[str, str], timeout: float = 60
) -> Server:
    """Start a server that prints `listening <port>` (or `listening on http://host:port`)."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    proc = subprocess.Popen(
        pinned(cpus, cmd),
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
        env=dict(env),
        cwd=REPO,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = b""
    while time.monotonic() < deadline and proc.poll() is None:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            seen += line
            match = _LISTENING.search(line.decode(errors="replace"))
            if match:
                cpu = int(cpus) if cpus is not None and cpus.isdigit() else None
                return Server(name, proc, int(match.group(1)), log, cpu)
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    raise RuntimeError(f"{name} did not start: {seen!r} {log.read_text()[-2000:]}")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # [state, ppid, ...]: comm may hold spaces


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants (the workers of a gateway)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
    found = [root]
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of these processes, from /proc/<pid>/stat."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def cpu_busy_seconds(cpu: int) -> float:
    """Busy time of one CPU (everything but idle and iowait), from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            v = [int(x) for x in line.split()[1:]]
            return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK
    return 0.0


def memory_mb(pids: Sequence[int], key: str) -> float:
    """The sum of `key` (VmRSS, VmHWM) over these processes, in MB."""
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(key + ":"):
                    total_kb += int(line.split()[1])
        except OSError:
            pass
    return total_kb / 1024


# --- HTTP over raw sockets (exact timings, no client library in the way) -------------------


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)

    def raw(self, port: int) -> bytes:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.body)}",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


class Conn:
    """One keep-alive HTTP/1.1 connection that reads answers (Content-Length or chunked)."""

    def __init__(self, port: int, timeout: float = 10) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("connection closed")
        self.buf += data

    def exchange(self, request: Request) -> tuple[int, bytes, float, float]:
        """Send; return status, body, seconds to the first body byte and to the end."""
        t0 = time.perf_counter()
        self.sock.sendall(request.raw(self.port))
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        headers = head.lower()
        if b"transfer-encoding: chunked" in headers:
            chunked, first = self._read_chunked(t0)
            return status, chunked, first, time.perf_counter() - t0
        length = int(re.search(rb"content-length: *(\d+)", headers).group(1))  # type: ignore[union-attr]
        while len(self.buf) < length:
            self._fill()
        first = time.perf_counter() - t0
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body, first, first

    def _read_chunked(self, t0: float) -> tuple[bytes, float]:
        body = b""
        first = 0.0
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            size_line, rest = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                self._fill()
                size_line, rest = self.buf.split(b"\r\n", 1)
            if size == 0:
                self.buf = rest[2:]
                return body, first
            if not first and b"data:" in rest[:size]:
                first = time.perf_counter() - t0
            body += rest[:size]
            self.buf = rest[size + 2 :]


def post_once(port: int, request: Request, timeout: float = 10) -> tuple[int, bytes]:
    conn = Conn(port, timeout)
    try:
        status, body, _, _ = conn.exchange(request)
        return status, body
    finally:
        conn.close()


def first_chunk_times(port: int, request: Request, count: int) -> list[float]:
    """Seconds from sending to the first SSE `data:` byte, `count` requests on one connection."""
    conn = Conn(port)
    times = []
    try:
        for _ in range(count):
            status, _, first, _ = conn.exchange(request)
            if status != 200:
                raise RuntimeError(f"HTTP {status}")
            times.append(first)
    finally:
        conn.close()
    return times


def startup_seconds(
    cmd: Sequence[str], cpus: str | None, env: Mapping[str, str], port: int, request: Request
) -> tuple[float, subprocess.Popen[bytes]]:
    """Seconds from spawning `cmd` (which must listen on `port`) to its first 200 answer."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        pinned(cpus, cmd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(env),
        cwd=REPO,
    )
    deadline = t0 + 60
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}")
        try:
            status, _ = post_once(port, request, timeout=5)
        except OSError:
            time.sleep(0.002)
            continue
        if status == 200:
            return time.perf_counter() - t0, proc
        time.sleep(0.002)
    proc.kill()
    proc.wait(5)
    raise RuntimeError(f"{cmd} did not answer within 60 s")


def command_seconds(cmd: Sequence[str], repeat: int, env: Mapping[str, str]) -> float:
    """Median wall time of a short command."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=dict(env), cwd=REPO, check=True, capture_output=True, timeout=60)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- wrk -----------------------------------------------------------------------------------


def wrk_binary() -> str:
    """`wrk`, installed from Debian when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
    if subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True).returncode:
        subprocess.run(["apt-get", "update"], capture_output=True, check=False)
        subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True, check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("could not install wrk")
    return found


def wrk(
    port: int,
    request: Request,
    connections: int,
    seconds: float,
    cpus: str | None,
    body_dir: Path,
) -> dict[str, Any]:
    body_file = body_dir / f"body-{abs(hash(request.body))}.json"
    body_file.write_bytes(request.body)
    env = dict(os.environ)
    env["BENCH_BODY_FILE"] = str(body_file)
    env["BENCH_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
    cmd = pinned(
        cpus,
        [
            wrk_binary(),
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}{request.path}",
        ],
    )
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 30)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
            return result
    raise RuntimeError(f"wrk gave no result: {done.stdout[-1000:]} {done.stderr[-1000:]}")


def load_run(
    server: Server,
    request: Request,
    connections: int,
    seconds: float,
    cpus: str | None,
    body_dir: Path,
) -> dict[str, Any]:
    """One bounded wrk run, with the server's CPU time (all its processes) around it."""
    pids = server.pids
    busy_before = cpu_busy_seconds(server.cpu) if server.cpu is not None else 0.0
    before = cpu_seconds(pids)
    result = wrk(server.port, request, connections, seconds, cpus, body_dir)
    after = cpu_seconds(pids)
    busy = cpu_busy_seconds(server.cpu) - busy_before if server.cpu is not None else 0.0
    requests = result["requests"]
    errors = sum(result["errors"].values())
    wall = result["duration_us"] / 1e6
    return {
        "connections": connections,
        "requests": requests,
        "errors": errors,
        "rps": round(requests / (result["duration_us"] / 1e6), 1),
        "cpu_us_per_req": round((after - before) * 1e6 / requests, 1) if requests else None,
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "mean_ms": round(result["mean_us"] / 1000, 3),
        # CPU time on the server's core that was not the server's: other load on the machine
        "foreign_cpu_pct": round(max(0.0, busy - (after - before)) * 100 / wall, 1)
        if server.cpu is not None
        else None,
    }
