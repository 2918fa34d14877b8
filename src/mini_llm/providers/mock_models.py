"""What each `mock` model answers, as pure functions of an OpenAI Chat Completions body.

`mock_failure(body)` says whether the request is refused (status and OpenAI error body); if not,
`mock_completion` gives the whole `chat.completion` and `mock_stream` the stream's chunks, each
with the seconds to wait before it is sent. No I/O, no clock: the caller passes the answer's id
and creation time and does the waiting (`MockTransport` in mock.py).

- `mock/echo`: answers with the last user message.
- `mock/tools`: calls one offered tool — the one `tool_choice` forces, else the first — with
  arguments made from its JSON schema (`schema_example`), `finish_reason: "tool_calls"`. When
  the conversation since the last assistant turn holds tool results, it answers with text
  quoting them: "The tool answered: <content>". Offered no tool, or told `tool_choice: "none"`,
  it echoes like `mock/echo`; a forced tool that is not in `tools` is a 400.
- `mock/json`: JSON text: an instance of `response_format.json_schema.schema`; for
  `json_object` (or no `response_format`, as from an Anthropic client) `{"answer": <the last
  user message>}`.
- `mock/slow`: echoes the last user message one word every 100 ms when streaming; a non-stream
  answer comes whole after the same total delay.
- `mock/embed`: embeddings only (`mock_embeddings`): a deterministic unit vector per input,
  computed from its text (or token ids): same input, same vector. 32 dimensions unless
  `dimensions` says (at most 4096); `encoding_format: "base64"` as OpenAI encodes it. Asked to
  chat it is a 400, as is a chat model asked to embed.
- `mock/error-<status>`, status 400–599: that status with an OpenAI-shaped error body.
- anything else: 404 `model_not_found`, naming the models above.

Every answer carries usage (about 4 characters a token); a stream ends with a usage chunk when
`stream_options.include_usage` asks for one. A tool call streams as OpenAI streams it: a first
delta with the call's id, name and empty arguments, then the arguments in fragments.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ..canonical import estimate_tokens
from .schema_example import schema_example

__all__ = [
    "MOCK_MODELS",
    "SLOW_WORD_DELAY",
    "MockFailure",
    "StreamStep",
    "count_tokens",
    "mock_completion",
    "mock_embeddings",
    "mock_failure",
    "mock_stream",
]

SLOW_WORD_DELAY = 0.1
"""Seconds `mock/slow` waits before each word."""

StreamStep = tuple[float, dict[str, Any]]
"""Seconds to wait, then one `chat.completion.chunk` to send."""

_PIECE = 8  # characters per streamed delta
_ERROR_MODEL = re.compile(r"error-([45][0-9][0-9])")
_WORD = re.compile(r"(?<=\s)(?=\S)")  # splits before each word; its spaces stay with it

_encode = msgspec.json.encode


count_tokens = estimate_tokens


@dataclass(frozen=True, slots=True)
class MockFailure:
    """A refused request: the HTTP status and the OpenAI-shaped error body."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class _Reply:
    """What a model says, before it is shaped as a completion or a stream."""

    text: str
    call: _ToolCall | None
    pieces: tuple[str, ...]
    """The text (or the call's arguments) as it streams."""
    delay: float = 0.0
    """Seconds before each piece."""


# Request helpers ---------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def _last_user_text(body: Mapping[str, Any]) -> str:
    return next(
        (_text_of(m.get("content")) for m in reversed(_messages(body)) if m.get("role") == "user"),
        "",
    )


def _pieces(text: str) -> tuple[str, ...]:
    return tuple(text[i : i + _PIECE] for i in range(0, len(text), _PIECE))


def _text_reply(text: str) -> _Reply:
    return _Reply(text, None, _pieces(text))


def _tools(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The function tools offered, as `function` objects that have a name."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    functions = (t.get("function") for t in tools if isinstance(t, dict))
    return [f for f in functions if isinstance(f, dict) and isinstance(f.get("name"), str)]


def _forced_name(body: Mapping[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        return name if isinstance(name, str) else None
    return None


def _tool_results(body: Mapping[str, Any]) -> list[str]:
    """The tool results sent since the last assistant turn, in order."""
    results: list[str] = []
    for message in reversed(_messages(body)):
        role = message.get("role")
        if role == "assistant":
            break
        if role == "tool":
            results.append(_text_of(message.get("content")))
    return results[::-1]


# The models --------------------------------------------------------------------------------


def _echo(body: Mapping[str, Any], ident: str) -> _Reply:
    return _text_reply(_last_user_text(body))


def _tool_user(body: Mapping[str, Any], ident: str) -> _Reply:
    results = _tool_results(body)
    if results:
        return _text_reply("\n".join(f"The tool answered: {r}" for r in results))
    tools = _tools(body)
    forced = _forced_name(body)
    if not tools or body.get("tool_choice") == "none":
        return _echo(body, ident)
    tool = next((t for t in tools if t["name"] == forced), tools[0])
    parameters = tool.get("parameters")
    schema = parameters if isinstance(parameters, dict) else {"type": "object"}
    arguments = _encode(schema_example(schema)).decode()
    call = _ToolCall("call_" + ident.rpartition("-")[2], tool["name"], arguments)
    return _Reply("", call, _pieces(arguments))


def _json(body: Mapping[str, Any], ident: str) -> _Reply:
    value: Any = {"answer": _last_user_text(body)}
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        value = schema_example(schema if isinstance(schema, dict) else {"type": "object"})
    return _text_reply(_encode(value).decode())


def _slow(body: Mapping[str, Any], ident: str) -> _Reply:
    text = _last_user_text(body)
    words = tuple(w for w in _WORD.split(text) if w)
    return _Reply(text, None, words, SLOW_WORD_DELAY)


_MODELS: dict[str, Callable[[Mapping[str, Any], str], _Reply]] = {
    "echo": _echo,
    "tools": _tool_user,
    "json": _json,
    "slow": _slow,
}

EMBEDDING_MODELS = ("embed",)

MOCK_MODELS: tuple[str, ...] = (*_MODELS, *EMBEDDING_MODELS)
"""The mock models a client can list; `error-<status>` comes on top."""


def _error(
    status: int, message: str, type_: str, code: str | None, param: str | None = None
) -> MockFailure:
    return MockFailure(
        status, {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def mock_failure(body: Mapping[str, Any]) -> MockFailure | None:
    """The error the mock answers this request with, or None when it answers normally."""
    model = str(body.get("model", ""))
    match = _ERROR_MODEL.fullmatch(model)
    if match:
        status = int(match.group(1))
        return _error(status, f"mock error {status}", "mock_error", f"mock_{status}")
    if model in EMBEDDING_MODELS:
        return _error(
            400,
            f"The model `mock/{model}` makes embeddings only (POST /v1/embeddings); it cannot "
            "chat.",
            "invalid_request_error",
            "unsupported_operation",
            "model",
        )
    if model not in _MODELS:
        return _error(
            404,
            f"The model `{model}` does not exist in the mock provider (it has: "
            f"{', '.join(MOCK_MODELS)}, and error-<status> for any status 400–599)",
            "invalid_request_error",
            "model_not_found",
        )
    forced = _forced_name(body)
    if forced is not None and model == "tools" and all(t["name"] != forced for t in _tools(body)):
        return _error(
            400,
            f"Invalid value for 'tool_choice': the tool {forced!r} is not in 'tools'.",
            "invalid_request_error",
            None,
            "tool_choice",
        )
    return None


def _reply(body: Mapping[str, Any], ident: str) -> _Reply:
    model = str(body.get("model", ""))
    if model not in _MODELS:
        raise ValueError(f"not a mock model: {model!r} (ask mock_failure first)")
    return _MODELS[model](body, ident)


def _usage(body: Mapping[str, Any], reply: _Reply) -> dict[str, int]:
    prompt = sum(count_tokens(_text_of(m.get("content"))) for m in _messages(body))
    completion = count_tokens(reply.text) + (
        count_tokens(reply.call.arguments) if reply.call else 0
    )
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def mock_completion(
    body: Mapping[str, Any], ident: str, created: int
) -> tuple[float, dict[str, Any]]:
    """Seconds to wait, then the whole `chat.completion` for a request `mock_failure` let by."""
    reply = _reply(body, ident)
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    finish = "stop"
    if reply.call is not None:
        message["content"] = None
        message["tool_calls"] = [_call_json(reply.call)]
        finish = "tool_calls"
    answer = {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": body.get("model"),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _usage(body, reply),
    }
    return reply.delay * len(reply.pieces), answer


def _call_json(call: _ToolCall) -> dict[str, Any]:
    function = {"name": call.name, "arguments": call.arguments}
    return {"id": call.id, "type": "function", "function": function}


def mock_stream(body: Mapping[str, Any], ident: str, created: int) -> list[StreamStep]:
    """The `chat.completion.chunk`s of a streamed answer, each after its delay in seconds
    (without the closing `[DONE]`, which is SSE framing)."""
    reply = _reply(body, ident)
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        payload: dict[str, Any] = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.get("model"),
            "choices": [choice],
        }
        if include_usage:
            payload["usage"] = None
        return payload

    call = reply.call
    steps: list[StreamStep]
    if call is None:
        steps = [(0.0, chunk({"role": "assistant", "content": ""}, None))]
        steps += [(reply.delay, chunk({"content": piece}, None)) for piece in reply.pieces]
        steps.append((0.0, chunk({}, "stop")))
    else:
        first = {**_call_json(call), "index": 0, "function": {"name": call.name, "arguments": ""}}
        steps = [(0.0, chunk({"role": "assistant", "content": None, "tool_calls": [first]}, None))]
        steps += [
            (reply.delay, chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}, None))
            for p in reply.pieces
        ]
        steps.append((0.0, chunk({}, "tool_calls")))
    if include_usage:
        final = {**chunk({}, None), "choices": [], "usage": _usage(body, reply)}
        steps.append((0.0, final))
    return steps


# Embeddings ----------------------------------------------------------------------------------

_DIMENSIONS = 32
_MAX_DIMENSIONS = 4096


def _embedding_inputs(value: Any) -> list[str] | None:
    """Each input as the text its vector is made from (token ids joined by spaces)."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        return None
    if all(isinstance(v, str) for v in value):
        return list(value)
    if all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    if all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value):
        return [" ".join(map(str, v)) for v in value]
    return None


def mock_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector that depends only on `text` and `dimensions`."""
    raw = hashlib.shake_256(text.encode("utf-8", "surrogatepass")).digest(4 * dimensions)
    values = [n / 2**31 - 1.0 for n in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def mock_embeddings(body: Mapping[str, Any]) -> MockFailure | dict[str, Any]:
    """The answer of an embeddings request: an error, or OpenAI's `list` of embeddings."""
    model = str(body.get("model", ""))
    match = _ERROR_MODEL.fullmatch(model)
    if match:
        status = int(match.group(1))
        return _error(status, f"mock error {status}", "mock_error", f"mock_{status}")
    if model not in EMBEDDING_MODELS:
        known = model in _MODELS
        return _error(
            400 if known else 404,
            f"The model `mock/{model}` cannot make embeddings: it is a chat model. Use mock/embed."
            if known
            else f"The model `{model}` does not exist in the mock provider (mock/embed embeds).",
            "invalid_request_error",
            "unsupported_operation" if known else "model_not_found",
            "model",
        )
    texts = _embedding_inputs(body.get("input"))
    if texts is None:
        message = "'input' must be a string, a list of strings, or token arrays."
        return _error(400, message, "invalid_request_error", None, "input")
    dimensions = body.get("dimensions")
    if dimensions is None:
        dimensions = _DIMENSIONS
    if not isinstance(dimensions, int) or not 1 <= dimensions <= _MAX_DIMENSIONS:
        message = f"'dimensions' must be a whole number from 1 to {_MAX_DIMENSIONS}."
        return _error(400, message, "invalid_request_error", None, "dimensions")
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vector = mock_vector(text, dimensions)
        embedding: Any = vector
        if as_base64:
            embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(count_tokens(text) for text in texts)
    return {
        "object": "list",
        "data": data,
        "model": body.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
