"""Client, AsyncClient and the official clients against a real gateway process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import mini_llm
from mini_llm import (
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    BadRequestError,
    Client,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)
from mini_llm.sdk.manager import GatewayManager
from mini_llm.sdk.state import GatewayState
from mini_llm.sdk.types import ChatCompletion, ChatCompletionChunk

from .sdk_harness import free_port, kill_gateways


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayState]:
    state_dir = tmp_path_factory.mktemp("client-state")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("MINI_LLM_"):
                mp.delenv(name)
        mp.setenv("MINI_LLM_STATE_DIR", str(state_dir))
        manager = GatewayManager(state_dir=state_dir, port=0)
        state = manager.ensure_state()[0]
        yield state
        assert manager.stop() == state
    assert kill_gateways(state_dir) == []


@pytest.fixture
def client(gateway: GatewayState) -> Iterator[Client]:
    with Client(gateway.url, timeout=30) as c:
        yield c


def test_chat_returns_a_typed_completion(client: Client) -> None:
    completion = client.chat("mock/echo", [{"role": "user", "content": "Hello, SDK"}])
    assert isinstance(completion, ChatCompletion)
    assert completion.text == "Hello, SDK"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.model


def test_chat_accepts_a_plain_string_and_extra_params(client: Client) -> None:
    assert client.chat("mock/echo", "just text", temperature=0.2, max_tokens=5).text == "just text"


def test_keep_alive_connection_is_reused(client: Client) -> None:
    client.chat("mock/echo", "one")
    assert len(client._idle) == 1
    conn = client._idle[0]
    client.chat("mock/echo", "two")
    assert client._idle == [conn]


def test_stream_yields_typed_chunks_and_collects_text(client: Client) -> None:
    with client.stream(
        "mock/echo", "stream this please", stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)
    assert chunks
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.text for c in chunks) == "stream this please"
    assert stream.usage is not None
    assert stream.usage.completion_tokens > 0
    # the connection went back to the pool once the stream was read to its end
    assert len(client._idle) == 1
    assert client.stream("mock/echo", "and text()").text() == "and text()"


def test_errors_are_typed_and_carry_status_and_body(client: Client) -> None:
    with pytest.raises(NotFoundError) as not_found:
        client.chat("mock/no-such-model", "hi")
    assert not_found.value.status == 404
    assert not_found.value.code == "model_not_found"
    assert isinstance(not_found.value.body, dict)
    assert not_found.value.body["error"]["message"] == not_found.value.message

    with pytest.raises(RateLimitError) as limited:
        client.chat("mock/error-429", "hi")
    assert limited.value.status == 429

    with pytest.raises(InternalServerError) as upstream:
        client.chat("mock/error-500", "hi")
    assert upstream.value.status == 502

    with pytest.raises(BadRequestError) as bad:
        client.chat("mock/echo", [])
    assert bad.value.status == 400
    assert bad.value.body["error"]["param"] == "messages"

    with pytest.raises(NotFoundError):
        client.stream("mock/no-such-model", "hi")


def test_models_and_health(client: Client, gateway: GatewayState) -> None:
    assert "mock/echo" in {m.id for m in client.models()}
    health = client.health()
    assert health.status == "ok"
    assert health.pid == gateway.pid
    assert health.version == mini_llm.__version__


def test_unreachable_gateway_raises_a_connection_error() -> None:
    with pytest.raises(APIConnectionError, match="cannot reach"):
        Client(f"http://127.0.0.1:{free_port()}", timeout=5).health()


def test_base_url_with_v1_and_auto(gateway: GatewayState) -> None:
    assert Client(gateway.url + "/v1/").base_url == gateway.url
    # auto finds the shared gateway through MINI_LLM_STATE_DIR instead of starting another
    assert Client(auto=True).base_url == gateway.url
    assert Client().base_url == gateway.url


def test_async_client(gateway: GatewayState) -> None:
    async def scenario() -> None:
        async with AsyncClient(gateway.url, timeout=30) as client:
            completion = await client.chat("mock/echo", "async hello")
            assert completion.text == "async hello"
            texts = [chunk.text async for chunk in client.stream("mock/echo", "async stream")]
            assert "".join(texts) == "async stream"
            assert await client.stream("mock/echo", "joined").text() == "joined"
            assert "mock/echo" in {m.id for m in await client.models()}
            assert (await client.health()).pid == gateway.pid
            with pytest.raises(NotFoundError) as error:
                await client.chat("mock/nope", "x")
            assert error.value.status == 404
            with pytest.raises(RateLimitError):
                async for _ in client.stream("mock/error-429", "x"):
                    pass
        async with AsyncClient(auto=True) as auto:
            assert await auto.base_url() == gateway.url
            assert (await auto.chat("mock/echo", "auto")).text == "auto"
        with pytest.raises(APIConnectionError):
            async with AsyncClient(f"http://127.0.0.1:{free_port()}", timeout=5) as nowhere:
                await nowhere.health()

    asyncio.run(scenario())


def test_official_clients_point_at_the_gateway(gateway: GatewayState) -> None:
    openai = mini_llm.openai_client()
    assert str(openai.base_url).rstrip("/") == gateway.url + "/v1"
    reply = openai.chat.completions.create(
        model="mock/echo", messages=[{"role": "user", "content": "official"}]
    )
    assert reply.choices[0].message.content == "official"
    openai.close()

    anthropic = mini_llm.anthropic_client(gateway.url, auto=False)
    assert str(anthropic.base_url).rstrip("/") == gateway.url
    message = anthropic.messages.create(
        model="mock/echo", max_tokens=32, messages=[{"role": "user", "content": "via messages"}]
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "via messages"
    anthropic.close()


def test_status_error_without_a_json_body() -> None:
    from mini_llm.sdk.errors import status_error

    error = status_error(503, b"<html>busy</html>")
    assert isinstance(error, InternalServerError)
    assert isinstance(error, APIStatusError)
    assert (error.status, error.body) == (503, "<html>busy</html>")
    assert error.message == "<html>busy</html>"


def test_import_is_lazy_and_public_names_resolve() -> None:
    code = (
        "import sys, mini_llm\n"
        "heavy = [m for m in ('aiohttp', 'msgspec', 'mini_llm.sdk.manager', 'mini_llm.gateway')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
        "print(all(getattr(mini_llm, n) is not None for n in mini_llm.__all__))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(mini_llm.__file__).parents[1])},
    ).stdout.split("\n")
    assert out[:2] == ["[]", "True"]


# issue #9


def test_streams_report_usage_without_being_asked(client: Client, gateway: GatewayState) -> None:
    with client.stream("mock/echo", "count me") as stream:
        assert stream.text() == "count me"
    assert stream.usage is not None
    assert stream.usage.completion_tokens > 0
    # the caller's own stream_options are left as they are
    with client.stream("mock/echo", "no", stream_options={"include_usage": False}) as unasked:
        unasked.text()
    assert unasked.usage is None

    async def scenario() -> None:
        async with AsyncClient(gateway.url, timeout=30) as aclient:
            astream = aclient.stream("mock/echo", "async count")
            assert await astream.text() == "async count"
            assert astream.usage is not None

    asyncio.run(scenario())


def test_messages_of_the_wrong_type_are_a_clear_type_error(client: Client) -> None:
    for wrong in (42, b"bytes", {"role": "user", "content": "a dict, not a list"}, [42]):
        with pytest.raises(TypeError, match="a list of message dicts"):
            client.chat("mock/echo", wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be a model name"):
        client.chat(None, "x")  # type: ignore[arg-type]


def test_dir_shows_the_public_api_only() -> None:
    assert dir(mini_llm) == sorted(mini_llm.__all__)
    for private in ("Any", "TYPE_CHECKING", "importlib"):
        assert private not in dir(mini_llm)


def _readme_sdk_example() -> str:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## SDK and CLI", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_readme_sdk_example_runs_without_warnings(tmp_path: Path) -> None:
    # -X dev -W error: an unclosed client (ResourceWarning) or anything else fails it
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MINI_LLM_") and not k.endswith(("_API_KEY", "_BASE_URL"))
    }
    state_dir = tmp_path / "state"
    env.update(
        MINI_LLM_STATE_DIR=str(state_dir),
        MINI_LLM_PORT="0",
        PYTHONPATH=str(Path(mini_llm.__file__).parents[1]),
    )
    try:
        result = subprocess.run(
            [sys.executable, "-X", "dev", "-W", "error", "-c", _readme_sdk_example()],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert "Hello" in result.stdout
    finally:
        GatewayManager(state_dir=state_dir).stop()
        assert kill_gateways(state_dir) == []
