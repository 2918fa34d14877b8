"""OpenAI's Responses API as a mock upstream serves it: `POST /v1/responses` (a `response`
object, or its stream of events with sequence numbers), `GET`/`DELETE /v1/responses/{id}` and
`previous_response_id` resolved from what it stored, as OpenAI does.

Answers follow `scenario.decide`, read from the Responses request (`ask_of`), so a case predicts
the same answer through pass-through as through every translation. Mounted on the mock OpenAI
upstream (`OpenAIUpstream.app`), whose script (`push`) answers first when it has a reply.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from aiohttp import web

from .openai_upstream import send_stream
from .scenario import Ask, Reply, decide, pieces

USAGE = {
    "input_tokens": 9,
    "input_tokens_details": {"cached_tokens": 2},
    "output_tokens": 4,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 13,
}
_ids = itertools.count(1)


def items_of(given: Any) -> list[dict[str, Any]]:
    if isinstance(given, str):
        return [{"type": "message", "role": "user", "content": given}]
    return [dict(i, type=i.get("type") or "message") for i in given or ()]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(
        str(p.get("text", ""))
        for p in content or ()
        if p.get("type") in ("input_text", "output_text")
    )


def ask_of(body: dict[str, Any], history: list[dict[str, Any]]) -> Ask:
    ask = Ask(system=str(body.get("instructions") or ""))
    items = history + items_of(body.get("input"))
    tail: list[str] = []
    for item in items:
        kind, role = item.get("type"), item.get("role")
        if kind == "message" and role in ("system", "developer"):
            ask.system = _text(item.get("content"))
        elif kind == "message" and role == "user":
            ask.user_texts.append(_text(item.get("content")))
            content = item.get("content")
            for part in content if isinstance(content, list) else ():
                if part.get("type") == "input_image":
                    url = str(part.get("image_url"))
                    ask.images.append(url.split(";")[0][5:] if url.startswith("data:") else url)
            tail = []
        elif kind == "function_call_output":
            tail.append(str(item.get("output")))
        elif kind in ("function_call", "message"):
            tail = []
    if items and items[-1].get("type") == "function_call_output":
        ask.tool_results = tail
    for tool in body.get("tools") or ():
        if tool.get("type") == "function":
            ask.tools.append((tool["name"], tool.get("parameters") or {}))
    choice = body.get("tool_choice")
    if choice == "none":
        ask.tools_refused = True
    elif isinstance(choice, dict) and choice.get("type") == "function":
        ask.forced_tool = choice.get("name")
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        ask.json_schema = fmt.get("schema") or {}
    elif fmt.get("type") == "json_object":
        ask.json_schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    return ask


def output_of(reply: Reply, n: int) -> list[dict[str, Any]]:
    output: list[dict[str, Any]] = []
    if reply.text:
        part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
        output.append(
            {
                "type": "message",
                "id": f"msg_up{n}",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    for i, call in enumerate(reply.calls):
        output.append(
            {
                "type": "function_call",
                "id": f"fc_up{n}_{i}",
                "call_id": call.id,
                "name": call.name,
                "arguments": json.dumps(call.args),
                "status": "completed",
            }
        )
    return output


def response_json(
    body: dict[str, Any], ident: str, output: list[dict[str, Any]], status: str = "completed"
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model", "unknown"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": USAGE if status != "in_progress" else None,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def stream_events(body: dict[str, Any], ident: str, output: list[dict[str, Any]]) -> list[bytes]:
    events: list[bytes] = []

    def emit(kind: str, **payload: Any) -> None:
        data = {"type": kind, "sequence_number": len(events), **payload}
        events.append(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())

    emit("response.created", response=response_json(body, ident, [], "in_progress"))
    emit("response.in_progress", response=response_json(body, ident, [], "in_progress"))
    for index, item in enumerate(output):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            text = item["content"][0]["text"]
            emit("response.output_item.added", output_index=index, item={**item, "content": []})
            empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            emit("response.content_part.added", **where, content_index=0, part=empty)
            for piece in pieces(text):
                emit(
                    "response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[]
                )
            emit("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
            emit("response.content_part.done", **where, content_index=0, part=item["content"][0])
        else:
            emit("response.output_item.added", output_index=index, item={**item, "arguments": ""})
            for piece in pieces(item["arguments"], 7):
                emit("response.function_call_arguments.delta", **where, delta=piece)
            emit("response.function_call_arguments.done", **where, arguments=item["arguments"])
        emit("response.output_item.done", output_index=index, item=item)
    emit("response.completed", response=response_json(body, ident, output))
    return events


class ResponsesAPI:
    """What the upstream keeps between requests: its stored responses."""

    def __init__(self) -> None:
        self.stored: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self.inputs: dict[str, list[dict[str, Any]]] = {}

    def reset(self) -> None:
        self.stored.clear()

    async def create(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        history: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous:
            if previous not in self.stored:
                error = {
                    "message": f"Previous response with id '{previous}' not found.",
                    "type": "invalid_request_error",
                    "param": "previous_response_id",
                    "code": "previous_response_not_found",
                }
                return web.json_response({"error": error}, status=400)
            history = self.stored[previous][1]
        n = next(_ids)
        ident = f"resp_upstream{n:04d}"
        output = output_of(decide(ask_of(body, history)), n)
        conversation = history + items_of(body.get("input")) + output
        response = response_json(body, ident, output)
        if body.get("store", True):
            self.stored[ident] = (response, conversation)
            self.inputs[ident] = items_of(body.get("input"))
        if body.get("stream"):
            return await send_stream(request, stream_events(body, ident, output))
        return web.json_response(response)

    async def retrieve(self, request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        if ident not in self.stored:
            return _not_found(ident)
        if request.method == "DELETE":
            del self.stored[ident]
            return web.json_response({"id": ident, "object": "response", "deleted": True})
        return web.json_response(self.stored[ident][0])

    async def input_items(self, request: web.Request) -> web.StreamResponse:
        ident = request.match_info["id"]
        if ident not in self.stored:
            return _not_found(ident)
        items = [{"id": f"msg_in{i}", **item} for i, item in enumerate(self.inputs[ident])]
        page = {"object": "list", "data": items[::-1], "has_more": False}
        return web.json_response(page)


def _not_found(ident: str) -> web.Response:
    error = {
        "message": f"Response with id '{ident}' not found.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    return web.json_response({"error": error}, status=404)
