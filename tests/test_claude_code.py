"""Claude Code itself, headless (`claude -p`), pointed at the gateway (`ANTHROPIC_BASE_URL`),
on a Claude model with thinking on, an OpenAI-format model and a Gemini model, each behind a
mock upstream speaking its provider's wire format: a plain answer, and a real tool loop (the
mock's scripted agent asks Claude Code's `Read` tool for a file holding a random token; the
final answer must quote it).

The CLI is installed by `scripts/agents` (called by `scripts/test`) into `.cache/agents`;
without it these tests skip, saying why. Each run is loopback only, in a temporary HOME, with
non-essential traffic off, and bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import GatewayFactory
from .harness import RunningApp, http
from .upstreams.agent_script import ANSWER_PREFIX, PLAIN_PREFIX
from .upstreams.anthropic_upstream import AnthropicUpstream, sign
from .upstreams.gemini_upstream import GeminiUpstream
from .upstreams.openai_upstream import OpenAIUpstream

ROOT = Path(__file__).resolve().parent.parent
CLAUDE = ROOT / ".cache" / "agents" / "node_modules" / ".bin" / "claude"
RUN_TIMEOUT = 60

# Claude Code sends a Claude model thinking with a budget and the betas it needs; any other
# name (a GPT, a Gemini) gets adaptive thinking, an effort, and mid-conversation system turns.
MODELS = {
    "anthropic": "claude-sonnet-4-5",
    "openai": "openai/agent-reader",
    "gemini": "gemini/agent-reader",
}


def _installed() -> str | None:
    if not CLAUDE.exists():
        return None
    try:
        done = subprocess.run(
            [str(CLAUDE), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


VERSION = _installed()
pytestmark = pytest.mark.skipif(
    VERSION is None,
    reason=(
        f"CLAUDE CODE NOT INSTALLED at {CLAUDE}: run `bash scripts/agents` (needs npm and the "
        "npm registry); the Claude Code tests did not run"
    ),
)


@dataclass
class Agents:
    gateway: RunningApp
    anthropic: AnthropicUpstream
    openai: OpenAIUpstream
    gemini: GeminiUpstream
    tmp: Path

    def claude(self, provider: str, prompt: str) -> tuple[str, float]:
        """`claude -p prompt` against the gateway: its output, and how long it took."""
        home = self.tmp / "home"
        work = self.tmp / "work"
        home.mkdir(exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "ANTHROPIC_BASE_URL": self.gateway.url,
            "ANTHROPIC_API_KEY": "sk-ant-dummy-not-a-key",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_BUG_COMMAND": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        args = [str(CLAUDE), "-p", prompt, "--model", MODELS[provider]]
        args += ["--allowedTools", "Read", "--max-turns", "4", "--output-format", "text"]
        started = time.monotonic()
        done = subprocess.run(
            args,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        took = time.monotonic() - started
        assert done.returncode == 0, f"claude exited {done.returncode}: {done.stderr[-2000:]}"
        return done.stdout, took


@pytest.fixture
def agents(
    tmp_path: Path,
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    anthropic_upstream: AnthropicUpstream,
    anthropic_upstream_url: str,
    gemini_upstream: GeminiUpstream,
    gemini_upstream_url: str,
) -> Agents:
    gateway = make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-agents-openai-1111",
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-agents-3333",
            "GEMINI_BASE_URL": gemini_upstream_url,
            "GEMINI_API_KEY": "gemini-agents-4444",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
            "MINI_LLM_MODEL_ALIASES": json.dumps({"claude-sonnet-4-5": "anthropic/agent-reader"}),
        }
    )
    (tmp_path / "work").mkdir()
    return Agents(gateway, anthropic_upstream, openai_upstream, gemini_upstream, tmp_path)


@pytest.fixture(params=sorted(MODELS))
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _upstream_requests(agents: Agents, provider: str) -> list[Any]:
    upstream: dict[str, AnthropicUpstream | OpenAIUpstream | GeminiUpstream] = {
        "anthropic": agents.anthropic,
        "openai": agents.openai,
        "gemini": agents.gemini,
    }
    return [r.body for r in upstream[provider].requests]


def test_plain_answer(agents: Agents, provider: str) -> None:
    word = "plain-" + secrets.token_hex(6)
    out, took = agents.claude(provider, f"Reply with the word {word}")
    assert PLAIN_PREFIX in out and word in out
    assert took < RUN_TIMEOUT
    assert len(_upstream_requests(agents, provider)) >= 1  # it went through the gateway


def test_tool_loop_reads_a_file(agents: Agents, provider: str) -> None:
    token = "tok-" + secrets.token_hex(12)
    secret = agents.tmp / "work" / "secret.txt"
    secret.write_text(token + "\n")
    out, _ = agents.claude(provider, f"Read the file {secret} and tell me what it holds.")
    assert ANSWER_PREFIX in out
    assert token in out  # only Claude Code's Read tool could have found it
    bodies = _upstream_requests(agents, provider)
    assert len(bodies) >= 2  # the call, then the answer to its result
    if provider == "anthropic":
        # Claude Code sent the signed thinking block back unchanged (the mock checks signatures
        # and that the tool-calling turn still starts with its thinking)
        last = bodies[-1]
        assert isinstance(last, dict) and last["thinking"]["type"] in ("enabled", "adaptive")
        turns = [m for m in last["messages"] if m["role"] == "assistant"]
        first = turns[-1]["content"][0]
        assert first["type"] == "thinking" and first["signature"] == sign(first["thinking"])


def test_the_base_url_probe_is_answered(agents: Agents) -> None:
    # Claude Code probes HEAD / before its first request
    for method in ("HEAD", "GET"):
        status, _, _ = http(method, agents.gateway.url + "/")
        assert status == 200


def test_cli_is_the_pinned_version() -> None:
    pinned = (ROOT / "scripts" / "agents").read_text()
    assert VERSION is not None and f"CLAUDE_CODE_VERSION={VERSION.split()[0]}" in pinned
