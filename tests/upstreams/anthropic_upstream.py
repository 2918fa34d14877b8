"""A mock Anthropic Messages upstream speaking the real wire format (JSON, SSE, error bodies).

It answers `/v1/messages` as `scenario.decide` says (text, tool calls, JSON through a forced
tool), as a message or as a stream of events (`message_start`, content blocks with
`text_delta`/`input_json_delta`, a `ping`, `message_delta`, `message_stop`), and
`/v1/messages/count_tokens`. A model named `error-<status>` answers that status with an
Anthropic error body; a model named `agent-reader...` is a scripted coding agent
(`agent_script`), thinking first (a signed block) when the request asks for thinking;
`push(reply, ...)` scripts other answers. Requests without `x-api-key` or `anthropic-version`
get 401/400 as from the real API. Every request is recorded.

What the real API enforces and agents trip over, enforced here too (400, Anthropic's wording):
a thinking block must come back exactly as it was signed, and with thinking on, an assistant
turn that called tools must still start with its thinking; at most 4 `cache_control`
breakpoints; `context_management` and `output_config.effort` only with their beta.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .agent_script import anthropic_agent, is_agent
from .openai_upstream import Recorded, send_stream
from .scenario import Ask, Reply, decide, pieces

AnthropicReply = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]

_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
USAGE = {"input_tokens": 11, "output_tokens": 5, "cache_read_input_tokens": 2}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error(status: int, message: str = "upstream error") -> AnthropicReply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return web.json_response(error_body(status, message), status=status)

    return reply


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def ask_of(body: dict[str, Any]) -> Ask:
    ask = Ask(system=_text(body.get("system")))
    messages = body.get("messages") or []
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user":
            continue
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        results = [b for b in blocks if b.get("type") == "tool_result"]
        texts = [b.get("text", "") for b in blocks if b.get("type") == "text"]
        if texts or not results:
            ask.user_texts.append("".join(texts))
        for block in blocks:
            if block.get("type") == "image":
                source = block["source"]
                media = source.get("media_type") if source["type"] == "base64" else source["url"]
                ask.images.append(str(media))
        if message is messages[-1] and results:
            ask.tool_results = [_text(r.get("content")) for r in results]
    for tool in body.get("tools") or ():
        ask.tools.append((tool["name"], tool.get("input_schema") or {}))
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool":
        ask.forced_tool = choice.get("name")
    elif choice.get("type") == "none":
        ask.tools_refused = True
    return ask


def sign(thinking: str) -> str:
    """The mock's signature of a thinking text (the real one is opaque; this one is checked)."""
    return "mocksig_" + hashlib.sha256(thinking.encode()).hexdigest()[:24]


def _content(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.thinking:
        thought = {"type": "thinking", "thinking": reply.thinking}
        blocks.append({**thought, "signature": sign(reply.thinking)})
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    for call in reply.calls:
        blocks.append(
            {"type": "tool_use", "id": f"toolu_{call.id}", "name": call.name, "input": call.args}
        )
    return blocks


def message_json(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    return {
        "id": "msg_mock01",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "unknown"),
        "content": _content(reply),
        "stop_reason": "tool_use" if reply.calls else "end_turn",
        "stop_sequence": None,
        "usage": USAGE,
    }


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()


def stream_events(body: dict[str, Any], reply: Reply) -> list[bytes]:
    start = message_json(body, Reply())
    start["stop_reason"] = None
    start["usage"] = {**USAGE, "output_tokens": 1}
    events = [_event("message_start", {"type": "message_start", "message": start})]
    index = 0
    if reply.thinking:
        events += _thinking_events(reply.thinking)
        index = 1
    if reply.text:
        block = {"type": "text", "text": ""}
        events.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        events.append(_event("ping", {"type": "ping"}))
        for piece in pieces(reply.text):
            delta = {"type": "text_delta", "text": piece}
            events.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    for call in reply.calls:
        tool_block = {"type": "tool_use", "id": f"toolu_{call.id}", "name": call.name, "input": {}}
        events.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": tool_block},
            )
        )
        for piece in ["", *pieces(json.dumps(call.args), 6)]:
            json_delta = {"type": "input_json_delta", "partial_json": piece}
            events.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": json_delta},
                )
            )
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        index += 1
    stop = "tool_use" if reply.calls else "end_turn"
    end: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": None},
        "usage": {"output_tokens": 5},
    }
    events.append(_event("message_delta", end))
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def _thinking_events(thinking: str) -> list[bytes]:
    start = {"type": "thinking", "thinking": "", "signature": ""}
    events = [
        _event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": start},
        )
    ]
    deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(thinking, 8)]
    deltas.append({"type": "signature_delta", "signature": sign(thinking)})
    for delta in deltas:
        payload = {"type": "content_block_delta", "index": 0, "delta": delta}
        events.append(_event("content_block_delta", payload))
    events.append(_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
    return events


def smart() -> AnthropicReply:
    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        model = str(body.get("model", ""))
        answer = anthropic_agent(body) if is_agent(model) else decide(ask_of(body))
        if body.get("stream"):
            return await send_stream(request, stream_events(body, answer))
        return web.json_response(message_json(body, answer))

    return reply


def error_mid_stream(text: str) -> AnthropicReply:
    """Start a message, send some text, then an `error` event (Anthropic's overloaded)."""

    async def reply(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        events = stream_events(body, Reply(text=text))[:4]
        events.append(_event("error", error_body(529, "Overloaded")))
        return await send_stream(request, events)

    return reply


MAX_CACHE_BREAKPOINTS = 4
BETAS = {
    "context_management": "context-management-2025-06-27",
    "output_config.effort": "effort-2025-11-24",
}


def _blocks(body: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    system = body.get("system")
    found += [b for b in system if isinstance(b, dict)] if isinstance(system, list) else []
    for message in body.get("messages") or ():
        content = message.get("content")
        found += [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    return found


def enforced(body: dict[str, Any], betas: str) -> str | None:
    """What the real API refuses in a request that got this far (its wording), or None."""
    blocks = _blocks(body)
    marked = [b for b in blocks + list(body.get("tools") or ()) if b.get("cache_control")]
    if len(marked) > MAX_CACHE_BREAKPOINTS:
        return (
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marked)}."
        )
    given = {"context_management": "context_management" in body}
    given["output_config.effort"] = bool((body.get("output_config") or {}).get("effort"))
    for field_name, beta in BETAS.items():
        if given[field_name] and beta not in betas.split(","):
            return f"{field_name}: Extra inputs are not permitted (needs the {beta} beta)"
    for i, message in enumerate(body.get("messages") or ()):
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if block.get("type") == "thinking" and block.get("signature") != sign(
                str(block.get("thinking", ""))
            ):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
    thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    messages = body.get("messages") or []
    last = messages[-2] if len(messages) >= 2 else None
    if thinking and last is not None and last.get("role") == "assistant":
        content = last.get("content")
        kinds = [b.get("type") for b in content] if isinstance(content, list) else ["text"]
        if "tool_use" in kinds and kinds[0] not in ("thinking", "redacted_thinking"):
            return (
                f"messages.{len(messages) - 2}.content.0.type: Expected `thinking` or "
                f"`redacted_thinking`, but found `{kinds[0]}`. When `thinking` is enabled, a "
                "final `assistant` message must start with a thinking block."
            )
    return None


class AnthropicUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[AnthropicReply] = deque()

    def push(self, *replies: AnthropicReply) -> None:
        self._script.extend(replies)

    def reset(self) -> None:
        self.requests.clear()
        self._script.clear()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count)
        return app

    async def _read(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(await request.read())
        self.requests.append(Recorded(request.method, request.path, dict(request.headers), body))
        return body

    def _refuse(self, request: web.Request) -> web.Response | None:
        if not request.headers.get("x-api-key"):
            return web.json_response(error_body(401, "x-api-key header is required"), status=401)
        if not request.headers.get("anthropic-version"):
            return web.json_response(
                error_body(400, "anthropic-version header is required"), status=400
            )
        return None

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        model = str(body.get("model", ""))
        if model.startswith("error-") and model[6:].isdigit():
            return await error(int(model[6:]), f"mock anthropic error {model[6:]}")(request, body)
        for i, message in enumerate(body.get("messages") or ()):
            content = message.get("content")
            for block in content if isinstance(content, list) else ():
                ident = block.get("id") or block.get("tool_use_id")
                if ident is not None and not _TOOL_ID.fullmatch(ident):
                    message_text = f"messages.{i}.content: tool id {ident!r} does not match"
                    return web.json_response(error_body(400, message_text), status=400)
        if "max_tokens" not in body:
            return web.json_response(error_body(400, "max_tokens: Field required"), status=400)
        problem = enforced(body, request.headers.get("anthropic-beta", ""))
        if problem is not None:
            return web.json_response(error_body(400, problem), status=400)
        reply = self._script.popleft() if self._script else smart()
        return await reply(request, body)

    async def _count(self, request: web.Request) -> web.StreamResponse:
        body = await self._read(request)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        if "max_tokens" in body:
            return web.json_response(
                error_body(400, "max_tokens: Extra inputs are not permitted"), status=400
            )
        return web.json_response({"input_tokens": 17})
