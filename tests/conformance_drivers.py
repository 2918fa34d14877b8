"""The two client dialects of the conformance suite, each driving its official client.

A case is written once as a neutral conversation (`Turn`s) and options; a driver turns it into
its client's call (`openai` on /v1/chat/completions, `anthropic` on /v1/messages) and the
answer back into a neutral `Result`, so every assertion is made the same way for both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai


@dataclass
class Turn:
    role: str  # "user", "assistant" or "tool"
    text: str = ""
    images: list[str] = field(default_factory=list)  # data: or https: URLs
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    call_id: str = ""  # for a tool result


@dataclass
class Tool:
    name: str
    description: str
    schema: dict[str, Any]


@dataclass
class Result:
    text: str
    calls: list[tuple[str, str, dict[str, Any]]]
    finish: str  # "stop", "tool_calls" or "length"
    usage: tuple[int, int] | None  # (input, output)
    text_deltas: int = 0


class OpenAIDriver:
    name = "openai"

    def __init__(self, base_url: str) -> None:
        self.client = openai.OpenAI(base_url=base_url + "/v1", api_key="client-key", max_retries=0)

    def ask(
        self,
        model: str,
        turns: list[Turn],
        *,
        system: str | None = None,
        tools: list[Tool] | None = None,
        force_tool: str | None = None,
        json_schema: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> Result:
        messages: list[Any] = [{"role": "system", "content": system}] if system else []
        for turn in turns:
            messages.append(self._message(turn))
        kwargs: dict[str, Any] = {"model": model, "messages": messages}
        if tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.schema,
                    },
                }
                for t in tools
            ]
        if force_tool:
            kwargs["tool_choice"] = {"type": "function", "function": {"name": force_tool}}
        if json_schema is not None:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema},
            }
        if not stream:
            completion = self.client.chat.completions.create(**kwargs)
            choice = completion.choices[0]
            calls = [
                (c.id, c.function.name, json.loads(c.function.arguments or "{}"))
                for c in choice.message.tool_calls or ()
                if c.type == "function"
            ]
            usage = completion.usage
            return Result(
                choice.message.content or "",
                calls,
                str(choice.finish_reason),
                (usage.prompt_tokens, usage.completion_tokens) if usage else None,
            )
        text: list[str] = []
        deltas = 0
        parts: dict[int, list[Any]] = {}
        finish = ""
        usage_pair: tuple[int, int] | None = None
        for chunk in self.client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        ):
            if chunk.usage is not None:
                usage_pair = (chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                if choice.delta.content:
                    text.append(choice.delta.content)
                    deltas += 1
                for call in choice.delta.tool_calls or ():
                    entry = parts.setdefault(call.index, ["", "", ""])
                    if call.id:
                        assert not entry[0], "a tool call's id must come once, on its first delta"
                        entry[0] = call.id
                    if call.function and call.function.name:
                        entry[1] = call.function.name
                    if call.function and call.function.arguments:
                        entry[2] += call.function.arguments
                if choice.finish_reason:
                    finish = choice.finish_reason
        calls = [(p[0], p[1], json.loads(p[2] or "{}")) for _, p in sorted(parts.items())]
        return Result("".join(text), calls, finish, usage_pair, deltas)

    def _message(self, turn: Turn) -> dict[str, Any]:
        if turn.role == "tool":
            return {"role": "tool", "tool_call_id": turn.call_id, "content": turn.text}
        if turn.role == "assistant":
            message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
            if turn.calls:
                message["tool_calls"] = [
                    {
                        "id": ident,
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(args)},
                    }
                    for ident, name, args in turn.calls
                ]
            return message
        if not turn.images:
            return {"role": "user", "content": turn.text}
        content: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
        content += [{"type": "image_url", "image_url": {"url": url}} for url in turn.images]
        return {"role": "user", "content": content}

    def error(self, model: str) -> tuple[int, dict[str, Any]]:
        try:
            self.client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "x"}]
            )
        except openai.APIStatusError as e:
            body = e.response.json()
            assert isinstance(body, dict)
            return e.status_code, body
        raise AssertionError("the request should have failed")


_STOP = {"end_turn": "stop", "tool_use": "tool_calls", "max_tokens": "length"}


class AnthropicDriver:
    name = "anthropic"

    def __init__(self, base_url: str) -> None:
        self.client = anthropic.Anthropic(base_url=base_url, api_key="client-key", max_retries=0)

    def ask(
        self,
        model: str,
        turns: list[Turn],
        *,
        system: str | None = None,
        tools: list[Tool] | None = None,
        force_tool: str | None = None,
        json_schema: dict[str, Any] | None = None,
        stream: bool = False,
    ) -> Result:
        kwargs: dict[str, Any] = {
            "model": model,
            "max_tokens": 256,
            "messages": self._messages(turns),
        }
        if system:
            kwargs["system"] = system
        if json_schema is not None:  # Anthropic's way to JSON: a forced tool with the schema
            tools = [Tool("emit_json", "Return the answer as JSON", json_schema)]
            force_tool = "emit_json"
        if tools:
            kwargs["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.schema}
                for t in tools
            ]
        if force_tool:
            kwargs["tool_choice"] = {"type": "tool", "name": force_tool}
        deltas = 0
        if stream:
            with self.client.messages.stream(**kwargs) as events:
                for event in events:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        deltas += 1
                message = events.get_final_message()
        else:
            message = self.client.messages.create(**kwargs)
        text = "".join(b.text for b in message.content if b.type == "text")
        calls = [(b.id, b.name, dict(b.input)) for b in message.content if b.type == "tool_use"]
        if json_schema is not None and calls:
            text, calls = json.dumps(calls[0][2]), []
        usage = (message.usage.input_tokens, message.usage.output_tokens)
        finish = _STOP.get(str(message.stop_reason), str(message.stop_reason))
        if json_schema is not None and finish == "tool_calls":
            finish = "stop"
        return Result(text, calls, finish, usage, deltas)

    def _messages(self, turns: list[Turn]) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for turn in turns:
            if turn.role == "tool":
                block = {"type": "tool_result", "tool_use_id": turn.call_id, "content": turn.text}
                if messages and messages[-1]["role"] == "user":
                    messages[-1]["content"].append(block)
                else:
                    messages.append({"role": "user", "content": [block]})
            elif turn.role == "assistant":
                content: list[dict[str, Any]] = (
                    [{"type": "text", "text": turn.text}] if turn.text else []
                )
                content += [
                    {"type": "tool_use", "id": ident, "name": name, "input": args}
                    for ident, name, args in turn.calls
                ]
                messages.append({"role": "assistant", "content": content})
            else:
                content = [{"type": "text", "text": turn.text}]
                for url in turn.images:
                    if url.startswith("data:"):
                        media, data = url[5:].split(";base64,")
                        source = {"type": "base64", "media_type": media, "data": data}
                    else:
                        source = {"type": "url", "url": url}
                    content.append({"type": "image", "source": source})
                messages.append({"role": "user", "content": content})
        return messages

    def error(self, model: str) -> tuple[int, dict[str, Any]]:
        try:
            self.client.messages.create(
                model=model, max_tokens=5, messages=[{"role": "user", "content": "x"}]
            )
        except anthropic.APIStatusError as e:
            body = e.response.json()
            assert isinstance(body, dict)
            return e.status_code, body
        raise AssertionError("the request should have failed")
