"""What a mock upstream answers, decided once for every wire format.

Each mock upstream reads its own wire format into an `Ask` (the parts of a request that
matter to the conformance cases) and renders the `Reply` that `decide` picks back in its own
wire format. The rules, so tests can predict answers through every translation:

- the last turn is tool results -> text `tool said: <results joined with "; ">`;
- tools are offered (and not refused) -> a call to the forced tool or the first tool, with
  arguments sampled from its schema; two calls when the prompt says "parallel";
- JSON output was asked for -> the JSON sampled from the schema, as text;
- otherwise -> the last user text, prefixed with `[<system>] ` when there is a system prompt,
  followed by ` (turn N)` after earlier user turns and ` <N image(s): ...>` for images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

CITIES = ("Paris", "Rome", "Oslo")


@dataclass
class Ask:
    system: str = ""
    user_texts: list[str] = field(default_factory=list)
    tool_results: list[str] | None = None
    tools: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    forced_tool: str | None = None
    tools_refused: bool = False
    json_schema: dict[str, Any] | None = None
    images: list[str] = field(default_factory=list)


@dataclass
class Call:
    id: str
    name: str
    args: dict[str, Any]


@dataclass
class Reply:
    text: str = ""
    calls: list[Call] = field(default_factory=list)
    thinking: str = ""
    """Said before the rest, as a signed thinking block (the Anthropic mock only)."""


def sample(schema: Any, seed: int = 0) -> Any:
    """A value that satisfies a (simple) JSON schema."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _sample_prop(name, sub, seed) for name, sub in props.items()}
    if kind == "array":
        return [sample(schema.get("items") or {"type": "string"}, seed)]
    return _sample_prop("", schema, seed)


def _sample_prop(name: str, schema: Any, seed: int) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else "string"
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind in ("object", "array") or (isinstance(schema, dict) and "enum" in schema):
        return sample(schema, seed)
    if kind == "integer":
        return 30 + seed
    if kind == "number":
        return 1.5 + seed
    if kind == "boolean":
        return True
    if name in ("city", "location"):
        return CITIES[seed % len(CITIES)]
    return f"{name or 'value'}-{seed}"


def decide(ask: Ask) -> Reply:
    if ask.tool_results is not None:
        return Reply(text="tool said: " + "; ".join(ask.tool_results))
    last = ask.user_texts[-1] if ask.user_texts else ""
    if ask.tools and not ask.tools_refused:
        schemas = dict(ask.tools)
        name = ask.forced_tool if ask.forced_tool in schemas else ask.tools[0][0]
        assert name is not None
        count = 2 if "parallel" in last.lower() and not ask.forced_tool else 1
        calls = [Call(f"call_mock_{i}", name, sample(schemas[name], i)) for i in range(count)]
        return Reply(calls=calls)
    if ask.json_schema is not None:
        return Reply(text=json.dumps(sample(ask.json_schema)))
    text = last
    if ask.system:
        text = f"[{ask.system}] {text}"
    if len(ask.user_texts) > 1:
        text += f" (turn {len(ask.user_texts)})"
    if ask.images:
        text += f" <{len(ask.images)} image(s): {', '.join(ask.images)}>"
    return Reply(text=text)


def pieces(text: str, size: int = 4) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# The OpenAI wire, for the OpenAI mock upstream's `default` -----------------------------------


def openai_ask(body: dict[str, Any]) -> Ask:
    ask = Ask()
    messages = body.get("messages") or []
    tail: list[str] = []
    for message in messages:
        role, content = message.get("role"), message.get("content")
        if role in ("system", "developer"):
            ask.system = _openai_text(content)
        elif role == "user":
            ask.user_texts.append(_openai_text(content))
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        url = str(part["image_url"]["url"])
                        ask.images.append(url.split(";")[0][5:] if url.startswith("data:") else url)
            tail = []
        elif role == "tool":
            tail.append(_openai_text(content))
        elif role == "assistant":
            tail = []
    if messages and messages[-1].get("role") == "tool":
        ask.tool_results = tail
    for tool in body.get("tools") or ():
        function = tool.get("function") or {}
        ask.tools.append((function.get("name", ""), function.get("parameters") or {}))
    choice = body.get("tool_choice")
    if choice == "none":
        ask.tools_refused = True
    elif isinstance(choice, dict):
        ask.forced_tool = (choice.get("function") or {}).get("name")
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        ask.json_schema = (response_format.get("json_schema") or {}).get("schema") or {}
    elif response_format.get("type") == "json_object":
        ask.json_schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    return ask


def _openai_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def openai_reply_body(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
    if reply.calls:
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.args)},
            }
            for c in reply.calls
        ]
    return {
        "id": "chatcmpl-smart1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": body.get("model", "unknown"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if reply.calls else "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


def openai_reply_chunks(body: dict[str, Any], reply: Reply) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-smart1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": body.get("model", "unknown"),
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    chunks = [chunk({"role": "assistant", "content": ""}, None)]
    chunks += [chunk({"content": p}, None) for p in pieces(reply.text)]
    for i, call in enumerate(reply.calls):
        first = {"index": i, "id": call.id, "type": "function"}
        first["function"] = {"name": call.name, "arguments": ""}
        chunks.append(chunk({"tool_calls": [first]}, None))
        for piece in pieces(json.dumps(call.args), 7):
            chunks.append(
                chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, None)
            )
    chunks.append(chunk({}, "tool_calls" if reply.calls else "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = chunk({}, None)
        usage["choices"] = []
        usage["usage"] = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
        chunks.append(usage)
    return chunks
