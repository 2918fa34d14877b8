"""`mini-llm serve --workers 2` as real processes: both workers answer, SIGTERM stops them all."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import http

LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


def _clean_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("MINI_LLM_") or k.endswith(("_API_KEY", "_API_KEYS", "_BASE_URL")))
    }
    env["MINI_LLM_LOG_LEVEL"] = "warning"
    return env


def _children(parent: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _read_url(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if not ready:
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = LISTENING.search(line)
        if match:
            return match.group(1)
    raise AssertionError(f"the gateway did not start: {seen}")


@pytest.fixture
def workers_gateway() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mini_llm", "serve", "--port", "0", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_clean_env(),
    )
    started = {proc.pid}
    try:
        url = _read_url(proc, timeout=20)
        started |= _children(proc.pid)
        yield proc, url
    finally:
        started |= _children(proc.pid) if proc.poll() is None else set()
        for pid in started:  # only the processes this test started
            if pid != proc.pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_two_workers_answer_and_sigterm_stops_them_all(
    workers_gateway: tuple[subprocess.Popen[str], str],
) -> None:
    proc, url = workers_gateway
    workers = _children(proc.pid)
    assert len(workers) == 2

    answered: set[int] = set()
    deadline = time.monotonic() + 15
    while len(answered) < 2 and time.monotonic() < deadline:
        # a new connection each time: SO_REUSEPORT spreads connections, not requests
        status, _, body = http("GET", url + "/health")
        assert status == 200
        answered.add(json.loads(body)["pid"])
    assert answered == workers

    request = {"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]}
    status, _, body = http(
        "POST",
        url + "/v1/chat/completions",
        json.dumps(request).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "hi"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers)


SUPERVISE_STUCK_WORKERS = """
import os, signal, time
from mini_llm.gateway.server import _supervise

pids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a worker stuck in its drain
        time.sleep(30)
        os._exit(0)
    pids.append(pid)
stopping = []
asked = []

def stop(signum, frame):  # what the parent's SIGTERM handler does, while it waits
    asked.append(time.monotonic())
    stopping.append(signum)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)

signal.signal(signal.SIGALRM, stop)
signal.setitimer(signal.ITIMER_REAL, 0.3)
_supervise(pids, stopping, grace=0.5)
print(round(time.monotonic() - asked[0], 2))
"""


def test_workers_that_ignore_sigterm_are_killed_after_the_grace() -> None:
    """The parent's wait must not block past the deadline (an interrupted waitpid restarts)."""
    result = subprocess.run(
        [sys.executable, "-c", SUPERVISE_STUCK_WORKERS],
        capture_output=True,
        text=True,
        timeout=25,
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout.strip()) < 3.0
