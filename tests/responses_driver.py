"""The Responses dialect of the conformance suite: the official `openai` client's
`responses.create` and `responses.stream` on /v1/responses, a neutral conversation in,
a neutral `Result` out (as `conformance_drivers` does for the other two dialects)."""

from __future__ import annotations

import json
from typing import Any

import openai

from .conformance_drivers import Result, Tool, Turn


class ResponsesDriver:
    name = "responses"

    def __init__(self, base_url: str) -> None:
        self.client = openai.OpenAI(base_url=base_url + "/v1", api_key="client-key", max_retries=0)
        self.last_id = ""
        self.last: Any = None  # the last response object
        self.events: list[Any] = []  # the last stream's events

    def items(self, turns: list[Turn]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for turn in turns:
            if turn.role == "tool":
                items.append(
                    {"type": "function_call_output", "call_id": turn.call_id, "output": turn.text}
                )
            elif turn.role == "assistant":
                if turn.text:
                    items.append({"role": "assistant", "content": turn.text})
                for ident, name, args in turn.calls:
                    items.append(
                        {
                            "type": "function_call",
                            "call_id": ident,
                            "name": name,
                            "arguments": json.dumps(args),
                        }
                    )
            else:
                content: list[dict[str, Any]] = [{"type": "input_text", "text": turn.text}]
                content += [
                    {"type": "input_image", "image_url": url, "detail": "auto"}
                    for url in turn.images
                ]
                items.append({"type": "message", "role": "user", "content": content})
        return items

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
        previous: str | None = None,
        **extra: Any,
    ) -> Result:
        kwargs: dict[str, Any] = {"model": model, "input": self.items(turns), **extra}
        if system:
            kwargs["instructions"] = system
        if previous:
            kwargs["previous_response_id"] = previous
        if tools:
            kwargs["tools"] = [
                {
                    "type": "function",
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.schema,
                    "strict": False,
                }
                for t in tools
            ]
        if force_tool:
            kwargs["tool_choice"] = {"type": "function", "name": force_tool}
        if json_schema is not None:
            kwargs["text"] = {
                "format": {"type": "json_schema", "name": "answer", "schema": json_schema}
            }
        deltas = 0
        self.events = []
        if stream:
            with self.client.responses.stream(**kwargs) as events:
                for event in events:
                    self.events.append(event)
                    if event.type == "response.output_text.delta":
                        deltas += 1
                response = events.get_final_response()
            numbers = [e.sequence_number for e in self.events]
            assert numbers == list(range(len(numbers))), numbers
        else:
            response = self.client.responses.create(**kwargs)
        self.last, self.last_id = response, response.id
        calls = [
            (item.call_id, item.name, json.loads(item.arguments or "{}"))
            for item in response.output
            if item.type == "function_call"
        ]
        finish = "tool_calls" if calls else "stop"
        if response.status == "incomplete":
            finish = "length"
        usage = response.usage
        return Result(
            response.output_text,
            calls,
            finish,
            (usage.input_tokens, usage.output_tokens) if usage else None,
            deltas,
        )

    def error(self, model: str) -> tuple[int, dict[str, Any]]:
        try:
            self.client.responses.create(model=model, input="x")
        except openai.APIStatusError as e:
            body = e.response.json()
            assert isinstance(body, dict)
            return e.status_code, body
        raise AssertionError("the request should have failed")
