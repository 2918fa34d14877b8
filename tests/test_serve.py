"""`mini-llm serve` as a real process: binding, port retries, signals, configuration errors."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
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


def test_taken_port_moves_to_the_next_one(served: list[Served]) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        s = start_serve("--port", str(taken), env=clean_env(MINI_LLM_PORT_RETRIES="5"))
        served.append(s)
        assert taken < s.port <= taken + 5
        assert f"port {taken} is in use" in "".join(s.lines)
        status, _, _ = http("GET", s.url + "/health")
        assert status == 200


def test_no_free_port_is_a_clear_error() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mini_llm", "serve", "--port", str(taken)],
            capture_output=True,
            text=True,
            env=clean_env(MINI_LLM_PORT_RETRIES="0"),
            timeout=20,
        )
    assert result.returncode == 1
    assert f"port {taken}" in result.stderr
    assert "in use" in result.stderr
    assert "Traceback" not in result.stderr


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
        [sys.executable, "-m", "mini_llm", "config", "check", "--config", str(config)],
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
