"""The conformance suite's third client dialect: the official `google-genai` package on the
gateway's Gemini-native routes, its `http_options` base URL pointed at the gateway and nothing
else changed. A neutral conversation (`Turn`s) becomes `contents`, the answer a `Result`."""

from __future__ import annotations

import base64
from typing import Any

from google import genai
from google.genai import errors, types

from .conformance_drivers import Result, Tool, Turn

_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter"}


def gemini_schema(schema: Any) -> Any:
    """A JSON schema in Gemini's own (OpenAPI subset) form, as a Gemini user writes one."""
    if isinstance(schema, list):
        return [gemini_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("$schema", "additionalProperties"):
            continue
        if key == "type" and isinstance(value, str):
            out[key] = value.upper()
        elif key == "properties":
            out[key] = {name: gemini_schema(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = gemini_schema(value)
        else:
            out[key] = value
    return out


class GeminiDriver:
    name = "gemini"

    def __init__(self, base_url: str, api_version: str = "v1beta") -> None:
        options = types.HttpOptions(
            base_url=base_url,
            api_version=api_version,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self.client = genai.Client(api_key="client-key", http_options=options)

    def _contents(self, turns: list[Turn]) -> list[types.Content]:
        names: dict[str, str] = {}
        contents: list[types.Content] = []
        for turn in turns:
            if turn.role == "tool":
                response = types.FunctionResponse(
                    id=turn.call_id, name=names[turn.call_id], response={"result": turn.text}
                )
                part = types.Part(function_response=response)
                if contents and contents[-1].role == "user" and contents[-1].parts:
                    contents[-1].parts.append(part)
                else:
                    contents.append(types.Content(role="user", parts=[part]))
            elif turn.role == "assistant":
                parts = [types.Part(text=turn.text)] if turn.text else []
                for ident, name, args in turn.calls:
                    names[ident] = name
                    call = types.FunctionCall(id=ident, name=name, args=args)
                    parts.append(types.Part(function_call=call))
                contents.append(types.Content(role="model", parts=parts))
            else:
                parts = [types.Part(text=turn.text)]
                for url in turn.images:
                    if url.startswith("data:"):
                        media, data = url[5:].split(";base64,")
                        blob = types.Blob(mime_type=media, data=base64.b64decode(data))
                        parts.append(types.Part(inline_data=blob))
                    else:
                        file = types.FileData(file_uri=url, mime_type="image/jpeg")
                        parts.append(types.Part(file_data=file))
                contents.append(types.Content(role="user", parts=parts))
        return contents

    def _config(
        self,
        system: str | None,
        tools: list[Tool] | None,
        force_tool: str | None,
        json_schema: dict[str, Any] | None,
    ) -> types.GenerateContentConfig:
        config = types.GenerateContentConfig(
            system_instruction=system,
            # no automatic function calling: the test reads the calls itself
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        if tools:
            declarations = [
                types.FunctionDeclaration(
                    name=t.name, description=t.description, parameters_json_schema=t.schema
                )
                for t in tools
            ]
            config.tools = [types.Tool(function_declarations=declarations)]
        if force_tool:
            calling = types.FunctionCallingConfig(
                mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=[force_tool]
            )
            config.tool_config = types.ToolConfig(function_calling_config=calling)
        if json_schema is not None:
            config.response_mime_type = "application/json"
            config.response_json_schema = json_schema
        return config

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
        contents: Any = self._contents(turns)
        config = self._config(system, tools, force_tool, json_schema)
        models = self.client.models
        if stream:
            answers = list(
                models.generate_content_stream(model=model, contents=contents, config=config)
            )
        else:
            answers = [models.generate_content(model=model, contents=contents, config=config)]
        text: list[str] = []
        calls: list[tuple[str, str, dict[str, Any]]] = []
        deltas = 0
        finish = ""
        usage: tuple[int, int] | None = None
        for answer in answers:
            if answer.usage_metadata is not None and answer.usage_metadata.total_token_count:
                meta = answer.usage_metadata
                usage = (meta.prompt_token_count or 0, meta.candidates_token_count or 0)
            for candidate in answer.candidates or ():
                for part in (candidate.content.parts if candidate.content else None) or ():
                    if part.function_call is not None:
                        call = part.function_call
                        calls.append((call.id or "", call.name or "", dict(call.args or {})))
                    elif part.text and not part.thought:
                        text.append(part.text)
                        deltas += 1
                if candidate.finish_reason is not None:
                    finish = _FINISH.get(candidate.finish_reason.value, "stop")
        if calls and finish == "stop":
            finish = "tool_calls"
        return Result("".join(text), calls, finish, usage, deltas)

    def error(self, model: str) -> tuple[int, dict[str, Any]]:
        try:
            self.client.models.generate_content(model=model, contents="x")
        except errors.APIError as e:
            body = e.details
            assert isinstance(body, dict)
            return e.code, body
        raise AssertionError("the request should have failed")
