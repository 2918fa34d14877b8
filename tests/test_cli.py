"""The `mini-llm` command line driven as a user would: real processes, one state dir each."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import mini_llm
from mini_llm.sdk.state import read_state

from .sdk_harness import (
    FakeGateway,
    alive,
    clean_env,
    free_port,
    gateway_pids,
    kill_gateways,
    run_cli,
    wait_for,
)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state"
    yield path
    leftovers = kill_gateways(path)
    assert not leftovers, f"the test left gateways running: {leftovers}"


@pytest.fixture
def env(state_dir: Path) -> dict[str, str]:
    return clean_env(state_dir, MINI_LLM_PORT="0")


def one_line_error(result: subprocess.CompletedProcess[str], status: int = 1) -> str:
    assert result.returncode == status, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mini-llm: ")
    return lines[0]


def test_a_user_session(env: dict[str, str], state_dir: Path) -> None:
    started = run_cli("start", env=env)
    assert started.returncode == 0, started.stderr
    state = read_state(state_dir / "gateway.json")
    assert state is not None
    assert started.stdout.strip() == f"mini-llm gateway started at {state.url} (pid {state.pid})"

    again = run_cli("start", "--json", env=env)
    assert again.returncode == 0
    info = json.loads(again.stdout)
    assert (info["url"], info["pid"], info["started"]) == (state.url, state.pid, False)

    status = run_cli("status", "--json", env=env)
    assert status.returncode == 0
    info = json.loads(status.stdout)
    assert info["running"] is True
    assert (info["pid"], info["url"], info["version"]) == (
        state.pid,
        state.url,
        mini_llm.__version__,
    )
    assert info["health"] == "ok"
    assert info["uptime_s"] >= 0

    human = run_cli("status", env=env)
    assert human.returncode == 0
    assert "running" in human.stdout
    assert state.url in human.stdout
    assert str(state.pid) in human.stdout

    chat = run_cli("chat", "Hello", "-m", "mock/echo", env=env)
    assert (chat.returncode, chat.stdout) == (0, "Hello\n")
    streamed = run_cli("chat", "Hello, stream", "-m", "mock/echo", "--stream", env=env)
    assert (streamed.returncode, streamed.stdout) == (0, "Hello, stream\n")
    with_system = run_cli(
        "chat", "-m", "mock/echo", "--system", "be brief", "--json", env=env, stdin="from stdin"
    )
    assert with_system.returncode == 0, with_system.stderr
    assert json.loads(with_system.stdout)["choices"][0]["message"]["content"] == "from stdin"

    models = run_cli("models", env=env)
    assert models.returncode == 0
    assert models.stdout.splitlines()[0].split() == ["MODEL", "OWNED", "BY"]
    assert "mock/echo" in models.stdout
    models_json = json.loads(run_cli("models", "--json", env=env).stdout)
    assert "mock/echo" in {m["id"] for m in models_json}

    logs = run_cli("logs", "-n", "5", env=env)
    assert logs.returncode == 0
    assert f"listening on {state.url}" in logs.stdout
    assert len(logs.stdout.splitlines()) <= 5

    stopped = run_cli("stop", env=env)
    assert stopped.returncode == 0
    assert f"pid {state.pid}" in stopped.stdout
    assert not alive(state.pid)
    assert gateway_pids(state_dir) == []

    down = run_cli("status", env=env)
    assert (down.returncode, down.stdout.strip()) == (3, "not running")
    down_json = run_cli("status", "--json", env=env)
    assert down_json.returncode == 3
    assert json.loads(down_json.stdout)["running"] is False
    again_stopped = run_cli("stop", "--json", env=env)
    assert json.loads(again_stopped.stdout) == {"stopped": False, "pid": None}


def test_start_stop_start_and_restart_keeps_the_address(
    env: dict[str, str], state_dir: Path
) -> None:
    pids = []
    for _ in range(2):
        info = json.loads(run_cli("start", "--json", env=env).stdout)
        assert info["started"] is True
        pids.append(info["pid"])
        assert run_cli("stop", env=env).returncode == 0
        assert not alive(info["pid"])
    assert pids[0] != pids[1]

    first = json.loads(run_cli("start", "--json", env=env).stdout)
    restarted = run_cli("restart", "--json", env=env)
    assert restarted.returncode == 0, restarted.stderr
    second = json.loads(restarted.stdout)
    assert second["url"] == first["url"]
    assert second["pid"] != first["pid"]
    assert not alive(first["pid"])
    assert run_cli("chat", "still here", "-m", "mock/echo", env=env).stdout == "still here\n"
    assert run_cli("stop", env=env).returncode == 0


def test_chat_starts_the_gateway_on_demand(env: dict[str, str], state_dir: Path) -> None:
    chat = run_cli("chat", "no start needed", "-m", "mock/echo", env=env)
    assert (chat.returncode, chat.stdout) == (0, "no start needed\n")
    state = read_state(state_dir / "gateway.json")
    assert state is not None
    assert f"started the shared gateway at {state.url}" in chat.stderr
    again = run_cli("chat", "reused", "-m", "mock/echo", env=env)
    assert (again.returncode, again.stdout, again.stderr) == (0, "reused\n", "")
    assert gateway_pids(state_dir) == [state.pid]
    assert run_cli("stop", env=env).returncode == 0


def test_errors_are_one_clear_line(env: dict[str, str], state_dir: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    assert "cannot reach" in one_line_error(
        run_cli("chat", "x", "-m", "m", "--url", nowhere, env=env)
    )
    assert "cannot reach" in one_line_error(run_cli("models", "--url", nowhere, env=env))

    no_logs = one_line_error(run_cli("logs", env=env))
    assert "no log yet" in no_logs

    taken = clean_env(state_dir, MINI_LLM_PORT_RETRIES="0")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = str(sock.getsockname()[1])
        # a chosen port that is taken is a choice to change: exit 2, like a configuration error
        failed = one_line_error(run_cli("start", "--port", port, env=taken), status=2)
    assert "in use" in failed
    assert gateway_pids(state_dir) == []

    assert run_cli("start", env=env).returncode == 0
    unknown = one_line_error(run_cli("chat", "x", "-m", "mock/nope", env=env))
    assert unknown.startswith("mini-llm: 404")
    limited = one_line_error(run_cli("chat", "x", "-m", "mock/error-429", "--stream", env=env))
    assert limited.startswith("mini-llm: 429")
    assert run_cli("stop", env=env).returncode == 0


def test_help_everywhere(env: dict[str, str]) -> None:
    for command in ("", "start", "stop", "restart", "status", "logs", "chat", "models", "serve"):
        result = run_cli(*command.split(), "--help", env=env)
        assert result.returncode == 0, command
        assert result.stdout.startswith("usage: mini-llm"), command
    assert run_cli("config", "check", "--help", env=env).returncode == 0
    bare = run_cli(env=env)
    assert bare.returncode == 2
    assert "start" in bare.stdout


def test_stop_escalates_to_sigkill_after_the_grace_period(
    env: dict[str, str], state_dir: Path
) -> None:
    stubborn = FakeGateway(state_dir, mini_llm.__version__, ignore_sigterm=True)
    try:
        result = run_cli("stop", "--grace", "0.5", env=env)
        assert result.returncode == 0, result.stderr
        assert stubborn.proc.wait(5) == -signal.SIGKILL
        assert "SIGKILL" in (state_dir / "gateway.log").read_text()
        assert not (state_dir / "gateway.json").exists()
    finally:
        stubborn.close()


def test_status_of_a_stale_state_file_is_not_running(env: dict[str, str], state_dir: Path) -> None:
    stale = FakeGateway(state_dir, mini_llm.__version__)
    stale.close()  # the state file now names a dead pid
    result = run_cli("status", env=env)
    assert result.returncode == 3
    assert f"pid {stale.state.pid}" in result.stdout
    assert json.loads(run_cli("status", "--json", env=env).stdout)["running"] is False


def test_logs_follow_until_interrupted(env: dict[str, str], state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    log = state_dir / "gateway.log"
    log.write_text("first line\n")
    follower = subprocess.Popen(
        [sys.executable, "-m", "mini_llm", "logs", "-f"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert follower.stdout is not None
    stdout = follower.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        # bounded waits: a line that never comes fails the test instead of hanging it
        assert lines.get(timeout=15) == "first line\n"
        with log.open("a") as f:
            f.write("appended later\n")
        assert lines.get(timeout=15) == "appended later\n"
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 0
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.wait(10)
        reader.join(10)
        stdout.close()
        if follower.stderr is not None:
            follower.stderr.close()


def test_serve_with_a_state_file_publishes_after_binding_and_cleans_up(
    env: dict[str, str], tmp_path: Path
) -> None:
    state_file = tmp_path / "elsewhere" / "gateway.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mini_llm", "serve", "--state-file", str(state_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = wait_for(lambda: read_state(state_file), 15, "the state file")
        assert state.pid == proc.pid
        assert state.port != 0
        from .harness import http

        status, _, body = http("GET", state.url + "/health", timeout=5)
        assert status == 200
        assert json.loads(body)["pid"] == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert not state_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_keys_never_appear_on_the_gateway_command_line(
    env: dict[str, str], state_dir: Path
) -> None:
    key = "sk-cli-secret-never-in-argv-9876"
    keyed = {**env, "OPENAI_API_KEY": key}
    assert run_cli("start", env=keyed).returncode == 0
    state = read_state(state_dir / "gateway.json")
    assert state is not None
    assert key.encode() not in Path(f"/proc/{state.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{state.pid}/environ").read_bytes().split(b"\0")
    assert f"OPENAI_API_KEY={key}".encode() in environ
    assert run_cli("stop", env=env).returncode == 0


# issue #9


def test_restart_keeps_the_configuration_and_names_a_missing_key(
    env: dict[str, str], state_dir: Path, tmp_path: Path
) -> None:
    key = "sk-restart-secret-never-shown-4321"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mini-llm.toml").write_text('[aliases]\nfast = "mock/echo"\n')
    keyed = {**env, "OPENAI_API_KEY": key}
    started = run_cli("start", "--config", "cfg/mini-llm.toml", env=keyed, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert "fast" in run_cli("models", env=env).stdout
    published = (state_dir / "gateway.json").read_text()
    assert key not in published
    assert json.loads(published)["key_env"] == ["OPENAI_API_KEY"]

    # from elsewhere, without the key: the same configuration, and the key's variable named
    restarted = run_cli("restart", env=env)
    assert restarted.returncode == 0, restarted.stderr
    assert "restarted" in restarted.stdout
    assert "OPENAI_API_KEY" in restarted.stderr
    assert key not in restarted.stderr + restarted.stdout
    models = run_cli("models", env=env).stdout
    assert "fast" in models, models
    assert json.loads((state_dir / "gateway.json").read_text())["key_env"] == []
    assert run_cli("stop", env=env).returncode == 0


def test_restart_with_nothing_running_says_it_started_one(
    env: dict[str, str], state_dir: Path
) -> None:
    result = run_cli("restart", env=env)
    assert result.returncode == 0, result.stderr
    state = read_state(state_dir / "gateway.json")
    assert state is not None
    assert result.stdout.strip() == (
        f"no mini-llm gateway was running; started one at {state.url} (pid {state.pid})"
    )
    assert run_cli("stop", env=env).returncode == 0


def _serve(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mini_llm", "serve", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_foreground_serve_is_the_shared_gateway(env: dict[str, str], state_dir: Path) -> None:
    proc = _serve(env)
    try:
        state = wait_for(lambda: read_state(state_dir / "gateway.json"), 15, "the state file")
        assert state.pid == proc.pid
        status = json.loads(run_cli("status", "--json", env=env).stdout)
        assert (status["running"], status["pid"]) == (True, proc.pid)
        # the CLI and the SDK use it rather than starting a second one
        chat = run_cli("chat", "found it", "-m", "mock/echo", env=env)
        assert (chat.returncode, chat.stdout, chat.stderr) == (0, "found it\n", "")
        second = run_cli("serve", env=env)
        assert second.returncode == 1
        assert f"already runs at {state.url} (pid {proc.pid}" in second.stderr
        private = _serve(env, "--no-state")
        try:
            assert private.wait(3) is None
        except subprocess.TimeoutExpired:
            pass  # still serving: a private gateway may run beside the shared one
        finally:
            private.terminate()
            private.communicate(timeout=15)
        assert read_state(state_dir / "gateway.json") == state
        assert run_cli("stop", env=env).returncode == 0
        assert proc.wait(15) == 0
        assert not (state_dir / "gateway.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_stop_grace_bounds_the_wait(env: dict[str, str], state_dir: Path) -> None:
    # the gateway says it drains for 30 s and ignores SIGTERM: --grace 1 still kills it in 1 s
    stubborn = FakeGateway(state_dir, mini_llm.__version__, ignore_sigterm=True)
    try:
        began = time.monotonic()
        result = run_cli("stop", "--grace", "1", env=env, timeout=20)
        assert result.returncode == 0, result.stderr
        assert stubborn.proc.wait(5) == -signal.SIGKILL
        assert time.monotonic() - began < 5
    finally:
        stubborn.close()
    assert "35 s unless configured" in " ".join(run_cli("stop", "--help", env=env).stdout.split())


def test_start_errors_are_shown_as_printed(
    env: dict[str, str], state_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[timeouts]\nconnect = -1\n[server]\nbogus = 1\n")
    result = run_cli("start", "--config", str(bad), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "mini-llm: invalid configuration:"
    assert len(lines) == 3
    problems = sorted(lines[1:])
    assert problems[0].startswith("  - [server]")
    assert problems[1].startswith("  - [timeouts] connect")
    assert " | " not in result.stderr
    assert result.stderr.count("mini-llm:") == 1
    assert gateway_pids(state_dir) == []


def test_json_failures_are_json(env: dict[str, str], state_dir: Path, tmp_path: Path) -> None:
    def error_of(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
        assert result.returncode != 0
        assert result.stderr == ""
        error = json.loads(result.stdout)["error"]
        assert isinstance(error, dict)
        assert error["message"]
        return error

    bad = tmp_path / "bad.toml"
    bad.write_text("[timeouts]\nconnect = -1\n")
    invalid = run_cli("start", "--json", "--config", str(bad), env=env)
    assert invalid.returncode == 2
    assert error_of(invalid)["type"] == "invalid_configuration"

    nowhere = f"http://127.0.0.1:{free_port()}"
    for command in ("chat", "models"):
        extra = ["x", "-m", "mock/echo"] if command == "chat" else []
        failed = run_cli(command, *extra, "--url", nowhere, "--json", env=env)
        assert failed.returncode == 1
        assert error_of(failed)["type"] == "gateway_unreachable"

    assert run_cli("start", env=env).returncode == 0
    unknown = run_cli("chat", "x", "-m", "mock/nope", "--json", env=env)
    error = error_of(unknown)
    assert (error["type"], error["status"], error["code"]) == ("api_error", 404, "model_not_found")
    empty = run_cli("chat", "-m", "mock/echo", "--json", env=env, stdin="")
    assert empty.returncode == 2
    assert error_of(empty)["type"] == "usage_error"
    assert run_cli("stop", env=env).returncode == 0


def test_chat_prompt_from_stdin(env: dict[str, str], state_dir: Path) -> None:
    echoed = run_cli("chat", "-m", "mock/echo", "--json", env=env, stdin="line one\nline two\n")
    assert echoed.returncode == 0, echoed.stderr
    content = json.loads(echoed.stdout)["choices"][0]["message"]["content"]
    assert content == "line one\nline two"  # one trailing newline dropped, no more
    for empty in ("", "\n"):
        result = run_cli("chat", "-m", "mock/echo", env=env, stdin=empty)
        assert result.returncode == 2
        assert "the prompt is empty" in result.stderr
    assert run_cli("stop", env=env).returncode == 0


def test_chat_at_a_terminal_says_it_reads_stdin(env: dict[str, str], state_dir: Path) -> None:
    import pty

    assert run_cli("start", env=env).returncode == 0
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mini_llm", "chat", "-m", "mock/echo"],
        env=env,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(slave)
    try:
        assert proc.stderr is not None
        # bounded: a chat that waits silently fails the test instead of hanging it
        readable, _, _ = select.select([proc.stderr], [], [], 15)
        assert readable, "no hint on stderr"
        hint = proc.stderr.readline()
        assert "reading the prompt from standard input" in hint
        assert "Ctrl-D" in hint
        os.write(master, b"from a terminal\n\x04")
        out, _ = proc.communicate(timeout=20)
        assert "from a terminal" in out
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(master)
    assert run_cli("stop", env=env).returncode == 0


def test_cli_usage_is_checked_and_explained(env: dict[str, str]) -> None:
    negative = run_cli("logs", "-n", "-3", env=env)
    assert negative.returncode == 2
    assert "0 or more" in negative.stderr
    chat_help = " ".join(run_cli("chat", "--help", env=env).stdout.split())
    assert "sampling temperature" in chat_help
    assert "at most this many tokens" in chat_help
    assert "seconds to wait for the gateway's answer (default 600)" in chat_help
    start_help = " ".join(run_cli("start", "--help", env=env).stdout.split())
    assert "seconds to wait for it to be ready (default 20)" in start_help
    nowhere = f"http://127.0.0.1:{free_port()}"
    unreachable = one_line_error(run_cli("models", "--url", nowhere, env=env))
    assert "auto=True" not in unreachable
    assert "`mini-llm start`" in unreachable


def test_a_running_gateway_that_differs_is_named(
    env: dict[str, str], state_dir: Path, tmp_path: Path
) -> None:
    first = tmp_path / "first.toml"
    first.write_text('[aliases]\nfast = "mock/echo"\n')
    other = tmp_path / "other.toml"
    other.write_text('[aliases]\nslow = "mock/echo"\n')
    assert run_cli("start", "--config", str(first), env=env).returncode == 0
    same = run_cli("start", "--config", str(first), env=env)
    assert (same.returncode, same.stderr) == (0, "")

    differs = run_cli("start", "--config", str(other), env=env)
    assert differs.returncode == 0
    assert "already running" in differs.stdout
    assert differs.stderr.startswith("mini-llm: warning: ")
    assert "aliases" in differs.stderr
    assert f"mini-llm restart --config {other}" in differs.stderr
    state = read_state(state_dir / "gateway.json")
    assert state is not None
    port = run_cli("start", "--port", str(free_port()), "--config", str(first), env=env)
    assert f"port (it listens on {state.port}" in port.stderr

    bad = tmp_path / "bad.toml"
    bad.write_text("[timeouts]\nconnect = -1\n")
    invalid = run_cli("start", "--config", str(bad), env=env)
    assert invalid.returncode == 2
    assert "[timeouts] connect" in invalid.stderr
    assert run_cli("stop", env=env).returncode == 0
