"""A scripted coding agent's model, for the mock upstreams (models named `agent-reader...`).

It drives a real agent (Claude Code) through one tool loop, whatever the wire format:

- no tool result yet and a `.txt` path in the user's words -> a call to the tool named `Read`
  with `file_path` set to that path (the tool's schema, as the agent sent it, names the field);
- a tool result present -> a text answer quoting every tool result;
- otherwise -> `You said: <the last user text>` (a plain answer).

Each mock reads its own wire format into `(user texts, tool results, tools)`; the decision is
made once, here.
"""

from __future__ import annotations

import re
from typing import Any

from .scenario import Call, Reply

AGENT_MODEL = "agent-reader"
ANSWER_PREFIX = "The file says: "
PLAIN_PREFIX = "You said: "

_PATH = re.compile(r"(/[\w.\-/]+\.txt)")


def is_agent(model: str) -> bool:
    return model.rsplit("/", 1)[-1].startswith(AGENT_MODEL)


def agent_reply(
    texts: list[str], results: list[str], tools: dict[str, dict[str, Any]], thinking: bool = False
) -> Reply:
    if results:
        return Reply(text=ANSWER_PREFIX + " | ".join(results))
    path = next((m.group(1) for text in reversed(texts) for m in _PATH.finditer(text)), None)
    schema = tools.get("Read")
    if path is None:
        return Reply(text=PLAIN_PREFIX + (texts[-1] if texts else ""))
    if schema is None:
        return Reply(text=f"cannot read {path}: no Read tool among {sorted(tools)}")
    properties = schema.get("properties") or {}
    field = "file_path" if "file_path" in properties else next(iter(properties), "file_path")
    reply = Reply(calls=[Call("call_agent_read", "Read", {field: path})])
    if thinking:
        reply.thinking = f"The user wants {path}; I will read it."
    return reply


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def anthropic_agent(body: dict[str, Any]) -> Reply:
    texts: list[str] = []
    results: list[str] = []
    for message in body.get("messages") or ():
        content = message.get("content")
        if message.get("role") != "user":
            continue
        for block in content if isinstance(content, list) else [{"type": "text", "text": content}]:
            if block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                results.append(_text(block.get("content")))
    tools = {t["name"]: t.get("input_schema") or {} for t in body.get("tools") or ()}
    thinking = (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    return agent_reply(texts, results, tools, thinking)


def openai_agent(body: dict[str, Any]) -> Reply:
    texts: list[str] = []
    results: list[str] = []
    for message in body.get("messages") or ():
        if message.get("role") == "user":
            texts.append(_text(message.get("content")))
        elif message.get("role") == "tool":
            results.append(_text(message.get("content")))
    tools = {}
    for tool in body.get("tools") or ():
        function = tool.get("function") or {}
        tools[function.get("name", "")] = function.get("parameters") or {}
    return agent_reply(texts, results, tools)


def gemini_agent(body: dict[str, Any]) -> Reply:
    texts: list[str] = []
    results: list[str] = []
    for content in body.get("contents") or ():
        if content.get("role") != "user":
            continue
        for part in content.get("parts") or ():
            if "text" in part:
                texts.append(str(part["text"]))
            elif "functionResponse" in part:
                response = part["functionResponse"].get("response") or {}
                results.append(str(response.get("result", response)))
    tools = {}
    for tool in body.get("tools") or ():
        for declaration in tool.get("functionDeclarations") or ():
            tools[declaration["name"]] = declaration.get("parameters") or {}
    return agent_reply(texts, results, tools)
