"""The conformance suite for the Responses dialect: the official `openai` client's
`responses.create` / `responses.stream` on /v1/responses, over every provider.

`openai` passes through to the mock OpenAI upstream's own `/v1/responses` (which stores
responses and resolves `previous_response_id` as OpenAI does); `groq` (an OpenAI-compatible
chat server), `anthropic`, `gemini` and `mock` are translated through the canonical form, and
the gateway stores their responses. Every path must give the answer `scenario.decide` predicts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from aiohttp import web

from .conformance_drivers import Result, Turn
from .conftest import GatewayFactory
from .responses_driver import ResponsesDriver
from .test_conformance import CAT, MODELS, NO_TOOLS, PERSON, PNG, WEATHER, _smart_openai
from .upstreams import anthropic_upstream as aup
from .upstreams import openai_upstream as up
from .upstreams.anthropic_upstream import AnthropicUpstream
from .upstreams.gemini_upstream import GeminiUpstream
from .upstreams.openai_upstream import OpenAIUpstream

PROVIDERS = ["openai", "groq", "anthropic", "gemini", "mock"]


@dataclass
class Case:
    provider: str
    driver: ResponsesDriver
    openai: OpenAIUpstream
    anthropic: AnthropicUpstream
    gemini: GeminiUpstream

    @property
    def model(self) -> str:
        return MODELS[self.provider]

    def ask(self, turns: list[Turn], **options: Any) -> Result:
        return self.driver.ask(self.model, turns, **options)

    def needs_real_model(self) -> None:
        if self.provider == "mock":
            pytest.skip(NO_TOOLS)

    @property
    def passthrough(self) -> bool:
        return self.provider == "openai"


@pytest.fixture(params=PROVIDERS)
def case(
    request: pytest.FixtureRequest,
    make_gateway: GatewayFactory,
    openai_upstream: OpenAIUpstream,
    openai_upstream_url: str,
    anthropic_upstream: AnthropicUpstream,
    anthropic_upstream_url: str,
    gemini_upstream: GeminiUpstream,
    gemini_upstream_url: str,
) -> Iterator[Case]:
    openai_upstream.default = _smart_openai
    gateway = make_gateway(
        {
            "OPENAI_BASE_URL": openai_upstream_url,
            "OPENAI_API_KEY": "sk-conformance-openai-1111",
            "GROQ_BASE_URL": openai_upstream_url,
            "GROQ_API_KEY": "gsk_conformance-groq-2222",
            "ANTHROPIC_BASE_URL": anthropic_upstream_url,
            "ANTHROPIC_API_KEY": "sk-ant-conformance-3333",
            "GEMINI_BASE_URL": gemini_upstream_url,
            "GEMINI_API_KEY": "gemini-conformance-4444",
            "MINI_LLM_RETRY_ATTEMPTS": "1",
        }
    )
    yield Case(
        str(request.param),
        ResponsesDriver(gateway.url),
        openai_upstream,
        anthropic_upstream,
        gemini_upstream,
    )
    openai_upstream.reset()


def test_simple_answer(case: Case) -> None:
    result = case.ask([Turn("user", "hello conformance")])
    assert result.text == "hello conformance"
    assert result.finish == "stop"
    assert result.calls == []
    assert case.driver.last.status == "completed"
    # translated: the name the client sent; passed through: the upstream's bytes as they came
    upstream_name = case.model.partition("/")[2]
    assert case.driver.last.model == (upstream_name if case.passthrough else case.model)
    if case.passthrough:
        assert case.openai.requests[-1].path == "/v1/responses"
        assert case.openai.requests[-1].body["model"] == "gpt-4o-mini"


def test_instructions(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "hi")], system="Be brief.")
    assert result.text == "[Be brief.] hi"


def test_multi_turn_in_input(case: Case) -> None:
    case.needs_real_model()
    turns = [Turn("user", "first"), Turn("assistant", "first reply"), Turn("user", "second")]
    assert case.ask(turns).text == "second (turn 2)"


def test_multi_turn_with_previous_response_id(case: Case) -> None:
    case.needs_real_model()
    assert case.ask([Turn("user", "first")]).text == "first"
    first = case.driver.last_id
    assert case.ask([Turn("user", "second")], previous=first).text == "second (turn 2)"
    second = case.driver.last_id
    third = case.ask([Turn("user", "third")], previous=second, stream=True)
    assert third.text == "third (turn 3)"
    # the stored response and its input, through the official client
    client = case.driver.client
    assert client.responses.retrieve(first).output_text == "first"
    client.responses.delete(first)
    with pytest.raises(openai.BadRequestError, match="not found") as caught:
        case.ask([Turn("user", "again")], previous=first)
    assert caught.value.code == "previous_response_not_found"
    assert first in caught.value.message


def test_streaming(case: Case) -> None:
    result = case.ask([Turn("user", "stream this answer please")], stream=True)
    assert result.text == "stream this answer please"
    assert result.text_deltas > 1
    assert result.finish == "stop"
    kinds = [e.type for e in case.driver.events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in kinds


def test_one_function_call(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "weather in Paris?")], tools=[WEATHER])
    ((ident, name, args),) = result.calls
    assert ident
    assert (name, args) == ("get_weather", {"city": "Paris"})
    assert result.finish == "tool_calls"


def test_parallel_function_calls(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "parallel weather for two cities")], tools=[WEATHER])
    assert [(n, a) for _, n, a in result.calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert len({ident for ident, _, _ in result.calls}) == 2


def test_streamed_arguments(case: Case) -> None:
    case.needs_real_model()
    turns = [Turn("user", "parallel weather, streamed")]
    result = case.ask(turns, tools=[WEATHER], stream=True)
    assert [(n, a) for _, n, a in result.calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_weather", {"city": "Rome"}),
    ]
    assert all(ident for ident, _, _ in result.calls)
    kinds = [e.type for e in case.driver.events]
    assert kinds.count("response.function_call_arguments.done") == 2
    assert "response.function_call_arguments.delta" in kinds


def test_function_call_round_trip(case: Case) -> None:
    case.needs_real_model()
    turns = [
        Turn("user", "weather in Paris and Rome?"),
        Turn(
            "assistant",
            calls=[
                ("call_rt_1", "get_weather", {"city": "Paris"}),
                ("call_rt-2", "get_weather", {"city": "Rome"}),
            ],
        ),
        Turn("tool", "18C sunny", call_id="call_rt_1"),
        Turn("tool", "21C cloudy", call_id="call_rt-2"),
    ]
    result = case.ask(turns, tools=[WEATHER])
    assert result.text == "tool said: 18C sunny; 21C cloudy"
    assert result.finish == "stop"


def test_function_call_loop_with_previous_response_id(case: Case) -> None:
    """What an agent does: call, run the tools, send only their outputs with the id."""
    case.needs_real_model()
    asked = case.ask([Turn("user", "parallel weather please")], tools=[WEATHER])
    outputs = [Turn("tool", f"{a['city']} fine", call_id=ident) for ident, _, a in asked.calls]
    answer = case.ask(outputs, tools=[WEATHER], previous=case.driver.last_id)
    assert answer.text == "tool said: Paris fine; Rome fine"


def test_json_schema_output(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "a person, as JSON")], json_schema=PERSON)
    assert json.loads(result.text) == {"name": "name-0", "age": 30}
    assert result.finish == "stop"


def test_image_input(case: Case) -> None:
    case.needs_real_model()
    result = case.ask([Turn("user", "what is this?", images=[PNG, CAT])])
    assert result.text == f"what is this? <2 image(s): image/png, {CAT}>"


def test_usage(case: Case) -> None:
    result = case.ask([Turn("user", "count me")])
    assert result.usage is not None
    assert result.usage[0] > 0 and result.usage[1] > 0
    usage = case.driver.last.usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens >= 0
    assert usage.output_tokens_details.reasoning_tokens >= 0


def test_usage_on_streams(case: Case) -> None:
    result = case.ask([Turn("user", "count me while streaming")], stream=True)
    assert result.usage is not None
    assert result.usage[0] > 0 and result.usage[1] > 0


@pytest.mark.parametrize(
    ("upstream_status", "status"), [(400, 400), (401, 401), (429, 429), (500, 502)]
)
def test_upstream_errors(case: Case, upstream_status: int, status: int) -> None:
    model = case.model
    if case.provider in ("openai", "groq"):
        failing = up.error(upstream_status, f"mock openai error {upstream_status}")
        case.openai.push(*[failing] * 4)
    else:
        model = f"{case.provider}/error-{upstream_status}"
    got, body = case.driver.error(model)
    assert got == status
    error = body["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    if upstream_status != 401:
        assert str(upstream_status) in error["message"]


# Reasoning: an Anthropic thinking block's signature survives the round trip --------------

THOUGHT = "Let me think about 6 times 7."
SIGNATURE = aup.sign(THOUGHT)  # what the mock Anthropic checks, as the API checks its own


def _thinking_reply() -> aup.AnthropicReply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        content = [
            {"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE},
            {"type": "text", "text": "42"},
        ]
        message = {
            "id": "msg_think01",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": content,
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 20, "output_tokens": 30},
        }
        if not body.get("stream"):
            return web.json_response(message)
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"message": {**message, "content": []}})
        ]
        start = {"index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
        events.append(("content_block_start", start))
        for piece in (THOUGHT[:10], THOUGHT[10:]):
            delta = {"type": "thinking_delta", "thinking": piece}
            events.append(("content_block_delta", {"index": 0, "delta": delta}))
        signed = {"type": "signature_delta", "signature": SIGNATURE}
        events.append(("content_block_delta", {"index": 0, "delta": signed}))
        events.append(("content_block_stop", {"index": 0}))
        text_block = {"type": "text", "text": ""}
        events.append(("content_block_start", {"index": 1, "content_block": text_block}))
        text_delta = {"type": "text_delta", "text": "42"}
        events.append(("content_block_delta", {"index": 1, "delta": text_delta}))
        events.append(("content_block_stop", {"index": 1}))
        ending = {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 30}}
        events.append(("message_delta", ending))
        events.append(("message_stop", {}))
        frames = [
            f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()
            for name, data in events
        ]
        return await up.send_stream(request, frames)

    return reply


def _sent_thinking(upstream: AnthropicUpstream) -> list[dict[str, Any]]:
    body = upstream.requests[-1].body
    return [
        block
        for message in body["messages"]
        if message["role"] == "assistant" and isinstance(message["content"], list)
        for block in message["content"]
        if block["type"] == "thinking"
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_round_trip_keeps_the_anthropic_signature(case: Case, stream: bool) -> None:
    if case.provider != "anthropic":
        pytest.skip("only Anthropic signs its thinking")
    reasoning = {"effort": "medium", "summary": "auto"}
    include = ["reasoning.encrypted_content"]
    case.anthropic.push(_thinking_reply(), _thinking_reply())
    first = case.ask(
        [Turn("user", "6 x 7?")], stream=stream, reasoning=reasoning, include=include, store=False
    )
    assert first.text == "42"
    sent = case.anthropic.requests[-1].body
    assert sent["thinking"]["type"] == "enabled"
    response = case.driver.last
    item = response.output[0]
    assert item.type == "reasoning"
    assert item.summary[0].text == THOUGHT
    assert item.encrypted_content
    if stream:
        done = [e for e in case.driver.events if e.type == "response.reasoning_summary_text.done"]
        assert done[0].text == THOUGHT
    # stateless: the client sends the reasoning item back, as the Agents SDK and Codex do
    history: list[Any] = [{"role": "user", "content": "6 x 7?"}]
    history += [i.model_dump(exclude_none=True) for i in response.output]
    history += [{"role": "user", "content": "and 6 x 8?"}]
    again: dict[str, Any] = {"reasoning": reasoning, "include": include, "store": False}
    case.driver.client.responses.create(model=case.model, input=history, **again)
    (block,) = _sent_thinking(case.anthropic)
    assert block == {"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE}
    # stored: previous_response_id brings the same block back
    case.anthropic.push(_thinking_reply())
    case.ask([Turn("user", "6 x 7?")], stream=stream, reasoning=reasoning)
    case.ask([Turn("user", "and 6 x 8?")], previous=case.driver.last_id, reasoning=reasoning)
    (block,) = _sent_thinking(case.anthropic)
    assert block["signature"] == SIGNATURE
