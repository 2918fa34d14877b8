"""Hot reload: SIGHUP (or `mini-llm reload`) makes a running `mini-llm serve` read its
configuration again; a valid one is swapped in, an invalid one is refused and logged."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness import Served, clean_env, http, start_serve


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(5)
        # workers outlive a killed parent, and hold its output open
        for match in re.finditer(r"workers \(pids ([\d, ]+)\)", "".join(s.lines)):
            for pid in match.group(1).split(", "):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def follow(s: Served) -> None:
    """Keep appending the gateway's output to `s.lines`."""

    def read() -> None:
        assert s.proc.stdout is not None
        with s.proc.stdout:
            for line in s.proc.stdout:
                s.lines.append(line)

    threading.Thread(target=read, daemon=True).start()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def model_ids(url: str) -> set[str]:
    status, _, body = http("GET", url + "/v1/models")
    assert status == 200
    return {m["id"] for m in json.loads(body)["data"]}


def chat(url: str, model: str) -> int:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    status, _, _ = http(
        "POST",
        url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    return status


def logged(s: Served, text: str) -> int:
    return sum(text in line for line in list(s.lines))


def test_sighup_swaps_a_valid_configuration_and_refuses_an_invalid_one(
    tmp_path: Path, served: list[Served]
) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text('[aliases]\nfast = "mock/echo"\n')
    s = start_serve("--port", "0", "--config", str(config))
    served.append(s)
    follow(s)
    assert "fast" in model_ids(s.url)
    assert chat(s.url, "second") == 404

    config.write_text('[aliases]\nfast = "mock/echo"\nsecond = "mock/echo"\n')
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "second" in model_ids(s.url), "the new alias")
    assert chat(s.url, "second") == 200
    wait_for(lambda: logged(s, "configuration reloaded") == 1, "the reload's log line")
    assert logged(s, "changed aliases.second") == 1

    # invalid: refused as a whole, every problem in the log, the previous one still serves
    config.write_text(
        '[aliases]\nfast = "nowhere/x"\nthird = "mock/echo"\n[server]\nport = 99999\n'
    )
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: logged(s, "configuration not reloaded") == 1, "the refusal")
    output = "".join(s.lines)
    assert "alias 'fast': 'nowhere/x' is unknown" in output
    assert "[server] port must be between 0 and 65535, got 99999" in output
    assert model_ids(s.url) >= {"fast", "second"}
    assert "third" not in model_ids(s.url)
    assert chat(s.url, "fast") == 200

    # settings that cannot change while running are named, not silently dropped
    config.write_text(
        '[aliases]\nfast = "mock/echo"\n[server]\npool_size = 7\nhost = "127.0.0.2"\n'
    )
    s.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: logged(s, "configuration reloaded") == 2, "the second reload")
    assert logged(s, "host, pool_size changed but needs a restart") == 1
    assert "second" not in model_ids(s.url)
    assert chat(s.url, "fast") == 200

    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    assert "Traceback" not in "".join(s.lines)


def reload_cli(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mini_llm", "reload", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=20,
    )


def test_mini_llm_reload_signals_the_gateway_it_finds(tmp_path: Path, served: list[Served]) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text('[aliases]\nfast = "mock/echo"\n')
    state_dir = tmp_path / "state"
    state_file = state_dir / "gateway.json"
    s = start_serve("--port", "0", "--config", str(config), "--state-file", str(state_file))
    served.append(s)
    follow(s)
    wait_for(state_file.exists, "the state file")

    config.write_text('[aliases]\nfast = "mock/echo"\nsecond = "mock/echo"\n')
    result = reload_cli(state_dir)
    assert result.returncode == 0, result.stderr
    assert f"(pid {s.proc.pid}) to reload its configuration" in result.stdout
    wait_for(lambda: "second" in model_ids(s.url), "the new alias")
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0

    result = reload_cli(state_dir)
    assert result.returncode == 1
    assert result.stderr.startswith("mini-llm: no mini-llm gateway is running")

    # a state file naming a live process that is not our gateway: it is never signalled
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        state_dir.mkdir(exist_ok=True)
        state_file.write_text(
            json.dumps(
                {
                    "pid": unrelated.pid,
                    "host": "127.0.0.1",
                    "port": s.port,
                    "url": s.url,
                    "version": "0",
                    "started_at": 0,
                }
            )
        )
        result = reload_cli(state_dir)
        assert result.returncode == 1
        assert "no mini-llm gateway is running" in result.stderr
        time.sleep(0.2)
        assert unrelated.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait(10)


def test_workers_all_reload(tmp_path: Path, served: list[Served]) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text('[aliases]\nfast = "mock/echo"\n')
    s = start_serve("--port", "0", "--workers", "2", "--config", str(config))
    served.append(s)
    follow(s)
    config.write_text('[aliases]\nfast = "mock/echo"\nsecond = "mock/echo"\n')
    s.proc.send_signal(signal.SIGHUP)  # the parent passes it on to every worker
    wait_for(lambda: logged(s, "configuration reloaded") >= 2, "both workers' reloads")
    # each request is a new connection: the kernel spreads them over both workers
    assert all("second" in model_ids(s.url) for _ in range(20))
    assert logged(s, "configuration reloaded") == 2
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(15) == 0


def test_watch_config_reloads_when_the_file_changes(tmp_path: Path, served: list[Served]) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text('[server]\nwatch_config = true\n[aliases]\nfast = "mock/echo"\n')
    s = start_serve("--port", "0", "--config", str(config))
    served.append(s)
    follow(s)
    config.write_text(
        '[server]\nwatch_config = true\n[aliases]\nfast = "mock/echo"\nsecond = "mock/echo"\n'
    )
    wait_for(lambda: "second" in model_ids(s.url), "the new alias, without a signal")
    config.write_text("[aliases\n")
    wait_for(lambda: logged(s, "configuration not reloaded") == 1, "the refusal")
    assert "not valid TOML" in "".join(s.lines)
    assert "second" in model_ids(s.url)
