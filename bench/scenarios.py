"""The benchmark's scenarios: the requests, what each is compared to, and the gateway features
each switches on (`bench/run.py` measures them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from harness import Request

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Say hello to the benchmark in twenty tokens."},
]
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-bench"}


def _openai(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": MESSAGES, "max_tokens": 64}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def _responses(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "instructions": MESSAGES[0]["content"],
        "input": MESSAGES[1:],
        "max_output_tokens": 64,
        "store": False,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def _anthropic(model: str, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "system": MESSAGES[0]["content"],
        "messages": MESSAGES[1:],
        "max_tokens": 64,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


@dataclass(frozen=True)
class Scenario:
    """One row of the benchmark: what the client sends to the gateway.

    `direct` is the same request as the upstream receives it, sent straight to the mock (the
    baseline of the added latency); `floor` names the scenario whose floor-proxy figures this
    one is compared to (pass-through scenarios are measured through the floor themselves);
    `env` switches gateway features on for this scenario only.
    """

    name: str
    title: str
    request: Request
    stream: bool
    direct: Request | None
    floor: str | None
    passthrough: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    access: str | None = None
    """"memory" or "redis": auth on, and the request carries a gateway key with generous rpm
    and tpm, created through the admin API before measuring ("redis": counters in a
    redis-server the bench starts, skipped when there is none)."""


def _req(path: str, body: bytes, headers: dict[str, str] | None = None) -> Request:
    return Request(path, body, headers or {})


CHAT = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
RESPONSES_PATH = "/v1/responses"
OPENAI_MODEL = "openai/gpt-4o-mini"
CLAUDE_MODEL = "anthropic/claude-bench"

# the usage ledger (SQLite in the data directory), /metrics and the access log (JSON lines at
# info): the base scenarios run with the first two off, to stay comparable with earlier runs
OBSERVED = {
    "MINI_LLM_USAGE": "true",
    "MINI_LLM_METRICS": "true",
    "MINI_LLM_LOG_LEVEL": "info",
    "MINI_LLM_LOG_FORMAT": "json",
}

BENCH_MASTER_KEY = "bench-master-key-0123456789abcdef"

SCENARIOS: list[Scenario] = [
    Scenario(
        "openai",
        "OpenAI pass-through",
        _req(CHAT, _openai(OPENAI_MODEL, False)),
        False,
        direct=_req(CHAT, _openai("gpt-4o-mini", False)),
        floor="openai",
    ),
    Scenario(
        "openai-stream",
        "OpenAI pass-through, stream",
        _req(CHAT, _openai(OPENAI_MODEL, True)),
        True,
        direct=_req(CHAT, _openai("gpt-4o-mini", True)),
        floor="openai-stream",
    ),
    Scenario(
        "openai-to-anthropic",
        "OpenAI client → Anthropic upstream",
        _req(CHAT, _openai(CLAUDE_MODEL, False)),
        False,
        direct=_req(MESSAGES_PATH, _anthropic("claude-bench", False), ANTHROPIC_HEADERS),
        floor="openai",
        passthrough="openai",
    ),
    Scenario(
        "openai-to-anthropic-stream",
        "OpenAI client → Anthropic upstream, stream",
        _req(CHAT, _openai(CLAUDE_MODEL, True)),
        True,
        direct=_req(MESSAGES_PATH, _anthropic("claude-bench", True), ANTHROPIC_HEADERS),
        floor="openai-stream",
        passthrough="openai-stream",
    ),
    Scenario(
        "anthropic-to-openai",
        "Anthropic client → OpenAI upstream",
        _req(MESSAGES_PATH, _anthropic(OPENAI_MODEL, False), ANTHROPIC_HEADERS),
        False,
        direct=_req(CHAT, _openai("gpt-4o-mini", False)),
        floor="openai",
        passthrough="openai",
    ),
    Scenario(
        "anthropic-to-openai-stream",
        "Anthropic client → OpenAI upstream, stream",
        _req(MESSAGES_PATH, _anthropic(OPENAI_MODEL, True), ANTHROPIC_HEADERS),
        True,
        direct=_req(CHAT, _openai("gpt-4o-mini", True)),
        floor="openai-stream",
        passthrough="openai-stream",
    ),
    Scenario(
        "responses",
        "Responses API pass-through (OpenAI's /responses)",
        _req(RESPONSES_PATH, _responses(OPENAI_MODEL, False)),
        False,
        direct=_req(RESPONSES_PATH, _responses("gpt-4o-mini", False)),
        floor="openai",
        passthrough="openai",
    ),
    Scenario(
        "responses-stream",
        "Responses API pass-through, stream",
        _req(RESPONSES_PATH, _responses(OPENAI_MODEL, True)),
        True,
        direct=_req(RESPONSES_PATH, _responses("gpt-4o-mini", True)),
        floor="openai-stream",
        passthrough="openai-stream",
    ),
    Scenario(
        "responses-to-anthropic",
        "Responses client → Anthropic upstream",
        _req(RESPONSES_PATH, _responses(CLAUDE_MODEL, False)),
        False,
        direct=_req(MESSAGES_PATH, _anthropic("claude-bench", False), ANTHROPIC_HEADERS),
        floor="openai",
        passthrough="openai",
    ),
    Scenario(
        "responses-to-anthropic-stream",
        "Responses client → Anthropic upstream, stream",
        _req(RESPONSES_PATH, _responses(CLAUDE_MODEL, True)),
        True,
        direct=_req(MESSAGES_PATH, _anthropic("claude-bench", True), ANTHROPIC_HEADERS),
        floor="openai-stream",
        passthrough="openai-stream",
    ),
    Scenario(
        "cache-hit",
        "response cache hit (memory; no upstream I/O)",
        _req(CHAT, _openai(OPENAI_MODEL, False)),
        False,
        direct=None,
        floor="openai",
        env={"MINI_LLM_CACHE": "memory"},
    ),
    Scenario(
        "cache-hit-stream",
        "response cache hit, replayed as a stream",
        _req(CHAT, _openai(OPENAI_MODEL, True)),
        True,
        direct=None,
        floor="openai-stream",
        env={"MINI_LLM_CACHE": "memory"},
    ),
    Scenario(
        "openai-observed",
        "OpenAI pass-through, usage + metrics + access log on",
        _req(CHAT, _openai(OPENAI_MODEL, False)),
        False,
        direct=_req(CHAT, _openai("gpt-4o-mini", False)),
        floor="openai",
        passthrough="openai",
        env=OBSERVED,
    ),
    Scenario(
        "openai-stream-observed",
        "OpenAI pass-through, stream, usage + metrics + access log on",
        _req(CHAT, _openai(OPENAI_MODEL, True)),
        True,
        direct=_req(CHAT, _openai("gpt-4o-mini", True)),
        floor="openai-stream",
        passthrough="openai-stream",
        env=OBSERVED,
    ),
    Scenario(
        "openai-aiohttp-client",
        'OpenAI pass-through, aiohttp\'s upstream client (http_client = "aiohttp")',
        _req(CHAT, _openai(OPENAI_MODEL, False)),
        False,
        direct=_req(CHAT, _openai("gpt-4o-mini", False)),
        floor="openai",
        passthrough="openai",
        env={"MINI_LLM_HTTP_CLIENT": "aiohttp"},
    ),
    Scenario(
        "openai-stream-aiohttp-client",
        "OpenAI pass-through, stream, aiohttp's upstream client",
        _req(CHAT, _openai(OPENAI_MODEL, True)),
        True,
        direct=_req(CHAT, _openai("gpt-4o-mini", True)),
        floor="openai-stream",
        passthrough="openai-stream",
        env={"MINI_LLM_HTTP_CLIENT": "aiohttp"},
    ),
    Scenario(
        "mock-provider",
        "built-in mock provider (no upstream)",
        _req(CHAT, _openai("mock/echo", False)),
        False,
        direct=None,
        floor="openai",
    ),
    Scenario(
        "openai-auth-limits",
        "OpenAI pass-through, auth + limits on (a gateway key with rpm and tpm; memory)",
        _req(CHAT, _openai(OPENAI_MODEL, False)),
        False,
        direct=_req(CHAT, _openai("gpt-4o-mini", False)),
        floor="openai",
        passthrough="openai",
        env={"MINI_LLM_MASTER_KEY": BENCH_MASTER_KEY},
        access="memory",
    ),
    Scenario(
        "openai-auth-limits-redis",
        "OpenAI pass-through, auth + limits on, counters in Redis",
        _req(CHAT, _openai(OPENAI_MODEL, False)),
        False,
        direct=_req(CHAT, _openai("gpt-4o-mini", False)),
        floor="openai",
        passthrough="openai",
        env={"MINI_LLM_MASTER_KEY": BENCH_MASTER_KEY},
        access="redis",
    ),
]
