"""The Responses API through the gateway, driven by the official `openai` client: create,
stream and parse; the store (owner, TTL, bound, GET/DELETE/input_items, pass-through to OpenAI);
errors in OpenAI's shape, before and after a stream began."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from aiohttp import web
from pydantic import BaseModel

from mini_llm.config import load_settings
from mini_llm.state.responses import MemoryResponseStore, StoredResponse

from .conftest import GatewayFactory
from .harness import RunningApp, http
from .upstreams import anthropic_upstream as aup
from .upstreams import openai_upstream as up
from .upstreams.anthropic_upstream import AnthropicUpstream
from .upstreams.openai_upstream import OpenAIUpstream


@pytest.fixture
def gateway(
    make_gateway: GatewayFactory,
    openai_upstream_url: str,
    anthropic_upstream_url: str,
) -> RunningApp:
    return make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-responses-openai-1111",
            "GROQ_BASE_URL": openai_upstream_url,
            "GROQ_API_KEY": "gsk_responses-groq-2222",
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-responses-3333",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
        }
    )


@pytest.fixture
def client(gateway: RunningApp) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0)


def _post(gateway: RunningApp, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, _, data = http(
        "POST",
        gateway.url + "/v1/responses",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    return status, json.loads(data)


class Person(BaseModel):
    name: str
    age: int


@pytest.mark.parametrize("model", ["mock/json", "anthropic/claude-sonnet-4-5"])
def test_parse_into_a_pydantic_model(client: openai.OpenAI, model: str) -> None:
    parsed = client.responses.parse(model=model, input="a person", text_format=Person)
    assert isinstance(parsed.output_parsed, Person)


def test_create_and_stream_on_the_mock(client: openai.OpenAI) -> None:
    assert client.responses.create(model="mock/echo", input="hi there").output_text == "hi there"
    with client.responses.stream(model="mock/echo", input="streamed words") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "streamed words"
    assert final.status == "completed" and final.usage is not None


def test_stored_response_get_input_items_delete(client: openai.OpenAI) -> None:
    first = client.responses.create(model="mock/echo", input="keep me", metadata={"k": "v"})
    got = client.responses.retrieve(first.id)
    assert got.output_text == "keep me" and got.metadata == {"k": "v"}
    items = client.responses.input_items.list(first.id)
    assert [i.type for i in items.data] == ["message"]
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(first.id)
    assert first.id in caught.value.message


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    response = client.responses.create(model="mock/echo", input="forget me", store=False)
    assert getattr(response, "store", None) is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="mock/echo", input="x", previous_response_id=response.id)
    assert caught.value.code == "previous_response_not_found"


def test_unknown_ids(gateway: RunningApp) -> None:
    for method, path in (
        ("GET", "/v1/responses/resp_nope"),
        ("DELETE", "/v1/responses/resp_nope"),
        ("GET", "/v1/responses/resp_nope/input_items"),
    ):
        status, _, data = http(method, gateway.url + path)
        # no upstream has it either: the mock OpenAI upstream answers 404 in OpenAI's shape
        assert status == 404, (method, path, data)
        assert "resp_nope" in json.loads(data)["error"]["message"]


def test_openai_keeps_its_own_responses(
    client: openai.OpenAI, openai_upstream: OpenAIUpstream
) -> None:
    response = client.responses.create(model="openai/gpt-4o-mini", input="stored upstream")
    assert response.id.startswith("resp_upstream")
    assert client.responses.retrieve(response.id).output_text == "stored upstream"
    assert (
        openai_upstream.requests[-1].headers["Authorization"] == "Bearer sk-responses-openai-1111"
    )
    assert client.responses.input_items.list(response.id).data[0].type == "message"
    client.responses.delete(response.id)
    assert response.id not in openai_upstream.responses.stored


def test_built_in_tools_go_to_openai_and_nowhere_else(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    body = {"input": "news?", "tools": [{"type": "web_search"}]}
    status, _ = _post(gateway, {"model": "openai/gpt-4o-mini", **body})
    assert status == 200
    assert openai_upstream.requests[-1].body["tools"] == [{"type": "web_search"}]
    for model in ("groq/llama-3.3-70b-versatile", "anthropic/claude-sonnet-4-5", "mock/echo"):
        status, answer = _post(gateway, {"model": model, **body})
        assert status == 400
        assert answer["error"]["param"] == "tools[0]"
        assert "web_search" in answer["error"]["message"]


def test_invalid_envelope(gateway: RunningApp) -> None:
    status, answer = _post(gateway, {"input": "no model"})
    assert status == 400 and answer["error"]["param"] == "model"
    status, answer = _post(gateway, {"model": "mock/echo", "input": "x", "stream": "yes"})
    assert status == 400 and answer["error"]["param"] == "stream"


def test_upstream_5xx_is_a_502(gateway: RunningApp, openai_upstream: OpenAIUpstream) -> None:
    for model in ("openai/gpt-4o-mini", "groq/llama-3.3-70b-versatile"):
        openai_upstream.push(up.error(503, "upstream is down", "server_error"))
        status, answer = _post(gateway, {"model": model, "input": "x"})
        assert status == 502 and "upstream is down" in answer["error"]["message"]


def test_failure_after_the_stream_began_is_one_last_event(
    client: openai.OpenAI, anthropic_upstream: AnthropicUpstream
) -> None:
    anthropic_upstream.push(aup.error_mid_stream("partial answer"))
    with client.responses.stream(model="anthropic/claude-sonnet-4-5", input="x") as stream:
        events = list(stream)
    assert events[-1].type == "response.failed"
    assert events[-1].response.error is not None
    assert "Overloaded" in events[-1].response.error.message
    assert any(e.type == "response.output_text.delta" for e in events)


def test_passed_through_stream_cut_short_ends_with_an_error_event(
    gateway: RunningApp, openai_upstream: OpenAIUpstream
) -> None:
    async def cut(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        created = {"type": "response.created", "sequence_number": 0, "response": {"id": "r"}}
        event = f"event: response.created\ndata: {json.dumps(created)}\n\n".encode()
        return await up.send_stream(request, [event])

    openai_upstream.push(cut)
    body = {"model": "openai/gpt-4o-mini", "input": "x", "stream": True}
    status, _, data = http(
        "POST", gateway.url + "/v1/responses", json.dumps(body).encode(), {}, timeout=10
    )
    assert status == 200
    assert data.count(b"event: ") == 2
    assert data.rstrip().endswith(b"}") and b"event: error" in data


def test_memory_store_ttl_owner_and_bound() -> None:
    now = [1000.0]
    store = MemoryResponseStore(ttl=10, limit=2, clock=lambda: now[0])

    def record(ident: str, owner: str = "") -> StoredResponse:
        return StoredResponse(ident, owner, {"id": ident}, [], [], now[0] + store.ttl)

    async def scenario() -> None:
        store.put(record("a"))
        assert await store.get("", "a") is not None
        assert await store.get("someone-else", "a") is None  # owners see only their own
        assert not await store.delete("someone-else", "a")
        now[0] += 11
        assert await store.get("", "a") is None  # expired
        store.put(record("b"))
        store.put(record("c"))
        store.put(record("d"))
        assert len(store) == 2 and await store.get("", "b") is None  # the oldest went first

    asyncio.run(scenario())
    assert load_settings(env={}).responses_ttl == 30 * 24 * 3600
    assert load_settings(env={"MINI_LLM_RESPONSES_TTL": "60"}).responses_ttl == 60
