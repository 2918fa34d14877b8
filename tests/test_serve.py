"""`mini-llm serve` as a real process: binding, port retries, signals, configuration errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mini_llm.gateway.server import BindError, bind_socket

from .harness import Served, clean_env, gateway_settings, http, start_serve


@pytest.fixture
def served() -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait(5)
        if s.proc.stdout is not None:
            s.proc.stdout.close()


def test_serve_answers_and_stops_cleanly_on_sigterm(served: list[Served]) -> None:
    s = start_serve("--port", "0")
    served.append(s)
    status, _, body = http(
        "POST",
        s.url + "/v1/chat/completions",
        json.dumps(
            {"model": "mock/echo", "messages": [{"role": "user", "content": "hey"}]}
        ).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == "hey"
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(10) == 0
    output = "".join(s.lines) + (s.proc.stdout.read() if s.proc.stdout else "")
    assert "Traceback" not in output


def test_sigint_stops_cleanly(served: list[Served]) -> None:
    s = start_serve("--port", "0")
    served.append(s)
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(10) == 0


def test_a_chosen_port_is_bound_or_the_start_fails(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        config.write_text(f"[server]\nport = {taken}\n")
        for args, env in (
            (["--port", str(taken)], clean_env()),
            ([], clean_env(MINI_LLM_PORT=str(taken))),
            (["--config", str(config)], clean_env()),
        ):
            result = subprocess.run(
                [sys.executable, "-m", "mini_llm", "serve", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=20,
            )
            assert result.returncode == 2, (args, result.stderr)
            assert (
                f"mini-llm: port {taken} on 127.0.0.1 is in use; choose another with --port "
                "or MINI_LLM_PORT\n"
            ) in result.stderr
            assert "Traceback" not in result.stderr


def test_only_the_default_port_moves_to_the_next_ones() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        default = replace(gateway_settings({"MINI_LLM_PORT_RETRIES": "5"}), port=taken)
        assert not default.port_explicit
        with bind_socket(default.host, default.port, default.bind_retries) as sock:
            assert taken < sock.getsockname()[1] <= taken + 5
        chosen = gateway_settings({"MINI_LLM_PORT": str(taken)})
        with pytest.raises(BindError, match=f"^port {taken} on 127.0.0.1 is in use;"):
            bind_socket(chosen.host, chosen.port, chosen.bind_retries)


def test_bad_configuration_exits_2_listing_every_problem(tmp_path: Path) -> None:
    env = clean_env(
        MINI_LLM_PORT="70000",
        MINI_LLM_MODEL_ALIASES='{"x": "nowhere/y"}',
        OPENAI_BASE_URL="not-a-url",
    )
    result = subprocess.run(
        [sys.executable, "-m", "mini_llm", "serve"],
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for fragment in ("MINI_LLM_PORT", "alias 'x'", "OPENAI_BASE_URL"):
        assert fragment in result.stderr


def test_config_check_masks_keys_and_fails_on_problems(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text('[aliases]\nfast = "openai/gpt-4o-mini"\n')
    env = clean_env(OPENAI_API_KEYS="sk-very-secret-0001,sk-very-secret-0002")
    result = subprocess.run(
        [sys.executable, "-m", "mini_llm", "config", "check", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["providers"]["openai"]["keys"] == ["…0001", "…0002"]
    assert shown["aliases"] == {"fast": "openai/gpt-4o-mini"}
    assert "very-secret" not in result.stdout + result.stderr

    config.write_text('[aliases]\nfast = "nowhere/x"\n')
    result = subprocess.run(
        [sys.executable, "-m", "mini_llm", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=20,
    )
    assert result.returncode == 2
    assert "alias 'fast'" in result.stderr


def test_listening_beyond_loopback_warns_that_there_is_no_auth(served: list[Served]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mini_llm",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--allow-unauthenticated",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    served.append(Served(proc, "http://0.0.0.0:0", []))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if " listening on http" in line:
            break
    output = "".join(lines)
    assert "WARNING: listening on 0.0.0.0" in output
    assert "anyone who reaches this port can spend your provider keys" in output
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0

    quiet = start_serve("--host", "127.0.0.1", "--port", "0")
    served.append(quiet)
    assert "WARNING" not in "".join(quiet.lines)
