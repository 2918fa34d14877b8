"""Gemini CLI (npm `@google/gemini-cli`, installed by `scripts/agents-gemini` into .tools/) run as a
user would, non-interactively (`gemini -p`), its base-URL variable (`GOOGLE_GEMINI_BASE_URL`)
pointed at the gateway: on the offline mock provider, and on a Gemini provider (the mock Gemini
upstream, pass-through), where the model calls one of the CLI's tools and answers with its
result. Skipped, loudly, when the CLI is not installed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from .conftest import GatewayFactory
from .upstreams.gemini_upstream import GeminiUpstream

ROOT = Path(__file__).resolve().parent.parent
GEMINI = ROOT / ".tools" / "gemini-cli" / "node_modules" / ".bin" / "gemini"
PROMPT = "hello from the gemini cli"

pytestmark = pytest.mark.skipif(
    not GEMINI.exists(),
    reason="!!! Gemini CLI is not installed: run scripts/agents-gemini (needs npm) !!!",
)


def run_gemini(base_url: str, model: str, home: Path) -> subprocess.CompletedProcess[str]:
    settings = home / ".gemini" / "settings.json"
    settings.parent.mkdir(parents=True)
    auth = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
    settings.write_text(json.dumps(auth))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "GEMINI_API_KEY": "client-key-never-forwarded",
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [str(GEMINI), "-p", PROMPT, "-m", model],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_gemini_cli_on_the_mock_provider(make_gateway: GatewayFactory, tmp_path: Path) -> None:
    # the CLI's own side calls name Gemini models: they go to the mock too
    aliases = {
        m: "mock/echo" for m in ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.5-flash-lite")
    }
    gateway = make_gateway({"MINI_LLM_MODEL_ALIASES": json.dumps(aliases)})
    done = run_gemini(gateway.url, "mock/echo", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith(PROMPT)  # mock/echo says the prompt back


def test_gemini_cli_on_a_gemini_provider(
    make_gateway: GatewayFactory,
    gemini_upstream: GeminiUpstream,
    gemini_upstream_url: str,
    tmp_path: Path,
) -> None:
    gateway = make_gateway(
        {"GEMINI_BASE_URL": gemini_upstream_url, "GEMINI_API_KEY": "gemini-upstream-key-5555"}
    )
    done = run_gemini(gateway.url, "gemini-2.5-flash", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # the upstream's scenario calls the first tool offered: the CLI ran it and sent the
    # result back through the gateway, and the model's answer quotes it
    assert done.stdout.startswith("tool said: ")
    last = gemini_upstream.requests[-1].body["contents"][-1]
    assert any("functionResponse" in part for part in last["parts"])
    assert PROMPT in json.dumps(gemini_upstream.requests[0].body)
    for sent in gemini_upstream.requests:
        assert sent.headers["x-goog-api-key"] == "gemini-upstream-key-5555"
