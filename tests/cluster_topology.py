"""The cluster the tests prove: PostgreSQL, Redis, N `mini-llm serve --workers 2` instances
and nginx in front (deploy/nginx/nginx.conf), on 127.0.0.1 free ports, in a temporary
directory. Every process is started in its own session and stopped by its pid (an instance:
its whole process group, master and workers), also when a test fails.

`upstreams_conf` writes the `upstream mini_llm` block nginx.conf includes (also used by
`deploy/local-cluster.sh`'s shape: one `server` line an instance, passive health by
`max_fails`/`fail_timeout`, a shared `zone`, keep-alive connections).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from .harness import clean_env, http

__all__ = ["DRAIN_DELAY", "Cluster", "Instance", "Nginx", "listen_conf", "upstreams_conf"]

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
DRAIN_DELAY = 5.0
"""Seconds an instance serves on after SIGTERM: longer than nginx's upstream keep-alive (4 s),
so that nginx has closed or used (and been told to close) every connection it kept."""
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def upstreams_conf(ports: list[int], *, max_fails: int = 1, fail_timeout: int = 10) -> str:
    servers = "".join(
        f"    server 127.0.0.1:{p} max_fails={max_fails} fail_timeout={fail_timeout}s;\n"
        for p in ports
    )
    return (
        "upstream mini_llm {\n"
        "    zone mini_llm 64k;  # failures seen by one nginx worker count for all\n"
        f"{servers}"
        "    keepalive 64;\n"
        "    keepalive_timeout 4s;  # shorter than the instances' drain_delay\n"
        "}\n"
    )


def listen_conf(port: int) -> str:
    return f"listen 127.0.0.1:{port};\n"


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on {port}: {log.read_text(errors='replace')}")
        time.sleep(0.05)


def _stop_group(proc: subprocess.Popen[bytes], sig: int, wait: float) -> None:
    """Signal the process group `proc` leads (it was started in a session of its own)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # a worker left behind by its master


class Instance:
    """One `mini-llm serve --workers N` on a fixed port (so that it can come back there)."""

    def __init__(self, name: str, home: Path, env: dict[str, str], workers: int = 2) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / f"{name}.log"
        self.env = env
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mini_llm", "serve", "--no-state", "--port",
                 str(self.port), "--workers", str(self.workers)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, within: float = 30.0) -> None:
        assert self.proc is not None
        _wait_port(self.port, self.proc, self.log, within)
        deadline = time.monotonic() + within
        while not LISTENING.search(self.log.read_text(errors="replace")):
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            assert time.monotonic() < deadline, "no 'listening on' line"
            time.sleep(0.05)
        # the master says so once the sockets are bound; each worker accepts once it has
        # started (stores opened): every worker answers, on connections the kernel spreads
        answered = 0
        while answered < 4 * self.workers:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"{self.name}'s workers did not all answer"
            try:
                status, _, _ = http("GET", self.url + "/health/ready", timeout=2)
            except OSError:
                status = 0
            answered = answered + 1 if status == 200 else 0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        """SIGTERM to the master, which drains its workers (as an orchestrator stops it)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """kill -9 of the whole instance: master and workers at once."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc, signal.SIGTERM, 20)

    def begin_stop(self) -> None:
        """SIGTERM without waiting (instances drain together; `stop` then waits)."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)


class Nginx:
    def __init__(self, home: Path, ports: list[int]) -> None:
        self.prefix = home / "nginx"
        self.prefix.mkdir()
        self.prefix.chmod(0o755)  # nginx's workers run as `nobody` when we are root
        shutil.copy(NGINX_CONF, self.prefix / "nginx.conf")
        (self.prefix / "upstreams.conf").write_text(upstreams_conf(ports))
        self.port = free_port()
        (self.prefix / "listen.conf").write_text(listen_conf(self.port))
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.prefix / "nginx.log"
        self.access = self.prefix / "access.log"
        with open(self.log, "ab") as err, open(self.access, "ab") as out:
            self.proc = subprocess.Popen(
                ["/usr/sbin/nginx", "-p", str(self.prefix), "-c",
                 str(self.prefix / "nginx.conf"), "-e", "stderr"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )  # fmt: skip
        _wait_port(self.port, self.proc, self.log, 10)

    def access_lines(self) -> list[dict[str, str]]:
        """nginx's access log (the `mini_llm` format), each line's key=value fields."""
        lines = []
        for line in self.access.read_text(errors="replace").splitlines():
            fields = dict(re.findall(r"(\w+)=(.*?)(?= \w+=|$)", line))
            fields["status"] = line.split('" ', 1)[1].split(" ", 1)[0] if '" ' in line else ""
            lines.append(fields)
        return lines

    def stop(self) -> None:
        _stop_group(self.proc, signal.SIGQUIT, 10)  # graceful: finish what is under way


class Cluster:
    """Instances sharing `redis_url` and `database_url`, nginx in front."""

    def __init__(
        self,
        home: Path,
        *,
        redis_url: str,
        database_url: str,
        master_key: str,
        instances: int = 3,
        workers: int = 2,
    ) -> None:
        self.home = home
        self.master_key = master_key
        self.env = clean_env(
            MINI_LLM_MASTER_KEY=master_key,
            MINI_LLM_REDIS_URL=redis_url,
            MINI_LLM_DATABASE_URL=database_url,
            MINI_LLM_CACHE="redis",
            MINI_LLM_LOG_LEVEL="warning",
            MINI_LLM_PORT_RETRIES="0",  # an instance comes back on its own port or not at all
            MINI_LLM_SHUTDOWN_GRACE="15",
            MINI_LLM_DRAIN_DELAY=str(DRAIN_DELAY),
            # every connection comes from nginx, one address: no per-client cap
            MINI_LLM_MAX_CONNECTIONS_PER_CLIENT="0",
            MINI_LLM_DATA_DIR=str(home / "data"),
        )
        self.instances = [
            Instance(f"gateway{i + 1}", home, self.env, workers) for i in range(instances)
        ]
        self.nginx: Nginx | None = None
        try:
            for instance in self.instances:  # spawned together: their start-ups overlap
                instance.spawn()
            for instance in self.instances:
                instance.wait_ready()
            self.nginx = Nginx(home, [i.port for i in self.instances])
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    def revive(self) -> None:
        """Bring back every instance a test stopped, on its own port."""
        down = [i for i in self.instances if not i.alive]
        for instance in down:
            instance.spawn()
        for instance in down:
            instance.wait_ready()

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for instance in self.instances:
            instance.begin_stop()
        for instance in self.instances:
            instance.stop()
