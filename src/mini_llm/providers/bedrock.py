"""AWS Bedrock's Converse API: canonical (OpenAI chat) requests out, SigV4-signed.

Pure: dicts in, dicts out. `POST {endpoint}/model/{modelId}/converse` (`/converse-stream`), the
model id percent-encoded as one path segment (`anthropic.claude-…-v1%3A0`, cross-region
profiles `us.…`, `eu.…`, `global.…` alike). The mapping:

- system/developer messages -> `system` text blocks; consecutive same-role turns merged;
- text parts -> `text`; data-URL images -> `image` bytes (`png`, `jpeg`, `gif`, `webp`);
  `s3://` image URLs -> `s3Location` (Converse takes no http(s) image URL: a 400 names it);
- assistant `tool_calls` -> `toolUse`; `tool` messages -> `toolResult` (text);
  `thinking_blocks` -> `reasoningContent` (text and signature, or redacted bytes);
- `tools` -> `toolConfig.tools[].toolSpec` (`inputSchema.json`); `tool_choice` auto / required
  (-> `any`) / a named function (-> `tool`); `none` sends the tools without a choice;
- `cache_control` on a content part, a system part, a tool call, a `tool` message or a tool
  -> a `cachePoint` after its block (Converse's mark for the end of a cached prefix: a content
  block, a `system` element, a `toolConfig.tools` element); its `ttl` (`5m`, `1h`) kept;
- `max_tokens`/`max_completion_tokens`, `temperature`, `top_p`, `stop` -> `inferenceConfig`;
  `reasoning_effort` on Claude -> `additionalModelRequestFields.thinking`; `top_k` there too;
- `response_format` JSON: a forced tool whose input is the answer (read back as text), as for
  Anthropic.

Anthropic clients reach Claude on Bedrock through Converse as well (see the README): one
translation serves every model family Bedrock hosts, with its usage and stop reasons, and
InvokeModel's stream wraps Anthropic's events in base64 inside the same binary frames, so it
could not pass through as bytes either. Answers come back through `bedrock_answer.py`; the
stream is the binary event stream (`eventstream.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from ..canonical import EMPTY_SCHEMA, invalid, parse_data_url, parse_tool, parse_tool_call
from ..formats import BEDROCK_CONVERSE, CHAT, RESPONSES, Format
from .anthropic import default_max_tokens, to_anthropic_id
from .anthropic_answer import JSON_TOOL, JSON_TOOL_DESCRIPTION, json_answer_schema
from .base import UpstreamModel, UpstreamRequest, Wire, WireFormat
from .bedrock_answer import (
    EVENT_STREAM,
    ConverseStreamDecoder,
    EventStreamFraming,
    bedrock_error_info,
    parse_converse_response,
)
from .sigv4 import SigV4Signer

__all__ = ["BedrockConverse", "bedrock_wires", "converse_url", "to_converse_request"]

_encode = msgspec.json.encode

_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}
_THINKING_BUDGET = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
_CACHE_TTLS = frozenset({"5m", "1h"})


def _cache_point(control: Any) -> dict[str, Any]:
    """The `cachePoint` block for an Anthropic `cache_control` (Converse takes the same TTLs)."""
    point = {"type": "default"}
    ttl = control.get("ttl") if isinstance(control, dict) else None
    if ttl in _CACHE_TTLS:
        point["ttl"] = ttl
    return {"cachePoint": point}


def _is_claude(model: str) -> bool:
    return "anthropic.claude" in model or model.startswith("claude")


def _image(url: Any, param: str) -> dict[str, Any]:
    if not isinstance(url, str):
        raise invalid(param, "image_url.url must be a string")
    parsed = parse_data_url(url)
    if parsed is not None:
        media, data = parsed
        kind = _IMAGE_FORMATS.get(media)
        if kind is None:
            raise invalid(param, f"Bedrock takes png, jpeg, gif or webp images, not {media}")
        return {"image": {"format": kind, "source": {"bytes": data}}}
    if url.startswith("s3://"):
        suffix = url.rsplit(".", 1)[-1].lower()
        kind = {"jpg": "jpeg"}.get(suffix, suffix)
        if kind not in _IMAGE_FORMATS.values():
            raise invalid(param, "an s3:// image must end in .png, .jpg, .jpeg, .gif or .webp")
        return {"image": {"format": kind, "source": {"s3Location": {"uri": url}}}}
    raise invalid(param, "Bedrock takes images as data: URLs or s3:// locations, not http(s) URLs")


def _blocks(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise invalid(param, "must be a string or a list of content parts")
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if not isinstance(part, dict):
            raise invalid(f"{param}.{i}", "a content part must be an object")
        kind = part.get("type")
        if kind == "text":
            text = str(part.get("text") or "")
            if text:
                blocks.append({"text": text})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append(_image(url, f"{param}.{i}.image_url"))
        else:
            raise invalid(f"{param}.{i}.type", f"Bedrock cannot take a {kind!r} part")
        if part.get("cache_control"):
            blocks.append(_cache_point(part["cache_control"]))
    return blocks


def _marked(blocks: list[dict[str, Any]], control: Any) -> list[dict[str, Any]]:
    """`blocks`, then the cache point a `cache_control` on their message asks for (once)."""
    if control and blocks and "cachePoint" not in blocks[-1]:
        blocks.append(_cache_point(control))
    return blocks


def _reasoning(message: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for block in message.get("thinking_blocks") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "thinking" and block.get("signature"):
            text = {"text": str(block.get("thinking") or ""), "signature": block["signature"]}
            out.append({"reasoningContent": {"reasoningText": text}})
        elif block.get("type") == "redacted_thinking" and block.get("data"):
            out.append({"reasoningContent": {"redactedContent": block["data"]}})
    return out


def _tool_result(message: dict[str, Any], param: str) -> dict[str, Any]:
    ident = str(message.get("tool_call_id") or message.get("name") or "")
    content = message.get("content")
    if isinstance(content, list):
        text = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
    else:
        text = "" if content is None else str(content)
    result = {"toolUseId": to_anthropic_id(ident), "content": [{"text": text}]}
    return {"toolResult": result}


def _messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        param = f"messages.{i}"
        if not isinstance(message, dict):
            raise invalid(param, "a message must be an object")
        role = message.get("role")
        content = message.get("content")
        # a mark on the message itself (as some OpenAI clients put it): after its last block
        marked = message.get("cache_control")
        if role in ("system", "developer"):
            system.extend(_marked(_blocks(content, param + ".content"), marked))
        elif role == "user":
            add("user", _marked(_blocks(content, param + ".content"), marked))
        elif role == "assistant":
            blocks = _reasoning(message) + _blocks(content, param + ".content")
            for j, call in enumerate(message.get("tool_calls") or ()):
                ident, name, arguments = parse_tool_call(call, f"{param}.tool_calls.{j}")
                use = {"toolUseId": to_anthropic_id(ident), "name": name, "input": arguments}
                blocks.append({"toolUse": use})
                if call.get("cache_control"):
                    blocks.append(_cache_point(call["cache_control"]))
            add("assistant", _marked(blocks, marked))
        elif role in ("tool", "function"):
            # a toolResult holds no cachePoint: a mark on one of its parts ends it as well
            if not marked and isinstance(content, list):
                marks = [
                    p["cache_control"]
                    for p in content
                    if isinstance(p, dict) and p.get("cache_control")
                ]
                marked = marks[-1] if marks else None
            add("user", _marked([_tool_result(message, param)], marked))
        else:
            raise invalid(param + ".role", f"unknown role {role!r}")
    return system, turns


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(tools):
        function = parse_tool(tool, i)
        schema = function.get("parameters") or EMPTY_SCHEMA
        spec: dict[str, Any] = {"name": function["name"], "inputSchema": {"json": schema}}
        if function.get("description"):
            spec["description"] = function["description"]
        out.append({"toolSpec": spec})
        if tool.get("cache_control"):
            out.append(_cache_point(tool["cache_control"]))
    return out


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice is None or choice in ("auto", "none"):
        return {"auto": {}} if choice == "auto" else None
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return {"tool": {"name": function["name"]}}
    raise invalid("tool_choice", "must be auto, none, required or a named function")


def _json_tool(response_format: Any) -> dict[str, Any] | None:
    schema = json_answer_schema(response_format)
    if schema is None:
        return None
    spec = {
        "name": JSON_TOOL,
        "description": JSON_TOOL_DESCRIPTION,
        "inputSchema": {"json": schema},
    }
    return {"toolSpec": spec}


def to_converse_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A Converse request body for a canonical (OpenAI chat) request to `model`."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise invalid("messages", "must be a list")
    if (body.get("n") or 1) != 1:
        raise invalid("n", "Bedrock returns one choice per request (n must be 1)")
    system, turns = _messages(messages)
    out: dict[str, Any] = {"messages": turns}
    if system:
        out["system"] = system

    tools = _tools(body["tools"]) if body.get("tools") else []
    choice = _tool_choice(body.get("tool_choice")) if tools else None
    json_tool = _json_tool(body.get("response_format"))
    if json_tool is not None:
        if not tools:
            choice = {"tool": {"name": JSON_TOOL}}
        tools.append(json_tool)
    if tools:
        config: dict[str, Any] = {"tools": tools}
        if choice is not None:
            config["toolChoice"] = choice
        out["toolConfig"] = config

    inference: dict[str, Any] = {}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    extra: dict[str, Any] = {}
    effort = body.get("reasoning_effort")
    budget = _THINKING_BUDGET.get(effort) if isinstance(effort, str) else None
    forced = choice is not None and ("any" in choice or "tool" in choice)
    if budget is not None and _is_claude(model) and not forced:
        ceiling = limit if isinstance(limit, int) else default_max_tokens(model)
        inference["maxTokens"] = ceiling if ceiling > budget else ceiling + budget
        extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
    else:
        if isinstance(limit, int):
            inference["maxTokens"] = limit
        elif _is_claude(model):
            inference["maxTokens"] = default_max_tokens(model)
        temperature = body.get("temperature")
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
            inference["temperature"] = min(max(float(temperature), 0.0), 1.0)
        if body.get("top_p") is not None and not (_is_claude(model) and "temperature" in inference):
            inference["topP"] = body["top_p"]
        if body.get("top_k") is not None:
            extra["top_k"] = body["top_k"]
    stop = body.get("stop")
    if isinstance(stop, str):
        inference["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        inference["stopSequences"] = stop
    if inference:
        out["inferenceConfig"] = inference
    if extra:
        out["additionalModelRequestFields"] = extra
    return out


def converse_url(base_url: str, model: str, stream: bool) -> str:
    """`{endpoint}/model/{modelId}/converse(-stream)`, the id one percent-encoded segment."""
    action = "/converse-stream" if stream else "/converse"
    return base_url + "/model/" + quote(model, safe="") + action


class BedrockConverse:
    """`POST /model/{modelId}/converse` (`/converse-stream`): canonical requests, translated.
    No client speaks Converse, so nothing comes here as it is."""

    framing = EventStreamFraming()
    translates = True
    format: Format | None = None

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        if native:
            body.pop("model", None)
            payload = _encode(body)
        else:
            payload = _encode(to_converse_request(body, to.model))
        headers = to.headers
        if stream:
            headers = {**headers, "Accept": EVENT_STREAM}
        return UpstreamRequest(
            "POST", converse_url(to.base_url, to.model, stream), headers, payload
        )

    def parse(self, raw: bytes) -> dict[str, Any]:
        return parse_converse_response(raw)

    def decoder(self) -> ConverseStreamDecoder:
        return ConverseStreamDecoder()


_CONVERSE = BedrockConverse()


def bedrock_wires(
    options: Mapping[str, Any], clock: Callable[[], float] | None = None
) -> Callable[[str], WireFormat]:
    """The Bedrock wire of one configured provider: its SigV4 signer holds the region."""
    region = str(options.get("region") or "")
    signer = SigV4Signer(region, "bedrock", clock) if clock else SigV4Signer(region, "bedrock")
    wire = Wire(
        name="bedrock",
        format=BEDROCK_CONVERSE,
        # a Responses request reaches Bedrock as its canonical chat form
        endpoints={CHAT: _CONVERSE, RESPONSES: _CONVERSE},
        signer=signer,
        base_headers={"Content-Type": "application/json"},
        read_error=bedrock_error_info,
    )
    return lambda _model: wire
