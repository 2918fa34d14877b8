"""The gateway in front of an OpenAI-format upstream, driven by the official `openai` package."""

from __future__ import annotations

import asyncio

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from .harness import RunningApp
from .upstreams import openai_upstream as up
from .upstreams.openai_upstream import OpenAIUpstream

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello gateway"}]


def client_for(gateway: RunningApp) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0)


def test_non_stream_parses_and_rewrites_model(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    client = client_for(gateway)
    completion = client.chat.completions.create(model="fast", messages=USER)
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == "hello gateway"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 10
    (seen,) = openai_upstream.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "gpt-4o-mini"
    assert seen.body["messages"] == USER


def test_unknown_fields_pass_through_untouched(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    client = client_for(gateway)
    extra = {"custom_field": {"nested": [1, 2.5, None, "x"]}, "seed": 7, "logit_bias": {"50": -1}}
    client.chat.completions.create(
        model="openai/gpt-4.1",
        messages=USER,
        temperature=0.25,
        extra_body=extra,
    )
    body = openai_upstream.requests[0].body
    assert body["model"] == "gpt-4.1"
    assert body["temperature"] == 0.25
    for key, value in extra.items():
        assert body[key] == value


def test_bare_model_name_is_detected(gateway: RunningApp, openai_upstream: OpenAIUpstream) -> None:
    client_for(gateway).chat.completions.create(model="gpt-4o", messages=USER)
    assert openai_upstream.requests[0].body["model"] == "gpt-4o"


def test_stream_passes_through(gateway: RunningApp, openai_upstream: OpenAIUpstream) -> None:
    client = client_for(gateway)
    chunks = list(
        client.chat.completions.create(
            model="fast",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello gateway"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert openai_upstream.requests[0].body["stream"] is True


def test_async_client_stream_and_non_stream(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key="k", max_retries=0
        ) as client:
            completion = await client.chat.completions.create(model="fast", messages=USER)
            stream = await client.chat.completions.create(
                model="fast",
                messages=USER,
                stream=True,
            )
            streamed = "".join(
                [c.choices[0].delta.content or "" async for c in stream if c.choices]
            )
            return completion.choices[0].message.content or "", streamed

    plain, streamed = asyncio.run(run())
    assert plain == streamed == "hello gateway"


def test_concurrent_async_requests(gateway: RunningApp, openai_upstream: OpenAIUpstream) -> None:
    async def run() -> list[str]:
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key="k", max_retries=0
        ) as client:

            async def one(i: int) -> str:
                r = await client.chat.completions.create(
                    model="fast",
                    messages=[{"role": "user", "content": f"message {i}"}],
                )
                return r.choices[0].message.content or ""

            return await asyncio.gather(*(one(i) for i in range(40)))

    assert asyncio.run(run()) == [f"message {i}" for i in range(40)]
    assert len(openai_upstream.requests) == 40


def test_keys_rotate_round_robin(gateway: RunningApp, openai_upstream: OpenAIUpstream) -> None:
    client = client_for(gateway)
    for _ in range(4):
        client.chat.completions.create(model="fast", messages=USER)
    auth = [r.headers["Authorization"] for r in openai_upstream.requests]
    one, two = "Bearer sk-test-key-one-aaaa", "Bearer sk-test-key-two-bbbb"
    assert auth == [one, two, one, two]


def test_keys_rotate_evenly_under_concurrency(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    async def run() -> None:
        async with openai.AsyncOpenAI(
            base_url=gateway.url + "/v1", api_key="k", max_retries=0
        ) as client:
            await asyncio.gather(
                *(client.chat.completions.create(model="fast", messages=USER) for _ in range(30))
            )

    asyncio.run(run())
    auth = [r.headers["Authorization"] for r in openai_upstream.requests]
    assert auth.count("Bearer sk-test-key-one-aaaa") == 15
    assert auth.count("Bearer sk-test-key-two-bbbb") == 15


def test_client_authorization_is_not_forwarded(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-secret", max_retries=0)
    client.chat.completions.create(model="fast", messages=USER)
    headers = openai_upstream.requests[0].headers
    assert "client-secret" not in str(headers)
    assert headers["Authorization"].startswith("Bearer sk-test-key-")


def test_gzip_answers_are_decoded(gateway: RunningApp, openai_upstream: OpenAIUpstream) -> None:
    openai_upstream.push(up.gzipped("compressed hello"))
    completion = client_for(gateway).chat.completions.create(model="fast", messages=USER)
    assert completion.choices[0].message.content == "compressed hello"


def test_mock_provider_through_openai_client(gateway: RunningApp) -> None:
    client = client_for(gateway)
    completion = client.chat.completions.create(model="mock/echo", messages=USER)
    assert completion.choices[0].message.content == "hello gateway"
    assert completion.usage is not None and completion.usage.prompt_tokens > 0
    chunks = list(
        client.chat.completions.create(
            model="echo",  # an alias of mock/echo
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hello gateway"
    assert chunks[-1].usage is not None


def test_mock_needs_no_configuration(make_gateway: object) -> None:
    assert callable(make_gateway)
    gateway: RunningApp = make_gateway()
    completion = client_for(gateway).chat.completions.create(
        model="mock/echo",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
    )
    assert completion.choices[0].message.content == "hi"


def test_models_lists_aliases_and_configured_models(gateway: RunningApp) -> None:
    models = client_for(gateway).models.list()
    ids = {m.id for m in models}
    assert {"fast", "echo", "mock/echo"} <= ids
    assert all(m.object == "model" for m in models)
