"""Codex CLI as a user runs it: `codex exec` with a model provider pointing at the gateway
(`wire_api = "responses"`, in a temporary CODEX_HOME), asked to read a file. The model behind the
gateway is the mock Anthropic upstream, scripted: it calls the shell tool Codex offers to `cat`
the file, then answers with what the tool returned. Codex runs its tool loop: the file's
content must come back in its final message.

Codex is installed by `scripts/agents-codex` (called from `scripts/test`) into .tools/codex;
without it the test skips, loudly."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from .conftest import GatewayFactory
from .upstreams import openai_upstream as up
from .upstreams.anthropic_upstream import AnthropicUpstream, message_json
from .upstreams.scenario import Reply

CODEX = (
    Path(__file__).resolve().parent.parent / ".tools" / "codex" / "node_modules" / ".bin" / "codex"
)
SECRET = "the-owl-flies-at-midnight"


def _shell_call(tools: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    """A tool_use block calling the shell tool Codex offered, with `cat secret.txt`."""
    names = [t["name"] for t in tools]
    name = next(n for n in ("shell", "exec_command", "shell_command", "local_shell") if n in names)
    schema = next(t for t in tools if t["name"] == name).get("input_schema") or {}
    props = schema.get("properties") or {}
    command: Any = "cat secret.txt"
    if (props.get("command") or {}).get("type") == "array":
        command = ["bash", "-lc", "cat secret.txt"]
    args: dict[str, Any] = {"cmd" if "cmd" in props else "command": command}
    if "workdir" in props:
        args["workdir"] = str(workdir)
    return {"type": "tool_use", "id": "toolu_codex_1", "name": name, "input": args}


def _scripted(seen: list[dict[str, Any]], workdir: Path) -> Any:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        seen.append(body)
        last = body["messages"][-1]["content"]
        results = [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            content = results[0].get("content")
            text = content if isinstance(content, str) else json.dumps(content)
            message = message_json(body, Reply(text=f"The file says: {text}"))
        else:
            message = message_json(body, Reply())
            message["content"] = [_shell_call(body.get("tools") or [], workdir)]
            message["stop_reason"] = "tool_use"
        if not body.get("stream"):
            return web.json_response(message)
        from .upstreams.anthropic_upstream import stream_events

        events = stream_events(body, Reply(text=message["content"][0].get("text", "")))
        if not results:
            events = _tool_stream(body, message["content"][0])
        return await up.send_stream(request, events)

    return reply


def _tool_stream(body: dict[str, Any], block: dict[str, Any]) -> list[bytes]:
    def event(name: str, payload: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()

    start = message_json(body, Reply())
    start["content"], start["stop_reason"] = [], None
    return [
        event("message_start", {"message": start}),
        event("content_block_start", {"index": 0, "content_block": {**block, "input": {}}}),
        event(
            "content_block_delta",
            {
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": json.dumps(block["input"])},
            },
        ),
        event("content_block_stop", {"index": 0}),
        event(
            "message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}
        ),
        event("message_stop", {}),
    ]


def test_codex_exec_reads_a_file_through_the_gateway(
    tmp_path: Path,
    make_gateway: GatewayFactory,
    anthropic_upstream: AnthropicUpstream,
    anthropic_upstream_url: str,
) -> None:
    if not CODEX.exists():
        # listed by -ra in every run's summary (warnings are errors in this suite)
        pytest.skip("CODEX CLI NOT INSTALLED, ITS TEST DID NOT RUN: run scripts/agents-codex")
    gateway = make_gateway(
        {
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-codex-3333",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
        }
    )
    seen: list[dict[str, Any]] = []
    work = tmp_path / "work"
    anthropic_upstream.push(*[_scripted(seen, work)] * 6)
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "anthropic/claude-sonnet-4-5"\n'
        'model_provider = "minillm"\n'
        'approval_policy = "never"\n'
        'sandbox_mode = "danger-full-access"\n'
        # Codex offers a hosted web_search tool and a `namespace` of sub-agent tools: neither
        # has a chat equivalent, so they are turned off for a translated provider
        'web_search = "disabled"\n'
        "[features]\n"
        "multi_agent = false\n"
        "[model_providers.minillm]\n"
        'name = "mini-llm"\n'
        f'base_url = "{gateway.url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "MINI_LLM_TEST_KEY"\n'
    )
    work.mkdir()
    (work / "secret.txt").write_text(SECRET + "\n")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "MINI_LLM_TEST_KEY": "client-key",
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "Read secret.txt and tell me what it says."],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert len(seen) >= 2, output[-4000:]
    assert "The file says: " in output and SECRET in output, output[-4000:]
