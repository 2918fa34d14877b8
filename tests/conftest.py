from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mini_llm.config import Settings
from mini_llm.http1 import Http1Transport
from mini_llm.upstream import HttpTransport

from .harness import LoopThread, RunningApp, gateway_settings, start_gateway
from .raw_http_server import TransportClass
from .upstreams.anthropic_upstream import AnthropicUpstream
from .upstreams.azure_upstream import AzureUpstream
from .upstreams.bedrock_upstream import BedrockUpstream
from .upstreams.gemini_upstream import GeminiUpstream
from .upstreams.openai_upstream import OpenAIUpstream
from .upstreams.vertex_upstream import VertexUpstream


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """The CLI and the access log set up mini_llm's loggers in process (levels, handlers,
    propagation); each test gets them back as they were, so caplog sees what it expects."""
    names = [
        name
        for name in ("mini_llm", *logging.root.manager.loggerDict)
        if name == "mini_llm" or name.startswith("mini_llm.")
    ]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.propagate, logger.level, list(logger.handlers))
    yield
    for name, (propagate, level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.propagate, logger.level, logger.handlers = propagate, level, handlers


@pytest.fixture(autouse=True)
def _private_runtime_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime directory of each test's own: a foreground `mini-llm serve` publishes itself
    as the shared gateway of `$XDG_RUNTIME_DIR/mini-llm`, which must be neither the user's
    real one nor another test's (tests that need the state directory set their own
    `MINI_LLM_STATE_DIR`)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("runtime")))
    # and a data directory of its own: a gateway it starts keeps its usage ledger there
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data")))


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


@pytest.fixture(scope="session")
def _anthropic_upstream_server(
    loop_thread: LoopThread,
) -> Iterator[tuple[AnthropicUpstream, RunningApp]]:
    upstream = AnthropicUpstream()
    running = RunningApp(loop_thread, upstream.app())
    yield upstream, running
    running.stop()


@pytest.fixture
def anthropic_upstream(
    _anthropic_upstream_server: tuple[AnthropicUpstream, RunningApp],
) -> AnthropicUpstream:
    upstream, _ = _anthropic_upstream_server
    upstream.reset()
    return upstream


@pytest.fixture
def anthropic_upstream_url(_anthropic_upstream_server: tuple[AnthropicUpstream, RunningApp]) -> str:
    return _anthropic_upstream_server[1].url + "/v1"


@pytest.fixture(scope="session")
def _gemini_upstream_server(loop_thread: LoopThread) -> Iterator[tuple[GeminiUpstream, RunningApp]]:
    upstream = GeminiUpstream()
    running = RunningApp(loop_thread, upstream.app())
    yield upstream, running
    running.stop()


@pytest.fixture
def gemini_upstream(_gemini_upstream_server: tuple[GeminiUpstream, RunningApp]) -> GeminiUpstream:
    upstream, _ = _gemini_upstream_server
    upstream.reset()
    return upstream


@pytest.fixture
def gemini_upstream_url(_gemini_upstream_server: tuple[GeminiUpstream, RunningApp]) -> str:
    return _gemini_upstream_server[1].url + "/v1beta"


@pytest.fixture(scope="session")
def _bedrock_server(loop_thread: LoopThread) -> Iterator[tuple[BedrockUpstream, RunningApp]]:
    upstream = BedrockUpstream()
    running = RunningApp(loop_thread, upstream.app())
    yield upstream, running
    running.stop()


@pytest.fixture
def bedrock_upstream(_bedrock_server: tuple[BedrockUpstream, RunningApp]) -> BedrockUpstream:
    _bedrock_server[0].reset()
    return _bedrock_server[0]


@pytest.fixture
def bedrock_upstream_url(_bedrock_server: tuple[BedrockUpstream, RunningApp]) -> str:
    return _bedrock_server[1].url


@pytest.fixture(scope="session")
def _vertex_server(
    loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[VertexUpstream, RunningApp, str]]:
    upstream = VertexUpstream()
    running = RunningApp(loop_thread, upstream.app())
    path = tmp_path_factory.mktemp("vertex") / "service-account.json"
    path.write_text(json.dumps(upstream.service_account(running.url)))
    yield upstream, running, str(path)
    running.stop()


@pytest.fixture
def vertex_upstream(_vertex_server: tuple[VertexUpstream, RunningApp, str]) -> VertexUpstream:
    _vertex_server[0].reset()
    return _vertex_server[0]


@pytest.fixture
def vertex_env(_vertex_server: tuple[VertexUpstream, RunningApp, str]) -> dict[str, str]:
    """The environment of a gateway whose `vertex` preset is the mock."""
    _, running, path = _vertex_server
    return {
        "GOOGLE_APPLICATION_CREDENTIALS": path,
        "VERTEX_LOCATION": "us-east5",
        "VERTEX_BASE_URL": running.url + "/v1",
    }


@pytest.fixture(scope="session")
def _azure_server(loop_thread: LoopThread) -> Iterator[tuple[AzureUpstream, RunningApp]]:
    upstream = AzureUpstream()
    running = RunningApp(loop_thread, upstream.app())
    yield upstream, running
    running.stop()


@pytest.fixture
def azure_upstream(_azure_server: tuple[AzureUpstream, RunningApp]) -> AzureUpstream:
    _azure_server[0].reset()
    return _azure_server[0]


@pytest.fixture
def azure_upstream_url(_azure_server: tuple[AzureUpstream, RunningApp]) -> str:
    return _azure_server[1].url


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


@pytest.fixture(params=["aiohttp", "http1"])
def transport_class(request: pytest.FixtureRequest) -> TransportClass:
    """Each upstream client in turn (the transport tests, `tests/test_http1*.py`)."""
    return HttpTransport if request.param == "aiohttp" else Http1Transport
