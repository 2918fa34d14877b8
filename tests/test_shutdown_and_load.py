"""SIGTERM drains in-flight streams; a bounded load run with injected upstream failures."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from .conftest import GatewayFactory
from .harness import LoopThread, RunningApp, clean_env, start_serve
from .upstreams import openai_upstream as up
from .upstreams.openai_upstream import OpenAIUpstream

USER = [{"role": "user", "content": "hello"}]


@pytest.fixture
def slow_upstream(loop_thread: LoopThread) -> Iterator[tuple[OpenAIUpstream, RunningApp]]:
    upstream = OpenAIUpstream()
    upstream.default = up.stream(["tick"] * 15, delay=0.1)
    running = RunningApp(loop_thread, upstream.app())
    yield upstream, running
    running.stop()


def test_sigterm_lets_a_running_stream_finish(
    slow_upstream: tuple[OpenAIUpstream, RunningApp],
) -> None:
    _, server = slow_upstream
    served = start_serve(
        "--port",
        "0",
        env=clean_env(
            OPENAI_BASE_URL=server.url + "/v1",
            OPENAI_API_KEY="sk-test-drain-0001",
            MINI_LLM_SHUTDOWN_GRACE="10",
        ),
    )
    try:

        async def scenario() -> tuple[bytes, float, bool]:
            async with (
                aiohttp.ClientSession() as session,
                session.post(
                    served.url + "/v1/chat/completions",
                    json={"model": "gpt-4o", "messages": USER, "stream": True},
                ) as response,
            ):
                assert response.status == 200
                first = await response.content.readany()
                started = time.monotonic()
                served.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                # no new connections are taken while draining
                refused = False
                try:
                    async with aiohttp.ClientSession() as other:
                        await other.get(served.url + "/health")
                except aiohttp.ClientConnectionError:
                    refused = True
                rest = await response.content.read()
                return first + rest, time.monotonic() - started, refused

        payload, took, refused = asyncio.run(scenario())
        assert payload.count(b'"content": "tick"') == 15
        assert payload.endswith(b"data: [DONE]\n\n")
        assert took > 0.8  # the stream really did run on after SIGTERM
        assert refused
        assert served.proc.wait(15) == 0
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait(5)
        if served.proc.stdout is not None:
            served.proc.stdout.close()


class FlakyUpstream(OpenAIUpstream):
    """An upstream that fails about `rate` of its requests, in assorted ways."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        super().__init__()
        self.rng = rng
        self.rate = rate
        self.failures = 0
        faults = [
            up.error(500, "boom", type_="server_error"),
            up.error(503, "busy", headers={"retry-after-ms": "5"}),
            up.error(529, "overloaded"),
            up.error(429, "slow down", headers={"retry-after-ms": "5"}),
            up.drop(),
            up.reset_after_headers(),
            up.malformed_json(),
        ]
        healthy = up.echo()

        async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
            if self.rng.random() < self.rate:
                self.failures += 1
                fault = self.rng.choice(faults)
                if fault is faults[5] and not body.get("stream"):
                    fault = faults[0]
                return await fault(request, body)
            return await healthy(request, body)

        self.default = reply


def test_load_with_injected_failures(make_gateway: GatewayFactory, loop_thread: LoopThread) -> None:
    """Bounded: 2,000 requests, loopback only, about 30 % of upstream answers broken."""
    rng = random.Random(20261125)
    first, second = FlakyUpstream(rng, 0.3), FlakyUpstream(rng, 0.3)
    servers = [RunningApp(loop_thread, first.app()), RunningApp(loop_thread, second.app())]
    try:
        gateway = make_gateway(
            {
                "OPENAI_BASE_URL": servers[0].url + "/v1",
                "OPENAI_API_KEYS": "sk-load-key-0001,sk-load-key-0002",
                "GROQ_BASE_URL": servers[1].url + "/v1",
                "GROQ_API_KEY": "gsk_load_key_0003",
                "MINI_LLM_MODEL_ALIASES": '{"duo": ["openai/gpt-4o", "groq/llama-3.3"]}',
                "MINI_LLM_RETRY_BACKOFF": "0.005",
                "MINI_LLM_RETRY_BACKOFF_MAX": "0.02",
                "MINI_LLM_RETRY_ATTEMPTS": "6",
            }
        )
        total, concurrency = 2000, 32
        results = loop_thread.run(_load(gateway.url, total, concurrency), timeout=300)
        correct = sum(1 for r in results if r == "ok")
        failed = [r for r in results if r.startswith("error")]
        garbled = [r for r in results if r != "ok" and not r.startswith("error")]
        # every request has a healthy target within reach: all must be answered correctly
        assert garbled == []
        assert correct == total, f"{total - correct} requests failed: {failed[:5]}"
        assert first.failures + second.failures > 0.2 * total
        # leaked connections: nothing is left running at the upstreams, and the gateway
        # holds no more connections than its keep-alive pool needs
        time.sleep(0.2)
        assert first.active == second.active == 0
        assert servers[0].connections() + servers[1].connections() <= 2 * concurrency
        print(
            f"\nload: {total} requests, {correct} correct, {len(garbled)} garbled, "
            f"{first.failures + second.failures} injected upstream failures, "
            f"{servers[0].connections() + servers[1].connections()} pooled connections left"
        )
    finally:
        for server in servers:
            server.stop()


async def _load(url: str, total: int, concurrency: int) -> list[str]:
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> str:
            stream = i % 2 == 0
            text = f"message number {i}"
            async with (
                semaphore,
                session.post(
                    url + "/v1/chat/completions",
                    json={
                        "model": "duo",
                        "messages": [{"role": "user", "content": text}],
                        "stream": stream,
                    },
                ) as response,
            ):
                raw = await response.read()
            if response.status != 200:
                return f"error {response.status}: {raw[:300]!r}"
            if not stream:
                answer = json.loads(raw)
                got = answer["choices"][0]["message"]["content"]
                return "ok" if got == text else f"garbled: {got!r}"
            if not raw.endswith(b"data: [DONE]\n\n"):
                return f"garbled stream: {raw[-200:]!r}"
            pieces = []
            for event in raw.split(b"\n\n"):
                if event.startswith(b"data: {"):
                    chunk = json.loads(event[6:])
                    if "error" in chunk:
                        return f"error in stream: {chunk['error']}"
                    pieces += [c["delta"].get("content") or "" for c in chunk["choices"]]
            got = "".join(pieces)
            return "ok" if got == text else f"garbled: {got!r}"

        return await asyncio.gather(*(one(i) for i in range(total)))
