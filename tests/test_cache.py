"""The response cache in one gateway (memory): an answer stored once and served in every
dialect and mode (parsed by the official SDKs), namespaces, TTL, Cache-Control, what is not
stored, exclusions, single flight, and the store and keys on their own."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import openai
import pytest

from mini_llm.cache import MemoryCache, cache_key
from mini_llm.cache.store import ENTRY_OVERHEAD
from mini_llm.canonical import CompletionBuilder, answer_chunks
from mini_llm.gateway.app import GATEWAY
from mini_llm.policies import PolicyChain, RequestInfo
from mini_llm.policies.cache import CachePolicy

from .conftest import GatewayFactory
from .harness import RunningApp, http
from .upstreams.openai_upstream import OpenAIUpstream, reset_mid_stream, stall

MODES = [
    ("openai", False),
    ("openai", True),
    ("anthropic", False),
    ("anthropic", True),
    ("responses", False),
    ("responses", True),
]


def ask(gateway: RunningApp, dialect: str, stream: bool, prompt: str) -> tuple[str, str]:
    """One request through an official SDK: (the answer's text, x-mini-llm-cache)."""
    messages: Any = [{"role": "user", "content": prompt}]
    if dialect == "openai":
        oa = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        with oa:
            if not stream:
                whole = oa.chat.completions.with_raw_response.create(
                    model="mock/echo", messages=messages, max_tokens=50
                )
                reply = whole.parse()
                assert reply.choices[0].finish_reason == "stop"
                return reply.choices[0].message.content or "", whole.headers["x-mini-llm-cache"]
            streamed = oa.chat.completions.with_raw_response.create(
                model="mock/echo", messages=messages, max_tokens=50, stream=True
            )
            chunks = list(streamed.parse())
            assert chunks[-1].choices[0].finish_reason == "stop"
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            return text, streamed.headers["x-mini-llm-cache"]
    if dialect == "anthropic":
        an = anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)
        with an:
            if not stream:
                answer = an.messages.with_raw_response.create(
                    model="mock/echo", max_tokens=50, messages=messages
                )
                message = answer.parse()
                assert message.stop_reason == "end_turn"
                block = message.content[0]
                assert block.type == "text"
                return block.text, answer.headers.get("x-mini-llm-cache", "")
            with an.messages.stream(model="mock/echo", max_tokens=50, messages=messages) as s:
                final = s.get_final_message()
                header = s.response.headers.get("x-mini-llm-cache", "")
            assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0
            block = final.content[0]
            assert block.type == "text"
            return block.text, header
    oa = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
    with oa:
        if not stream:
            got = oa.responses.with_raw_response.create(
                model="mock/echo", input=prompt, max_output_tokens=50
            )
            return got.parse().output_text, got.headers.get("x-mini-llm-cache", "")
        events = oa.responses.with_raw_response.create(
            model="mock/echo", input=prompt, max_output_tokens=50, stream=True
        )
        finals = [e.response for e in events.parse() if e.type == "response.completed"]
        return finals[0].output_text, events.headers["x-mini-llm-cache"]


@pytest.fixture
def cached(make_gateway: GatewayFactory) -> RunningApp:
    return make_gateway({"MINI_LLM_CACHE": "memory", "MINI_LLM_LOG_LEVEL": "warning"})


@pytest.mark.parametrize(("dialect", "stream"), MODES[:4])
def test_stored_once_served_in_every_dialect_and_mode(
    cached: RunningApp, dialect: str, stream: bool
) -> None:
    prompt = f"cache me as {dialect} {'stream' if stream else 'whole'}"
    assert ask(cached, dialect, stream, prompt) == (prompt, "miss")
    for served_as, served_stream in MODES:
        assert ask(cached, served_as, served_stream, prompt) == (prompt, "hit"), (
            served_as,
            served_stream,
        )
    policy = cached.app[GATEWAY].runtime.cache
    assert policy is not None
    assert (policy.counters.misses, policy.counters.hits) == (1, len(MODES))


def test_a_hit_says_its_age_and_counts_as_a_cache_hit(cached: RunningApp) -> None:
    seen: list[RequestInfo] = []

    class Seen:
        wants_usage = True

        async def before(self, info: RequestInfo) -> None:
            return None

        def after(self, info: RequestInfo) -> None:
            seen.append(info)

    runtime = cached.app[GATEWAY].runtime
    runtime.policies = PolicyChain([*runtime.policies.policies, Seen()])
    body = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "age"}]})
    _, first, _ = post(cached, body)
    time.sleep(1.1)
    _, second, data = post(cached, body)
    assert first["x-mini-llm-cache"] == "miss" and "x-mini-llm-cache-age" not in first
    assert second["x-mini-llm-cache"] == "hit" and second["x-mini-llm-cache-age"] == "1"
    assert json.loads(data)["choices"][0]["message"]["content"] == "age"
    assert [i.cache_hit for i in seen] == [False, True]
    assert seen[1].usage is not None and seen[1].usage.output_tokens > 0
    assert second["x-mini-llm-cost-usd"] == "0"  # a policy counts costs: a hit's is none


def test_the_cache_alone_names_no_cost(make_gateway: GatewayFactory) -> None:
    """The cache stores answers, not what they cost: with no policy that counts costs (the
    ledger, metrics, logs, traces), answers carry no `x-mini-llm-cost-usd`."""
    alone = {"MINI_LLM_USAGE": "false", "MINI_LLM_METRICS": "false"}
    cached = make_gateway({"MINI_LLM_CACHE": "memory", "MINI_LLM_LOG_LEVEL": "warning", **alone})
    assert not cached.app[GATEWAY].runtime.policies.wants_cost
    body = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "free"}]})
    answers = [post(cached, body)[1] for _ in range(2)]
    assert [a["x-mini-llm-cache"] for a in answers] == ["miss", "hit"]
    assert not [a for a in answers if "x-mini-llm-cost-usd" in a]


def post(
    gateway: RunningApp, body: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    status, got, data = http(
        "POST", gateway.url + "/v1/chat/completions", body.encode(), headers or {}
    )
    return status, {k.lower(): v for k, v in got.items()}, data


class OwnerFromHeader:
    """Stands in for gateway keys (a later issue): the owner named by a test header."""

    wants_usage = False

    async def before(self, info: RequestInfo) -> None:
        info.owner = info.headers.get("x-test-owner", "")

    def after(self, info: RequestInfo) -> None:
        return None


@pytest.mark.parametrize("share", [False, True])
def test_answers_are_namespaced_per_owner_unless_shared(
    make_gateway: GatewayFactory, share: bool
) -> None:
    gateway = make_gateway({"MINI_LLM_CACHE": "memory", "MINI_LLM_CACHE_SHARE": str(share).lower()})
    runtime = gateway.app[GATEWAY].runtime
    assert runtime.cache is not None
    runtime.policies = PolicyChain([OwnerFromHeader(), runtime.cache])
    body = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "mine"}]})
    states = [
        post(gateway, body, {"x-test-owner": owner})[1]["x-mini-llm-cache"]
        for owner in ("alice", "bob", "alice", "bob")
    ]
    assert states == (["miss", "hit", "hit", "hit"] if share else ["miss", "miss", "hit", "hit"])


def test_ttl_expiry_per_request_and_by_setting(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway({"MINI_LLM_CACHE": "memory", "MINI_LLM_CACHE_TTL": "0.5"})
    body = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "ttl"}]})
    long = {"x-mini-llm-cache-ttl": "30"}
    assert post(gateway, body)[1]["x-mini-llm-cache"] == "miss"
    assert post(gateway, body)[1]["x-mini-llm-cache"] == "hit"
    time.sleep(0.6)
    assert post(gateway, body, long)[1]["x-mini-llm-cache"] == "miss"  # expired; kept 30 s now
    time.sleep(0.6)
    assert post(gateway, body)[1]["x-mini-llm-cache"] == "hit"
    status, _, data = post(gateway, body, {"x-mini-llm-cache-ttl": "soon"})
    assert status == 400 and b"x-mini-llm-cache-ttl" in data


def test_no_cache_and_no_store(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        {"OPENAI_BASE_URL": openai_upstream_url, "OPENAI_API_KEY": "sk-test-0000", **_MEMORY}
    )
    body = json.dumps({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "cc"}]})
    no_store = {"Cache-Control": "no-store"}
    assert post(gateway, body, no_store)[1]["x-mini-llm-cache"] == "skip"
    assert post(gateway, body)[1]["x-mini-llm-cache"] == "miss"  # no-store stored nothing
    assert post(gateway, body)[1]["x-mini-llm-cache"] == "hit"
    assert post(gateway, body, {"Cache-Control": "no-cache"})[1]["x-mini-llm-cache"] == "miss"
    assert post(gateway, body, {"Cache-Control": "max-age=0, no-store"})[1]["x-mini-llm-cache"] == (
        "skip"
    )
    assert len(openai_upstream.requests) == 4  # all but the hit went upstream


_MEMORY = {"MINI_LLM_CACHE": "memory", "MINI_LLM_LOG_LEVEL": "warning"}


def test_errors_and_broken_streams_are_not_stored(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    gateway = make_gateway(
        {"OPENAI_BASE_URL": openai_upstream_url, "OPENAI_API_KEY": "sk-test-0000", **_MEMORY}
    )
    error = json.dumps({"model": "mock/error-500", "messages": [{"role": "user", "content": "e"}]})
    for _ in range(2):
        status, headers, _ = post(gateway, error)
        assert (status, headers["x-mini-llm-cache"]) == (502, "miss")
    openai_upstream.push(reset_mid_stream(["par", "tial"]))
    body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "partial"}]}
    stream = json.dumps({**body, "stream": True})
    status, headers, data = post(gateway, stream)
    assert status == 200 and headers["x-mini-llm-cache"] == "miss"
    assert b"error" in data  # the stream ended with an error event
    assert post(gateway, json.dumps(body))[1]["x-mini-llm-cache"] == "miss"
    assert post(gateway, json.dumps(body))[1]["x-mini-llm-cache"] == "hit"


def test_excluded_models_and_aliases_are_skipped(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        {
            **_MEMORY,
            "MINI_LLM_MODEL_ALIASES": '{"quick": "mock/echo", "other": "mock/json"}',
            "MINI_LLM_CACHE_EXCLUDE": "mock/echo",
        }
    )
    for model, state in (("quick", "skip"), ("mock/echo", "skip"), ("other", "miss")):
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}]})
        assert post(gateway, body)[1]["x-mini-llm-cache"] == state, model


def test_single_flight_ten_identical_requests_one_upstream_call(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    from .upstreams.openai_upstream import echo

    gateway = make_gateway(
        {"OPENAI_BASE_URL": openai_upstream_url, "OPENAI_API_KEY": "sk-test-0000", **_MEMORY}
    )
    openai_upstream.default = stall(0.5, echo())
    messages = [{"role": "user", "content": "together"}]
    bodies = [
        json.dumps({"model": "openai/gpt-4o", "messages": messages, "stream": i % 2 == 0})
        for i in range(10)
    ]
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda b: post(gateway, b), bodies))
    assert len(openai_upstream.requests) == 1
    assert all(status == 200 for status, _, _ in answers)
    states = sorted(headers["x-mini-llm-cache"] for _, headers, _ in answers)
    assert states == ["hit"] * 9 + ["miss"]
    assert all(_text(data) == "together" for _, _, data in answers)


def _text(data: bytes) -> str:
    """The text of an OpenAI answer, whole or streamed."""
    if not data.startswith(b"data:"):
        return str(json.loads(data)["choices"][0]["message"]["content"])
    text = ""
    for line in data.split(b"\n"):
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


def test_a_waiter_gives_up_after_the_wait_and_goes_upstream(
    make_gateway: GatewayFactory, openai_upstream: OpenAIUpstream, openai_upstream_url: str
) -> None:
    from .upstreams.openai_upstream import echo

    gateway = make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-test-0000",
            "MINI_LLM_CACHE_WAIT": "0.2",
            **_MEMORY,
        }
    )
    openai_upstream.default = stall(1.0, echo())
    body = json.dumps({"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "w"}]})
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(post, gateway, body)
        time.sleep(0.1)
        second = pool.submit(post, gateway, body)
        began = time.monotonic()
        assert second.result()[0] == 200
        assert first.result()[0] == 200
    assert len(openai_upstream.requests) == 2
    assert time.monotonic() - began < 2.0


# the parts on their own -----------------------------------------------------------------


def test_the_key_is_what_decides_the_answer() -> None:
    base: dict[str, Any] = {
        "model": "alias",
        "messages": [{"role": "user", "content": "hi"}],
        "temperature": 0.2,
        "max_tokens": 9,
    }
    key = cache_key(base, ["openai/gpt-4o"])
    reordered = dict(reversed(list(base.items())))
    assert cache_key(reordered, ["openai/gpt-4o"]) == key
    delivery = {
        **base,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u1",
        "metadata": {"a": "b"},
        "model": "other-alias",
    }
    assert cache_key(delivery, ["openai/gpt-4o"]) == key
    as_parts = {**base, "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert cache_key(as_parts, ["openai/gpt-4o"]) == key
    renamed = {**{k: v for k, v in base.items() if k != "max_tokens"}, "max_completion_tokens": 9}
    assert cache_key(renamed, ["openai/gpt-4o"]) == key
    for changed in (
        {"temperature": 0.3},
        {"max_tokens": 10},
        {"stop": ["x"]},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"seed": 1},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]},
    ):
        assert cache_key({**base, **changed}, ["openai/gpt-4o"]) != key, changed
    assert cache_key(base, ["anthropic/claude"]) != key
    assert cache_key(base, ["openai/gpt-4o"], "alice") != key


def test_memory_cache_is_an_lru_bounded_by_bytes_with_a_ttl() -> None:
    now = [1000.0]
    answer = {"choices": [{"message": {"content": "x" * 500}}]}
    room = 4 * (2 + len(json.dumps(answer, separators=(",", ":"))) + ENTRY_OVERHEAD)
    store = MemoryCache(room, clock=lambda: now[0])  # room for 4 answers

    async def work() -> None:
        for i in range(4):
            await store.put(f"k{i}", answer, 60)
        assert await store.get("k0") is not None  # k0 now most recently used
        for i in range(4, 6):  # two more: the two least recently used go
            await store.put(f"k{i}", answer, 60)
        assert store.size <= room and len(store) == 4
        assert await store.get("k0") is not None
        assert await store.get("k1") is None and await store.get("k2") is None
        await store.put("big", {"content": "y" * room}, 60)
        assert await store.get("big") is None  # larger than the whole cache: not kept
        now[0] += 61
        assert await store.get("k0") is None

    asyncio.run(work())


def test_completion_builder_is_the_inverse_of_answer_chunks() -> None:
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "calling",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a": 1}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    builder = CompletionBuilder()
    chunks = answer_chunks(answer)
    builder.feed(chunks[:1])
    assert builder.result() is None  # not finished yet
    builder.feed(chunks[1:])
    assert builder.result() == answer


def test_the_cache_is_off_by_default(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway({})
    assert gateway.app[GATEWAY].runtime.cache is None
    assert not any(
        isinstance(p, CachePolicy) for p in gateway.app[GATEWAY].runtime.policies.policies
    )
    body = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "x"}]})
    assert "x-mini-llm-cache" not in post(gateway, body)[1]


def test_the_key_of_the_same_bytes_is_remembered_and_bounded(
    make_gateway: GatewayFactory,
) -> None:
    """A body seen before is not keyed again (its bytes decide its key); a body spelled
    otherwise is keyed on its own and still hits; a reload that moves an alias starts
    afresh; the memory of keys is bounded."""
    from .harness import gateway_settings

    env = {"MINI_LLM_CACHE": "memory", "MINI_LLM_MODEL_ALIASES": '{"fast": "mock/echo"}'}
    gateway = make_gateway(env)
    gw = gateway.app[GATEWAY]
    policy = gw.runtime.cache
    assert policy is not None
    body = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "bytes"}]})
    respelled = json.dumps(
        {"messages": [{"content": "bytes", "role": "user"}], "model": "fast"}, indent=1
    )
    states = [post(gateway, b)[1]["x-mini-llm-cache"] for b in (body, body, respelled)]
    assert states == ["miss", "hit", "hit"]
    remembered = {seen[2]: key for seen, key in policy._keys.items()}
    assert set(remembered) == {body.encode(), respelled.encode()}
    assert len(set(remembered.values())) == 1  # one answer's key, reached from both
    # a body over 8 KiB is keyed each time, not remembered, and still hits
    big = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "b" * 9000}]})
    assert [post(gateway, big)[1]["x-mini-llm-cache"] for _ in range(2)] == ["miss", "hit"]
    assert big.encode() not in {seen[2] for seen in policy._keys}
    # the alias moves: the new runtime's policy knows no keys, and the old answer is not used
    gw.reload(gateway_settings({**env, "MINI_LLM_MODEL_ALIASES": '{"fast": "mock/json"}'}))
    moved = gw.runtime.cache
    assert moved is not None and moved is not policy and moved._keys == {}
    assert post(gateway, body)[1]["x-mini-llm-cache"] == "miss"
    # bounded: the oldest goes first
    for i in range(1100):
        policy._remember(("d", "m", str(i).encode(), ("m",), ""), str(i))
    assert len(policy._keys) == 1024
    assert ("d", "m", b"1099", ("m",), "") in policy._keys
    assert ("d", "m", b"0", ("m",), "") not in policy._keys
