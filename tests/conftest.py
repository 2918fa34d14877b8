from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mini_llm.config import Settings

from .harness import LoopThread, RunningApp, gateway_settings, start_gateway
from .upstreams.openai_upstream import OpenAIUpstream


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def _openai_upstream_server(loop_thread: LoopThread) -> Iterator[tuple[OpenAIUpstream, RunningApp]]:
    upstream = OpenAIUpstream()
    running = RunningApp(loop_thread, upstream.app())
    yield upstream, running
    running.stop()


@pytest.fixture
def openai_upstream(_openai_upstream_server: tuple[OpenAIUpstream, RunningApp]) -> OpenAIUpstream:
    upstream, _ = _openai_upstream_server
    upstream.reset()
    return upstream


@pytest.fixture
def openai_upstream_url(_openai_upstream_server: tuple[OpenAIUpstream, RunningApp]) -> str:
    return _openai_upstream_server[1].url + "/v1"


GatewayFactory = Callable[..., RunningApp]


@pytest.fixture
def make_gateway(loop_thread: LoopThread) -> Iterator[GatewayFactory]:
    """Start gateways from an explicit environment (and optional config file / flags)."""
    started: list[RunningApp] = []

    def factory(
        env: dict[str, str] | None = None, config_path: str | None = None, **flags: Any
    ) -> RunningApp:
        settings: Settings = gateway_settings(env, config_path, **flags)
        running = start_gateway(loop_thread, settings)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop()


@pytest.fixture
def gateway(make_gateway: GatewayFactory, openai_upstream_url: str) -> RunningApp:
    """A gateway whose `openai` provider is the mock upstream, with two keys."""
    return make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEYS": "sk-test-key-one-aaaa,sk-test-key-two-bbbb",
            "MINI_LLM_MODEL_ALIASES": '{"fast": "openai/gpt-4o-mini", "echo": "mock/echo"}',
        }
    )
