"""GatewayManager with real gateway processes: one shared gateway, stale state, supervision."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import mini_llm
from mini_llm.sdk.errors import GatewayConfigError, GatewayStartError, GatewayVersionError
from mini_llm.sdk.manager import GatewayManager, ensure_gateway, fetch_health
from mini_llm.sdk.state import GatewayState, read_state, write_state

from .sdk_harness import (
    FakeGateway,
    alive,
    clean_env,
    free_port,
    gateway_pids,
    kill_gateways,
    wait_for,
)


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "state"
    for name in list(os.environ):
        if name.startswith("MINI_LLM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MINI_LLM_STATE_DIR", str(path))
    yield path
    leftovers = kill_gateways(path)
    assert not leftovers, f"the test left gateways running: {leftovers}"


def manager(state_dir: Path, **options: object) -> GatewayManager:
    return GatewayManager(state_dir=state_dir, port=0, stop_grace=5.0, **options)  # type: ignore[arg-type]


def test_ensure_starts_publishes_and_reuses(state_dir: Path) -> None:
    first = manager(state_dir)
    state, started = first.ensure_state()
    assert started
    assert state.pid == first.started_pid
    assert state.url == f"http://127.0.0.1:{state.port}"
    assert state.version == mini_llm.__version__
    on_disk = json.loads((state_dir / "gateway.json").read_text())
    assert set(on_disk) == {
        "pid",
        "host",
        "port",
        "url",
        "version",
        "started_at",
        "config_path",
        "flags",
        "key_env",
        "config_fingerprint",
    }
    assert on_disk["pid"] == state.pid
    health = fetch_health(state.url)
    assert health is not None
    assert health["pid"] == state.pid

    # another manager (another process, in real life) finds the same gateway
    second = manager(state_dir)
    again, started_again = second.ensure_state()
    assert (again, started_again) == (state, False)
    assert second.started_pid is None
    assert gateway_pids(state_dir) == [state.pid]

    stopped = second.stop()
    assert stopped == state
    assert not alive(state.pid)
    assert not (state_dir / "gateway.json").exists()
    assert second.stop() is None


CONCURRENT_CALLER = """
import os, sys, time
from mini_llm import ensure_gateway
go = sys.argv[1]
open(sys.argv[2], "w").close()
deadline = time.monotonic() + 30
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("no go signal")
    time.sleep(0.002)
print(ensure_gateway(port=0, timeout=30))
"""


def test_twenty_concurrent_callers_start_exactly_one_gateway(
    state_dir: Path, tmp_path: Path
) -> None:
    env = clean_env(state_dir)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_CALLER, str(go), str(tmp_path / f"ready-{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(20)
    ]
    try:
        wait_for(
            lambda: all((tmp_path / f"ready-{i}").exists() for i in range(20)),
            30,
            "20 callers to be ready",
        )
        go.touch()  # all at the same moment
        outputs = [proc.communicate(timeout=45) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert [proc.returncode for proc in procs] == [0] * 20, [err for _, err in outputs]
    urls = {out.strip() for out, _ in outputs}
    assert len(urls) == 1, urls
    state = read_state(state_dir / "gateway.json")
    assert state is not None
    assert urls == {state.url}
    assert gateway_pids(state_dir) == [state.pid]
    assert (state_dir / "gateway.log").read_text().count("started gateway pid") == 1
    assert manager(state_dir).stop() == state


def test_supervised_gateway_killed_with_sigkill_is_restarted(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mini_llm.sdk")
    m = manager(state_dir)
    first = m.ensure_state()[0]
    m.supervise(interval=0.2)
    try:
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.monotonic()

        wait_for(lambda: m.started_pid != first.pid, 10, "a new gateway")
        second = m.find()
        assert second is not None
        assert time.monotonic() - killed_at < 5
        assert second.pid == m.started_pid
        assert second.url == first.url  # same port: clients holding the URL keep working
        assert not alive(first.pid)
        assert any("restarting" in event for event in m.events)
        assert "gone or unhealthy" in caplog.text
    finally:
        m.stop_supervising()
    assert m.stop() == second


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(10)
    return proc.pid


def test_stale_state_with_a_dead_pid_is_replaced(state_dir: Path) -> None:
    port = free_port()
    dead = _dead_pid()
    stale = GatewayState(dead, "127.0.0.1", port, f"http://127.0.0.1:{port}", "0.1.0", 1.0)
    write_state(state_dir / "gateway.json", stale)
    m = manager(state_dir)
    assert not m.status().running
    state, started = m.ensure_state()
    assert started
    assert state.pid != dead
    assert m.status().running
    assert m.stop() == state


def test_stale_state_naming_an_unrelated_live_process_leaves_it_alone(state_dir: Path) -> None:
    # a live process that is not ours, and an HTTP server answering /health with another pid
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    impostor = FakeGateway(state_dir, mini_llm.__version__)
    try:
        port = impostor.port
        stale = GatewayState(unrelated.pid, "127.0.0.1", port, impostor.url, "0.1.0", 1.0)
        write_state(state_dir / "gateway.json", stale)
        m = manager(state_dir)
        assert m.find() is None
        state, started = m.ensure_state()
        assert started
        assert state.pid not in (unrelated.pid, impostor.proc.pid)
        assert state.url != impostor.url
        assert m.stop() == state
        assert unrelated.poll() is None, "an unrelated process was signalled"
        assert impostor.proc.poll() is None
    finally:
        unrelated.kill()
        unrelated.wait(10)
        impostor.close()


def test_a_chosen_port_that_is_taken_fails_clearly(state_dir: Path) -> None:
    # a port the caller chose is bound or the start fails: it never moves to the next one
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        m = GatewayManager(state_dir=state_dir, port=port)
        with pytest.raises(GatewayStartError, match=f"port {port} on 127.0.0.1 is in use"):
            m.ensure()
        assert not (state_dir / "gateway.json").exists()
        assert gateway_pids(state_dir) == []


def test_start_stop_cycles(state_dir: Path) -> None:
    m = manager(state_dir)
    pids = []
    for _ in range(3):
        state, started = m.ensure_state()
        assert started
        assert state.pid not in pids
        pids.append(state.pid)
        assert m.stop() == state
        assert not alive(state.pid)
        assert m.find() is None
    assert gateway_pids(state_dir) == []


def test_restart_replaces_the_gateway(state_dir: Path) -> None:
    m = manager(state_dir)
    first = m.ensure_state()[0]
    second = m.restart()
    assert second.pid != first.pid
    assert not alive(first.pid)
    assert m.find() == second
    assert m.stop() == second


def test_version_mismatch_warns_errors_or_restarts(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = FakeGateway(state_dir, "0.0.1")
    try:
        with caplog.at_level(logging.WARNING, logger="mini_llm.sdk"):
            assert manager(state_dir).ensure() == old.url
        assert "version 0.0.1" in caplog.text

        with pytest.raises(GatewayVersionError) as info:
            manager(state_dir, on_version_mismatch="error").ensure()
        assert (info.value.running, info.value.expected) == ("0.0.1", mini_llm.__version__)

        m = manager(state_dir, on_version_mismatch="restart")
        state, started = m.ensure_state()
        assert started
        assert state.version == mini_llm.__version__
        assert old.proc.wait(10) == -signal.SIGTERM
        assert m.stop() == state
    finally:
        old.close()


def test_stop_escalates_to_sigkill(state_dir: Path) -> None:
    stubborn = FakeGateway(state_dir, mini_llm.__version__, ignore_sigterm=True)
    try:
        m = GatewayManager(state_dir=state_dir, stop_grace=0.5)
        started = time.monotonic()
        assert m.stop() == stubborn.state
        assert stubborn.proc.wait(5) == -signal.SIGKILL
        assert time.monotonic() - started < 5
        assert any("SIGKILL" in event for event in m.events)
    finally:
        stubborn.close()


STOP_ON_EXIT = """
import sys
from mini_llm import ensure_gateway
from mini_llm.sdk.state import read_state
from pathlib import Path
url = ensure_gateway(port=0, stop_on_exit=True)
print(read_state(Path(sys.argv[1])).pid)
"""


def test_stop_on_exit_stops_only_a_gateway_this_process_started(state_dir: Path) -> None:
    env = clean_env(state_dir)
    state_file = str(state_dir / "gateway.json")
    own = subprocess.run(
        [sys.executable, "-c", STOP_ON_EXIT, state_file],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pid = int(own.stdout)
    assert not alive(pid)
    assert not (state_dir / "gateway.json").exists()

    m = manager(state_dir)
    running = m.ensure_state()[0]
    other = subprocess.run(
        [sys.executable, "-c", STOP_ON_EXIT, state_file],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert int(other.stdout) == running.pid
    assert m.find() == running
    assert m.stop() == running


def test_configuration_reaches_the_gateway_through_its_environment(
    state_dir: Path, tmp_path: Path
) -> None:
    key = "sk-test-never-on-a-command-line-1234"
    config = tmp_path / "mini-llm.toml"
    config.write_text('[aliases]\nhello = "mock/echo"\n')
    m = manager(state_dir, env={"OPENAI_API_KEY": key}, config_path=config)
    state = m.ensure_state()[0]
    try:
        cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{state.pid}/environ").read_bytes().split(b"\0")
        assert key.encode() not in cmdline
        assert f"OPENAI_API_KEY={key}".encode() in environ
        from .harness import http

        status, _, body = http("GET", state.url + "/v1/models")
        assert status == 200
        assert "hello" in {m["id"] for m in json.loads(body)["data"]}
    finally:
        assert m.stop() == state


# issue #9


def test_the_log_is_private_like_the_state_and_the_lock(state_dir: Path) -> None:
    m = manager(state_dir)
    state = m.ensure_state()[0]
    for name in ("gateway.json", "gateway.lock", "gateway.log"):
        assert (state_dir / name).stat().st_mode & 0o777 == 0o600, name
    assert m.stop() == state


def test_a_gateway_that_fails_to_start_is_quoted_line_by_line(state_dir: Path) -> None:
    # invalid in the child only (the parent is not asked to check): its words come back as
    # it printed them, one problem a line, its prefix once
    m = manager(state_dir, env={"MINI_LLM_TIMEOUT_CONNECT": "-1", "MINI_LLM_RETRY_BUDGET": "x"})
    with pytest.raises(GatewayConfigError) as info:
        m.ensure()
    message = str(info.value)
    lines = message.splitlines()
    assert lines[0].startswith("the gateway did not start (exit status 2; log: ")
    assert lines[1] == "invalid configuration:"
    assert lines[2].startswith("  - MINI_LLM_TIMEOUT_CONNECT")
    assert " | " not in message
    assert "mini-llm:" not in message
    assert gateway_pids(state_dir) == []


def test_restart_starts_the_gateway_as_it_was_started(state_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text('[aliases]\nkept = "mock/echo"\n')
    first = manager(state_dir, config_path=config).ensure_state()[0]
    assert first.config_path == str(config)
    second = GatewayManager(state_dir=state_dir, stop_grace=5.0).restart()
    assert (second.config_path, second.url) == (str(config), first.url)
    from .harness import http

    status, _, body = http("GET", second.url + "/v1/models")
    assert status == 200
    assert "kept" in {m["id"] for m in json.loads(body)["data"]}
    assert manager(state_dir).stop() == second


def test_ensure_gateway_names_what_differs_and_refuses_an_invalid_config(
    state_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = tmp_path / "first.toml"
    first.write_text('[aliases]\nfast = "mock/echo"\n')
    other = tmp_path / "other.toml"
    other.write_text('[aliases]\nslow = "mock/echo"\n[timeouts]\nconnect = 3\n')
    running = manager(state_dir, config_path=first).ensure_state()[0]
    with caplog.at_level(logging.WARNING, logger="mini_llm.sdk"):
        assert ensure_gateway(port=0, config_path=first) == running.url
        assert caplog.text == ""
        assert ensure_gateway(port=0, config_path=other) == running.url
    assert "aliases" in caplog.text
    assert "timeouts" in caplog.text
    assert f"mini-llm restart --config {other}" in caplog.text
    bad = tmp_path / "bad.toml"
    bad.write_text("[timeouts]\nconnect = -1\n")
    with pytest.raises(GatewayConfigError, match=r"\[timeouts\] connect"):
        ensure_gateway(port=0, config_path=bad)
    assert manager(state_dir).stop() == running
