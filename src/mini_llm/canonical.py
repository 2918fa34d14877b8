"""The canonical form: OpenAI Chat Completions, as plain dicts, and the helpers every wire
format and client dialect shares to read and build it. Pure: no I/O, no clock, no globals.

- a canonical request is an OpenAI `chat/completions` body;
- a canonical answer is a `chat.completion`, a canonical chunk a `chat.completion.chunk`
  (`created` left 0 for the edge to stamp);
- a prompt-cache breakpoint (Anthropic's `cache_control`) rides as `cache_control` on the
  content part, the `tool` message, the tool call or the tool that ends the cached prefix; a
  wire that can express it carries it (Anthropic as it is, Bedrock as a `cachePoint`), one that
  cannot leaves it out and names it (`without_cache_control`, `has_cache_control`);
- canonical usage is OpenAI's `usage` object, plus `cache_read_input_tokens` and
  `cache_creation_input_tokens` where an upstream reports prompt-cache writes (and
  `cache_creation_1h_input_tokens`, the part of them written for an hour); `Usage` is the
  gateway's own reading of it, the figures a ledger and limits count.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from .errors import InvalidRequestError

__all__ = [
    "EMPTY_SCHEMA",
    "CompletionBuilder",
    "PlainSink",
    "Usage",
    "answer_chunks",
    "assistant_message",
    "chunk",
    "estimate_tokens",
    "has_cache_control",
    "invalid",
    "parse_data_url",
    "parse_tool",
    "parse_tool_call",
    "token_count",
    "usage_dict",
    "without_cache_control",
]

_decode = msgspec.json.decode
_DATA_URL = re.compile(r"data:([^;,]+)(?:;[^,]*)?;base64,(.*)", re.DOTALL)


def token_count(value: Any) -> int:
    """A token count as an upstream reported it; anything not a finite number counts 0."""
    if type(value) is int:  # the usual case, on every answer's usage: one test
        return value if value > 0 else 0
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return max(int(value), 0)
    return 0


def estimate_tokens(text: str) -> int:
    """A rough token count (about 4 characters a token), for estimates and the mock."""
    return max(1, (len(text) + 3) // 4) if text else 0


def invalid(param: str, message: str) -> InvalidRequestError:
    """The 400 for a request field that a translation cannot carry."""
    return InvalidRequestError(f"Invalid request at '{param}': {message}", param=param)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`(media type, base64 data)` of a `data:<type>;base64,<data>` URL, else None."""
    match = _DATA_URL.fullmatch(url)
    return (match.group(1), match.group(2)) if match is not None else None


def parse_tool_call(call: Any, param: str) -> tuple[str, str, dict[str, Any]]:
    """`(id, function name, arguments object)` of a canonical assistant tool call."""
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid(param, "a tool call needs function.name")
    arguments = function.get("arguments") or ""
    if isinstance(arguments, str):
        if not arguments.strip():
            parsed: Any = {}
        else:
            try:
                parsed = _decode(arguments)
            except msgspec.DecodeError:
                raise invalid(
                    param + ".function.arguments", "arguments are not valid JSON"
                ) from None
    else:
        parsed = arguments
    if not isinstance(parsed, dict):
        raise invalid(param + ".function.arguments", "arguments must be a JSON object")
    ident = call.get("id")
    assert isinstance(call, dict)
    return (ident if isinstance(ident, str) else ""), function["name"], parsed


def parse_tool(tool: Any, index: int) -> dict[str, Any]:
    """The `function` of a canonical tool (name checked), to map to a wire's tool."""
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid(f"tools.{index}.function", "a tool needs function.name")
    return function


EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
"""The parameters of a tool that declares none."""


def assistant_message(
    texts: list[str],
    calls: list[dict[str, Any]],
    reasoning: list[str],
    thinking_blocks: list[dict[str, Any]],
) -> dict[str, Any]:
    """A canonical assistant message from what an answer held: its text, tool calls, reasoning
    text and (Anthropic's signed) thinking blocks."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    return message


class PlainSink(Protocol):
    """A client dialect's stream writer, as a decoder that reads the usual answer itself sees
    it: a read of only the answer's start, text (one text part) and end is handed over as
    that, with no canonical chunk made; any other read as its chunks. Both return the read's
    events, formatted (`b""`: none)."""

    def feed_batch(self, chunks: list[dict[str, Any]]) -> bytes:
        """The events of a read's canonical chunks."""
        ...

    def plain(self, text: str, finish: str | None, usage: dict[str, Any] | None) -> bytes:
        """The events of a read that began the answer (the first call) and brought `text`
        for its one text part (`""`: none), its finish reason and its usage when it ended:
        what `feed_batch` makes of the chunks for the same."""
        ...


def chunk(
    ident: str, model: str, delta: dict[str, Any], finish: str | None = None, index: int = 0
) -> dict[str, Any]:
    """One canonical stream chunk with one choice (`created` 0: stamped at the edge)."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


CACHE_CONTROL = "cache_control"


def _marked(item: Any) -> bool:
    return isinstance(item, dict) and CACHE_CONTROL in item


def _marked_list(items: Any) -> bool:
    return isinstance(items, list) and any(_marked(item) for item in items)


def has_cache_control(body: dict[str, Any]) -> bool:
    """Whether a canonical request marks a prompt-cache breakpoint anywhere: on a message, a
    content part, a tool call or a tool. (Loops written out: it runs on translated requests.)"""
    for message in body.get("messages") or ():
        if type(message) is not dict:
            continue
        if CACHE_CONTROL in message:
            return True
        for key in ("content", "tool_calls"):
            items = message.get(key)
            if type(items) is list:
                for item in items:
                    if type(item) is dict and CACHE_CONTROL in item:
                        return True
    return _marked_list(body.get("tools"))


def _unmarked(item: Any) -> Any:
    if type(item) is not dict or CACHE_CONTROL not in item:
        return item
    return {key: value for key, value in item.items() if key != CACHE_CONTROL}


def _unmarked_list(items: Any) -> Any:
    return [_unmarked(item) for item in items] if _marked_list(items) else items


def without_cache_control(body: dict[str, Any]) -> dict[str, Any]:
    """A canonical request with every `cache_control` left out, for a wire that cannot express
    it. A copy where it changes: the request is shared by the targets of a route."""
    out = dict(body)
    messages = body.get("messages")
    if type(messages) is list:
        kept = []
        for message in messages:
            if type(message) is dict:
                if CACHE_CONTROL in message:
                    message = _unmarked(message)
                content, calls = message.get("content"), message.get("tool_calls")
                if (type(content) is list and _marked_list(content)) or (
                    type(calls) is list and _marked_list(calls)
                ):
                    message = {
                        **message,
                        "content": _unmarked_list(content),
                        **({"tool_calls": _unmarked_list(calls)} if calls is not None else {}),
                    }
            kept.append(message)
        out["messages"] = kept
    if "tools" in body:
        out["tools"] = _unmarked_list(body["tools"])
    return out


@dataclass(slots=True)
class Usage:
    """What one answer used, as providers bill it.

    `input_tokens` are billed at the input price (cache reads and writes excluded);
    `output_tokens` include reasoning; `reasoning_tokens` is the part of them that was
    reasoning. `cache_write_1h_tokens` is the part of `cache_write_tokens` written for an hour
    (Anthropic bills it apart). `exact` is False when the gateway estimated the figures.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_1h_tokens: int = 0
    exact: bool = True

    @classmethod
    def from_canonical(cls, usage: Any) -> Usage:
        """The figures of canonical (OpenAI) usage, whatever the upstream's format was."""
        if not isinstance(usage, dict):
            return cls()
        prompt = token_count(usage.get("prompt_tokens"))
        details = usage.get("prompt_tokens_details")
        cached = token_count(details.get("cached_tokens")) if isinstance(details, dict) else 0
        cached = cached or token_count(usage.get("cache_read_input_tokens"))
        written = token_count(usage.get("cache_creation_input_tokens"))
        out = usage.get("completion_tokens_details")
        reasoning = token_count(out.get("reasoning_tokens")) if isinstance(out, dict) else 0
        return cls(
            input_tokens=max(prompt - cached - written, 0),
            output_tokens=token_count(usage.get("completion_tokens")),
            cached_input_tokens=cached,
            cache_write_tokens=written,
            reasoning_tokens=reasoning,
            cache_write_1h_tokens=min(
                token_count(usage.get("cache_creation_1h_input_tokens")), written
            ),
        )

    @property
    def prompt_tokens(self) -> int:
        """Every input token, however billed (OpenAI's `prompt_tokens`)."""
        return self.input_tokens + self.cached_input_tokens + self.cache_write_tokens


def usage_dict(usage: Usage) -> dict[str, Any]:
    """Canonical (OpenAI) usage for `usage`."""
    prompt = usage.prompt_tokens
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
    }
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    if usage.cache_write_tokens:
        out["cache_creation_input_tokens"] = usage.cache_write_tokens
    if usage.cache_write_1h_tokens:
        out["cache_creation_1h_input_tokens"] = usage.cache_write_1h_tokens
    return out


def answer_chunks(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole canonical answer as the stream chunks that would have carried it: per choice
    its role, content, reasoning and tool calls, then its finish; then the usage chunk."""
    ident = str(answer.get("id") or "")
    model = str(answer.get("model") or "")
    out: list[dict[str, Any]] = []
    for position, choice in enumerate(answer.get("choices") or ()):
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", position)
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": "assistant"}
        for field in ("content", "refusal", "reasoning_content"):
            if message.get(field):
                delta[field] = message[field]
        calls = message.get("tool_calls")
        if calls:
            delta["tool_calls"] = [{**call, "index": i} for i, call in enumerate(calls)]
        out.append(chunk(ident, model, delta, None, index))
        out.append(chunk(ident, model, {}, choice.get("finish_reason") or "stop", index))
    usage = answer.get("usage")
    if isinstance(usage, dict):
        out.append(
            {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": usage,
            }
        )
    return out


class CompletionBuilder:
    """Canonical stream chunks put back together into the whole answer they carried (the
    inverse of `answer_chunks`): per choice its role, content, refusal, reasoning and tool
    calls (arguments joined from their fragments) and finish; the usage; the id and model of
    the first chunk. `result()` is None until every choice seen has finished."""

    __slots__ = ("_choices", "_ident", "_model", "_usage")

    def __init__(self) -> None:
        self._ident = ""
        self._model = ""
        self._usage: dict[str, Any] | None = None
        self._choices: dict[int, dict[str, Any]] = {}

    def feed(self, batch: list[dict[str, Any]]) -> None:
        for item in batch:
            if not self._ident and item.get("id"):
                self._ident = str(item["id"])
            if not self._model and item.get("model"):
                self._model = str(item["model"])
            usage = item.get("usage")
            if isinstance(usage, dict):
                self._usage = usage
            for choice in item.get("choices") or ():
                if isinstance(choice, dict):
                    self._add(choice)

    def _add(self, choice: dict[str, Any]) -> None:
        index = choice.get("index", 0)
        index = index if isinstance(index, int) else 0
        built = self._choices.get(index)
        if built is None:
            built = self._choices[index] = {"text": {}, "calls": {}, "finish": None}
        delta = choice.get("delta")
        if isinstance(delta, dict):
            texts: dict[str, list[str]] = built["text"]
            for field in ("content", "refusal", "reasoning_content"):
                piece = delta.get(field)
                if isinstance(piece, str) and piece:
                    texts.setdefault(field, []).append(piece)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._add_call(built["calls"], call)
        if choice.get("finish_reason"):
            built["finish"] = choice["finish_reason"]

    @staticmethod
    def _add_call(calls: dict[int, dict[str, Any]], call: dict[str, Any]) -> None:
        at = call.get("index", len(calls))
        at = at if isinstance(at, int) else len(calls)
        built = calls.get(at)
        if built is None:
            built = calls[at] = {"id": "", "type": "function", "name": "", "arguments": []}
        if call.get("id"):
            built["id"] = call["id"]
        function = call.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                built["name"] = function["name"]
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                built["arguments"].append(arguments)

    def result(self) -> dict[str, Any] | None:
        if not self._choices or any(c["finish"] is None for c in self._choices.values()):
            return None
        choices = []
        for index in sorted(self._choices):
            built = self._choices[index]
            message: dict[str, Any] = {"role": "assistant", "content": None}
            for field, pieces in built["text"].items():
                message[field] = "".join(pieces)
            if built["calls"]:
                message["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": c["type"],
                        "function": {"name": c["name"], "arguments": "".join(c["arguments"])},
                    }
                    for _, c in sorted(built["calls"].items())
                ]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": built["finish"],
                }
            )
        answer: dict[str, Any] = {
            "id": self._ident,
            "object": "chat.completion",
            "created": 0,
            "model": self._model,
            "choices": choices,
        }
        if self._usage is not None:
            answer["usage"] = self._usage
        return answer
