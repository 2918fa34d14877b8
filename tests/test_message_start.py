"""Translated Anthropic streams fill `message_start`'s input tokens (issue 9 item 21): the
upstream's figure when its first chunk has one, else an estimate; `message_delta` exact."""

from __future__ import annotations

import json
from typing import Any

from mini_llm.dialects.anthropic.response import AnthropicEventWriter

from .conftest import GatewayFactory
from .harness import http


def _events(data: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[5:])
        for line in data.decode().splitlines()
        if line.startswith("data:") and line[5:].strip()
    ]


def test_message_start_has_an_estimate_then_message_delta_the_figure(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway({})
    prompt = "a prompt of a few words, long enough to count " * 8
    body = {
        "model": "mock/echo",
        "max_tokens": 50,
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }
    status, _, data = http("POST", gateway.url + "/v1/messages", json.dumps(body).encode())
    assert status == 200
    events = _events(data)
    start = events[0]
    assert start["type"] == "message_start"
    estimate = start["message"]["usage"]["input_tokens"]
    (delta,) = [e for e in events if e["type"] == "message_delta"]
    exact = delta["usage"]["input_tokens"]
    assert exact > 0
    assert 0.5 * exact <= estimate <= 2 * exact  # an estimate, close to the figure


def test_the_upstreams_figure_when_it_comes_first() -> None:
    writer = AnthropicEventWriter("m", input_estimate=999)
    first = {
        "id": "x",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 1, "total_tokens": 43},
    }
    (start, *_) = writer.feed(first)
    payload = json.loads(start.decode().split("data: ", 1)[1])
    assert payload["message"]["usage"]["input_tokens"] == 42
    assert payload["message"]["usage"]["output_tokens"] == 0
