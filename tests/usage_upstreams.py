"""Mock upstream replies that report rich usage (cache reads, cache writes with a 1-hour part,
reasoning), as JSON and as streams, in the OpenAI and Anthropic wire formats; and what the
ledger must record for them."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from mini_llm.canonical import Usage

from .upstreams import anthropic_upstream as an
from .upstreams import openai_upstream as oa
from .upstreams.scenario import Reply

OPENAI_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1000},
    "completion_tokens_details": {"reasoning_tokens": 100},
}
OPENAI_EXPECTED = Usage(
    input_tokens=200, output_tokens=300, cached_input_tokens=1000, reasoning_tokens=100
)
# gpt-4o-mini: 200 × 0.15 + 1000 × 0.075 + 200 × 0.60 + 100 × 0.60 (reasoning at the output price)
OPENAI_COST = (200 * 0.15 + 1000 * 0.075 + 200 * 0.60 + 100 * 0.60) / 1e6

ANTHROPIC_USAGE = {
    "input_tokens": 50,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 400,
    "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 100},
    "output_tokens": 300,
}
ANTHROPIC_EXPECTED = Usage(
    input_tokens=50,
    output_tokens=300,
    cached_input_tokens=1000,
    cache_write_tokens=400,
    cache_write_1h_tokens=100,
)
# claude-sonnet-4-5: 50 × 3 + 1000 × 0.30 + 300 × 3.75 (5 min) + 100 × 6 (1 h) + 300 × 15
ANTHROPIC_COST = (50 * 3 + 1000 * 0.30 + 300 * 3.75 + 100 * 6 + 300 * 15) / 1e6


def openai_rich(pieces: int = 4, delay: float = 0.0) -> oa.Reply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if not body.get("stream"):
            return web.json_response(oa.completion_json(body, "rich answer", usage=OPENAI_USAGE))
        events = [oa.sse(oa.chunk_json(body, {"role": "assistant", "content": ""}, None))]
        events += [oa.sse(oa.chunk_json(body, {"content": "abcd"}, None)) for _ in range(pieces)]
        events.append(oa.sse(oa.chunk_json(body, {}, "stop")))
        if (body.get("stream_options") or {}).get("include_usage"):
            last = oa.chunk_json(body, {}, None)
            last["choices"] = []
            last["usage"] = OPENAI_USAGE
            events.append(oa.sse(last))
        events.append(b"data: [DONE]\n\n")
        return await oa.send_stream(request, events, delay)

    return reply


def _rewrite(event: bytes) -> bytes:
    head, _, data = event.partition(b"data: ")
    payload = json.loads(data)
    if payload.get("type") == "message_start":
        payload["message"]["usage"] = {**ANTHROPIC_USAGE, "output_tokens": 1}
    elif payload.get("type") == "message_delta":
        payload["usage"] = {"output_tokens": ANTHROPIC_USAGE["output_tokens"]}
    return head + b"data: " + json.dumps(payload).encode() + b"\n\n"


def anthropic_rich() -> an.AnthropicReply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        if not body.get("stream"):
            message = an.message_json(body, Reply(text="rich answer"))
            message["usage"] = ANTHROPIC_USAGE
            return web.json_response(message)
        events = [_rewrite(e) for e in an.stream_events(body, Reply(text="rich answer"))]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    return reply
