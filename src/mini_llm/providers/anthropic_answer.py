"""Anthropic answers back to canonical form: a message, a stream of events, an error body.

Pure: no I/O, no clock (`created` is left 0 for the route to stamp). The stream translator is
a small state machine over parsed SSE events: `message_start` gives the id and input usage;
each `content_block_start` opens a text, thinking or `tool_use` block (a tool call gets its
`index`, `id` and `name` on its first delta, then `arguments` deltas); `message_delta` gives
the stop reason and output usage; `message_stop` ends it. `ping` is ignored and an `error`
event raises a `GatewayError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import msgspec

from ..canonical import assistant_message, chunk, token_count
from ..errors import (
    GatewayError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
)
from ..sse import SSEEvent, SSEParser
from .base import ErrorInfo, event_object

__all__ = [
    "FINISH_REASONS",
    "JSON_TOOL",
    "JSON_TOOL_DESCRIPTION",
    "AnthropicStreamDecoder",
    "AnthropicStreamTranslator",
    "anthropic_error_info",
    "canonical_usage",
    "from_anthropic_id",
    "json_answer_schema",
    "parse_anthropic_message",
    "to_anthropic_id",
]

JSON_TOOL = "mini_llm_json_answer"
"""The tool a JSON `response_format` is forced through; its input is the answer's text."""

JSON_TOOL_DESCRIPTION = "Give the final answer as this tool's input, which is the JSON requested."


def json_answer_schema(response_format: Any) -> dict[str, Any] | None:
    """The schema a `response_format` asks the answer to follow (the forced tool's input, on
    formats without a JSON mode: Anthropic, Converse); None when it asks for none."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    if kind == "json_object":
        return {"type": "object"}
    return None


FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_VALID_ID = re.compile(r"[a-zA-Z0-9_-]+")
_ID_PREFIX = "mllm_"


def to_anthropic_id(ident: str) -> str:
    """An id Anthropic accepts (`^[a-zA-Z0-9_-]+$`), reversibly: bad ones become base64url."""
    if _VALID_ID.fullmatch(ident) and not ident.startswith(_ID_PREFIX):
        return ident
    return _ID_PREFIX + base64.urlsafe_b64encode(ident.encode()).decode().rstrip("=")


def from_anthropic_id(ident: str) -> str:
    """The id a client first gave, for one `to_anthropic_id` made."""
    if not ident.startswith(_ID_PREFIX):
        return ident
    data = ident[len(_ID_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ident


class _ErrorDetail(msgspec.Struct):
    type: Any = None
    message: Any = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail | None = None


_error_decoder = msgspec.json.Decoder(_ErrorBody)


def anthropic_error_info(status: int, body: bytes) -> ErrorInfo:
    try:
        error = _error_decoder.decode(body).error
    except (msgspec.DecodeError, msgspec.ValidationError):
        return ErrorInfo(f"upstream answered HTTP {status}")
    if error is None or not isinstance(error.message, str) or not error.message:
        return ErrorInfo(f"upstream answered HTTP {status}")
    kind = error.type if isinstance(error.type, str) else None
    return ErrorInfo(error.message, kind)


def _stream_error(data: dict[str, Any]) -> GatewayError:
    raw = data.get("error")
    error: dict[str, Any] = raw if isinstance(raw, dict) else {}
    kind = error.get("type")
    message = str(error.get("message") or "upstream stream failed")
    if kind == "overloaded_error":
        return ServiceUnavailableError(message, code="overloaded")
    if kind == "rate_limit_error":
        return RateLimitError(message)
    return UpstreamError(message, code=kind if isinstance(kind, str) else "upstream_error")


def _block_index(data: dict[str, Any]) -> int:
    index = data.get("index", 0)
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def canonical_usage(usage: Any) -> dict[str, Any]:
    """OpenAI usage for Anthropic usage: cache reads and writes count as prompt tokens."""
    if not isinstance(usage, dict):
        usage = {}
    fresh = usage.get("input_tokens")
    if type(fresh) is not int or fresh < 0:  # (a count as it should be: no call)
        fresh = token_count(fresh)
    read = usage.get("cache_read_input_tokens") or 0
    if type(read) is not int or read < 0:
        read = token_count(read)
    written = usage.get("cache_creation_input_tokens") or 0
    if type(written) is not int or written < 0:
        written = token_count(written)
    prompt = fresh + read + written
    completion = usage.get("output_tokens")
    if type(completion) is not int or completion < 0:
        completion = token_count(completion)
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }
    split = usage.get("cache_creation")  # the 5-minute and 1-hour parts of the writes
    if isinstance(split, dict) and split.get("ephemeral_1h_input_tokens"):
        out["cache_creation_1h_input_tokens"] = token_count(split["ephemeral_1h_input_tokens"])
    return out


def parse_anthropic_message(raw: bytes) -> dict[str, Any]:
    """A canonical `chat.completion` for an Anthropic message."""
    try:
        message = _decode(raw)
    except msgspec.DecodeError:
        raise UpstreamError("upstream answered with malformed JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamError("upstream answered with an unexpected message shape")
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    json_answer = False
    for block in message["content"]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking", "")))
            thinking_blocks.append(block)
        elif kind == "redacted_thinking":
            thinking_blocks.append(block)
        elif kind == "tool_use" and block.get("name") == JSON_TOOL:
            texts.append(_encode(block.get("input", {})).decode())
            json_answer = True
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": from_anthropic_id(str(block.get("id", ""))),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": _encode(block.get("input", {})).decode(),
                    },
                }
            )
    reply = assistant_message(texts, tool_calls, reasoning, thinking_blocks)
    stop = message.get("stop_reason")
    finish = FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else "stop"
    if json_answer and finish == "tool_calls":
        finish = "stop"
    return {
        "id": message.get("id", ""),
        "object": "chat.completion",
        "created": 0,
        "model": message.get("model", ""),
        "choices": [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}],
        "usage": canonical_usage(message.get("usage")),
    }


# A text delta as Anthropic sends it: `event: content_block_delta` and one `data:` line,
# `{"type":"content_block_delta","index":N,"delta":{"type":"text_delta","text":"..."}}`.
_TEXT_BLOCK = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'
_TEXT_AFTER_INDEX = b',"delta":{"type":"text_delta","text":'
_INDEX_AT = len(_TEXT_BLOCK)
_TEXT_AT = len(_TEXT_AFTER_INDEX)
_TEXT_STRING_AT = _INDEX_AT + 1 + _TEXT_AT  # where the text's JSON string begins (index 0-9)
_TEXT_PREFIX = _TEXT_BLOCK + b"0" + _TEXT_AFTER_INDEX
# a text delta's bytes after its prefix, taken with no Python code per piece (`map`)
_TEXT_STRING = itemgetter(slice(len(_TEXT_PREFIX) + 1, -1))
_decode_text = msgspec.json.Decoder(str).decode
_decode_texts = msgspec.json.Decoder(list[str]).decode


class AnthropicStreamTranslator:
    """Anthropic stream events -> canonical chunks (one instance per stream)."""

    __slots__ = (
        "_bare",
        "_blocks",
        "_done",
        "_finish",
        "_id",
        "_json_answer",
        "_model",
        "_thinking",
        "_thought_blocks",
        "_tool_args",
        "_tools",
        "_usage",
    )

    def __init__(self) -> None:
        self._id = ""
        self._model = ""
        self._usage: dict[str, Any] = {}
        # block index -> ("text" | "thinking" | "json" | "tool", tool index or -1)
        self._blocks: dict[int, tuple[str, int]] = {}
        self._thinking: dict[int, list[str]] = {}
        self._thought_blocks = 0  # thinking blocks sent so far: their `index` in the deltas
        self._tools = 0
        self._tool_args: set[int] = set()  # tool calls that received argument text
        self._finish: str | None = None
        self._json_answer = False
        self._done = False
        self._bare = False  # chunks for the Responses writer only (`AnthropicStreamDecoder.lean`)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return chunk(self._id, self._model, delta, finish)

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]:
        if not event.data or self._done:
            return []
        return self.feed_object(event_object(event.data), event.event)

    def feed_object(self, data: dict[str, Any], name: str | None) -> list[dict[str, Any]]:
        """`feed` for an event whose data is decoded (`name`: its `event:` field)."""
        kind = data.get("type") or name
        if kind == "content_block_delta":
            return self._delta(data)
        if kind == "content_block_start":
            return self._start(data)
        if kind == "content_block_stop":
            return self._stop(data)
        if kind == "message_start":
            message = data.get("message") or {}
            self._id = str(message.get("id", ""))
            self._model = str(message.get("model", ""))
            self._usage = dict(message.get("usage") or {})
            if self._bare:
                return [{}]  # (a chunk all the same: the writer's first events come with it)
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "message_delta":
            usage = data.get("usage")
            if isinstance(usage, dict):
                if None in usage.values():
                    usage = {k: v for k, v in usage.items() if v is not None}
                self._usage.update(usage)
            stop = (data.get("delta") or {}).get("stop_reason")
            finish = FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else "stop"
            if self._json_answer and finish == "tool_calls":
                finish = "stop"
            self._finish = finish
            if self._bare:
                return [{"choices": [{"finish_reason": finish}]}]
            return [self._chunk({}, finish)]
        if kind == "message_stop":
            return self._stop_message(data)
        if kind == "error":
            raise _stream_error(data)
        return []  # ping, and event types added after this was written

    def _stop_message(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        self._done = True
        if self._bare:
            return [{"usage": canonical_usage(self._usage)}]
        usage = self._chunk({})
        usage["choices"] = []
        usage["usage"] = canonical_usage(self._usage)
        return [usage]

    def _start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        index = _block_index(data)
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            self._blocks[index] = ("text", -1)
            text = block.get("text")
            return [self._chunk({"content": text})] if text else []
        if kind == "thinking":
            self._blocks[index] = ("thinking", -1)
            self._thinking[index] = [str(block.get("thinking") or ""), ""]
            return []
        if kind == "redacted_thinking":
            return [self._chunk({"thinking_blocks": [self._thought(block)]})]
        if kind == "tool_use" and block.get("name") == JSON_TOOL:
            self._blocks[index] = ("json", -1)
            self._json_answer = True
            return []
        if kind == "tool_use":
            tool = self._tools
            self._tools += 1
            self._blocks[index] = ("tool", tool)
            call = {
                "index": tool,
                "id": from_anthropic_id(str(block.get("id", ""))),
                "type": "function",
                "function": {"name": block.get("name", ""), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":  # the most frequent event of all: nothing else to look up
            text = delta.get("text", "")
            return [chunk(self._id, self._model, {"content": text}, None)]
        index = _block_index(data)
        block, tool = self._blocks.get(index, ("", -1))
        if kind == "input_json_delta":
            partial = delta.get("partial_json", "")
            if not partial:
                return []
            if block == "json":
                return [self._chunk({"content": partial})]
            if block == "tool":
                self._tool_args.add(tool)
                call = {"index": tool, "function": {"arguments": partial}}
                return [self._chunk({"tool_calls": [call]})]
            return []
        if kind == "thinking_delta":
            text = str(delta.get("thinking", ""))
            if index in self._thinking:
                self._thinking[index][0] += text
            return [self._chunk({"reasoning_content": text})]
        if kind == "signature_delta" and index in self._thinking:
            self._thinking[index][1] += str(delta.get("signature", ""))
        return []

    def _stop(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        index = _block_index(data)
        kind, tool = self._blocks.get(index, ("", -1))
        if kind == "tool" and tool not in self._tool_args:
            # a tool without parameters streams no argument text: `{}`, as unstreamed answers
            call = {"index": tool, "function": {"arguments": "{}"}}
            return [self._chunk({"tool_calls": [call]})]
        thinking = self._thinking.pop(index, None)
        if thinking is None:
            return []
        block = {"type": "thinking", "thinking": thinking[0], "signature": thinking[1]}
        return [self._chunk({"thinking_blocks": [self._thought(block)]})]

    def _thought(self, block: dict[str, Any]) -> dict[str, Any]:
        """A thinking block for a delta, with the `index` stream accumulators (the openai
        package's among them) need to tell one list entry from the next."""
        out = {**block, "index": self._thought_blocks}
        self._thought_blocks += 1
        return out

    def finish(self) -> list[dict[str, Any]]:
        if not self._done:
            raise UpstreamError("upstream stream ended before the answer was complete")
        return []


def _object(raw: bytes) -> dict[str, Any] | None:
    """An event's data as the JSON object it is; None when it is not valid UTF-8 JSON (the
    SSE parser's reading then decides: replaced characters, or a malformed event)."""
    try:
        decoded = _decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(decoded, dict):
        raise UpstreamError("upstream sent a malformed stream event")
    return decoded


def _text_of(block: bytes) -> tuple[str, int] | None:
    """The text of a text delta laid out as Anthropic sends it (`block` starts with
    `_TEXT_BLOCK`): what lies between the text key and the closing braces must decode as one
    JSON string; else (more keys or lines, other spacing) None, and the event is parsed and
    decoded whole. With the text, where it begins (the bytes before it are the same for the
    next text delta of the block)."""
    if (
        len(block) > _INDEX_AT
        and 48 <= block[_INDEX_AT] <= 57  # an ASCII digit
        and block.startswith(_TEXT_AFTER_INDEX, _INDEX_AT + 1)
    ):
        after = _INDEX_AT + 1  # a one-digit index, the usual case: no search
    else:
        after = block.find(_TEXT_AFTER_INDEX, _INDEX_AT)
        if after < 0 or not block[_INDEX_AT:after].isdigit():
            return None
    cut = after + _TEXT_AT
    if not block.endswith(b'"}}') or block[cut : cut + 1] != b'"':  # nothing else on the line
        return None
    try:
        return _decode_text(block[cut:-2]), cut
    except msgspec.DecodeError:
        return None


_TEXT_READ_END = b'"}}\n\n'


_Handler = Callable[[AnthropicStreamTranslator, dict[str, Any]], list[dict[str, Any]]]


def _constant_events() -> dict[bytes, tuple[_Handler | None, dict[str, Any]]]:
    """The events whose bytes are always the same, as Anthropic lays them out (a block of
    the SSE parser's: the blank line left out), each with its data decoded and what
    `AnthropicStreamTranslator.feed_object` calls for it (None: nothing): a text block's
    start and any block's stop (blocks 0 to 9), the message's stop, a ping. The translator
    only reads an event's data: one dict serves every stream."""
    translator = AnthropicStreamTranslator
    events: list[tuple[_Handler | None, dict[str, Any]]] = [
        (translator._stop_message, {"type": "message_stop"}),
        (None, {"type": "ping"}),
    ]
    for index in range(10):
        text = {"type": "text", "text": ""}
        start = {"type": "content_block_start", "index": index, "content_block": text}
        events.append((translator._start, start))
        events.append((translator._stop, {"type": "content_block_stop", "index": index}))
    table = {b"event: %s\ndata: %s" % (e["type"].encode(), _encode(e)): (f, e) for f, e in events}
    table[b'event: ping\ndata: {"type": "ping"}'] = (None, {"type": "ping"})
    return table


_CONSTANT_EVENTS = _constant_events()
_DELTA_AFTER_EVENT = b"\n\nevent: content_block_delta\n"


def _read_text(data: bytes) -> str | None:
    """The text of a read that is exactly one text delta event in Anthropic's layout, LF line
    ends and its blank line included; None for anything else. The JSON string between the
    text key and the braces holds no raw line end (JSON forbids them), and its quotes are
    checked to sit right after the key and right before the braces, so the read has no other
    line than the event's two: nothing is left for the parser."""
    if (
        len(data) > _INDEX_AT
        and 48 <= data[_INDEX_AT] <= 57  # a one-digit index
        and data.startswith(_TEXT_AFTER_INDEX, _INDEX_AT + 1)
        and data.endswith(_TEXT_READ_END)
        and data[_TEXT_STRING_AT] == 34  # the opening quote
        # its line ends are the event's last two: a read of several events is not decoded
        # (a failed decode costs an error object)
        and data.find(b"\n", _TEXT_STRING_AT) == len(data) - 2
    ):
        try:
            return _decode_text(data[_TEXT_STRING_AT:-4])
        except msgspec.DecodeError:
            return None
    return None


def _bare_text_chunk(ident: str, model: str, text: str) -> dict[str, Any]:
    """A text delta's chunk as a lean decoder makes it: its text only."""
    return {"choices": [{"delta": {"content": text}}]}


def _text_chunk(ident: str, model: str, text: str) -> dict[str, Any]:
    """The chunk `AnthropicStreamTranslator.feed` makes for a text delta."""
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}
        ],
    }


class AnthropicStreamDecoder:
    """An Anthropic stream's bytes to canonical chunks: the SSE parser, then the translator;
    a text delta (most events of any answer) is read from its bytes, without an `SSEEvent`
    and a dict. As `SSEDecoder`: when an event fails, the chunks before it in the same read
    are returned and the error is raised by the next call."""

    __slots__ = (
        "_after_event",
        "_between",
        "_error",
        "_finished",
        "_parser",
        "_prefix",
        "_string",
        "_text_chunk",
        "_translator",
    )

    def __init__(self) -> None:
        self._parser = SSEParser()
        self._translator = AnthropicStreamTranslator()
        self._error: Exception | None = None
        self._finished = False
        self._prefix = _TEXT_PREFIX  # a text delta's bytes up to its text (the last block's)
        self._after_event = b"\n\n" + _TEXT_PREFIX  # a text delta after another event
        self._between = b'"}}\n\n' + _TEXT_PREFIX + b'"'  # two text deltas' strings
        self._string = _TEXT_STRING  # a text delta's bytes after the prefix (`_blocks`)
        self._text_chunk = _text_chunk

    def lean(self) -> None:
        """From now on, chunks with only what the Responses stream writer reads (its direct
        lane: `dialects/openai_responses`): a text delta's text, the finish reason, the
        usage; no id, model, role or `created`, and the message's start a chunk with
        nothing in it. For a caller that hands the chunks to no one else."""
        self._translator._bare = True
        self._text_chunk = _bare_text_chunk

    def text(self, data: bytes) -> str | None:
        """The text of a read that is exactly one text delta (a model streaming token by
        token), when nothing is held from earlier reads; None otherwise (then `feed` it). The
        decoder's state does not change: a text delta only adds text, and a client's dialect
        may render it straight away, with no canonical chunk made for it."""
        if (
            self._error is None
            and self._parser.idle
            and data.startswith(_TEXT_BLOCK)
            and not self._translator._done
        ):
            return _read_text(data)
        return None

    @property
    def done(self) -> bool:
        """Whether the stream's last event (`message_stop`) has come: reads after it make no
        chunk (and, no error pending, `finish` raises none)."""
        return self._translator._done and self._error is None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self._error is not None:
            raise self._error
        translator = self._translator
        parser = self._parser
        if parser.idle and data.startswith(_TEXT_BLOCK) and not translator._done:
            # one read, one text delta (a model streaming token by token): read without the
            # parser when nothing is held and the read is exactly that event
            alone = _read_text(data)
            if alone is not None:
                return [self._text_chunk(translator._id, translator._model, alone)]
        out: list[dict[str, Any]] = []
        # text deltas that come in the same read make one chunk (a client concatenates
        # deltas: fewer events, the same text): the run's chunk and texts, joined at its end
        run: dict[str, Any] | None = None
        texts: list[str] = []
        prefix = self._prefix
        text_chunk = self._text_chunk
        for block in self._blocks(data):
            if type(block) is list:  # a run of text deltas, read in bulk (`_blocks`)
                if translator._done:
                    continue  # what the translator makes of them then: nothing
                if run is not None and out[-1] is run:
                    texts += block
                    continue
                if len(texts) > 1:
                    _join_run(run, texts)
                # (more than one text: joined at the run's end)
                run = text_chunk(translator._id, translator._model, block[0])
                out.append(run)
                texts = block
                continue
            assert type(block) is bytes
            known = _CONSTANT_EVENTS.get(block)
            if known is not None and not translator._done:  # decoded once, at import
                handle = known[0]
                if handle is not None:
                    out += handle(translator, known[1])
                continue
            text = None
            if not block.startswith(_TEXT_BLOCK) or translator._done:
                pass  # (no text delta: read whole below)
            elif (
                block.startswith(prefix)
                and block.endswith(b'"}}')
                and block[len(prefix)] == 34  # its quote right after the key: no line break
            ):
                # the bytes of the last text delta up to its text: the JSON string between
                # them and the braces is the text (else the event is read whole below)
                try:
                    text = _decode_text(block[len(prefix) : -2])
                except msgspec.DecodeError:
                    text = None
            else:
                found = _text_of(block)
                if found is not None:
                    text, cut = found
                    if block[:cut] != prefix:
                        prefix = self._prefix = block[:cut]
                        self._after_event = b"\n\n" + prefix
                        self._between = b'"}}\n\n' + prefix + b'"'
                        self._string = itemgetter(slice(cut + 1, -1))
            if text is not None:
                if run is not None and out[-1] is run:
                    texts.append(text)
                    continue
                if len(texts) > 1:
                    _join_run(run, texts)
                run = text_chunk(translator._id, translator._model, text)
                out.append(run)
                texts = [text]
                continue
            try:
                end = block.find(b"\n")
                if (
                    block[:7] == b"event: "
                    and block[end + 1 : end + 7] == b"data: "
                    and block.find(b"\n", end + 1) < 0
                    and not translator._done
                ):  # Anthropic's layout: the data decoded from its bytes, no `SSEEvent`
                    decoded = _object(block[end + 7 :])
                    if decoded is not None:
                        # (the `event:` field only when the data names no type: `feed_object`)
                        kind = decoded.get("type") or block[7:end].decode("utf-8", "replace")
                        out += translator.feed_object(decoded, kind)
                        continue
                event = parser.event(block)
                if event is not None:
                    out += translator.feed(event)
            except Exception as e:
                if not out:
                    raise
                self._error = e
                break
        if len(texts) > 1:
            _join_run(run, texts)
        return out

    def _blocks(self, data: bytes) -> Sequence[bytes | list[str]]:
        """The parser's blocks of a read; a run of text deltas of the same block, laid out as
        the last one was, comes as the list of its texts, read with a few calls whatever its
        length (what the translator makes of each, one after the other, is more text).

        The run goes from the first text delta of the read to the end of its last one (a
        search for the bytes of a text delta up to its text, from each end: only the bytes
        before and after the run are walked); it is cut at `}}\n\n` (a short needle: a long
        one is walked at about ten instructions a byte) and the text delta's bytes taken off
        each piece. The run must then be exactly those bytes, each piece's string and `}}`,
        one after the other (compared whole), each piece one JSON string (all decoded as one
        array of as many strings) on one line. Anything else in the read (and all of it, when
        it holds a CR or the parser holds a part of an event) goes through the parser."""
        parser = self._parser
        prefix = self._prefix
        if data.startswith(prefix) and parser.idle:
            start = 0
        else:
            # the run after the events before it, which the parser reads first (the first
            # read of a stream too: the parser's start, a BOM, is in them)
            start = data.find(_DELTA_AFTER_EVENT) + 2  # (a short needle: quicker)
            if start >= 2 and not data.startswith(prefix, start):  # another delta first
                start = data.find(self._after_event, start) + 2
            if start < 2 or (not parser.idle and parser.holding):
                return parser.blocks(data)
        last = data.rfind(_DELTA_AFTER_EVENT) + 2  # (a short needle: quicker)
        if last < 2 or not data.startswith(prefix, last):
            last = data.rfind(prefix, start)
        if last <= start or data.find(b"\r") >= 0:
            return parser.blocks(data)
        end = data.find(b"}}\n\n", last)
        if end >= 0:
            end += 4
        elif data[last - 4 : last] == b"}}\n\n":  # the run goes on in the next read: its
            end = last  # last event is the parser's
        else:
            return parser.blocks(data)
        pieces = data[start : end - 4].split(b"}}\n\n")
        count = len(pieces)
        if count < 2:
            return parser.blocks(data)
        # each piece's JSON string without its quotes: the run must be exactly these, each
        # between the text delta's bytes and a quote, and a quote and the braces
        strings = list(map(self._string, pieces))
        run = self._between.join(strings)
        if len(run) + len(prefix) + 2 != end - start - 4 or not data.startswith(
            run, start + len(prefix) + 1
        ):
            return parser.blocks(data)  # not text deltas only, or another layout
        if data[start + len(prefix)] != 34 or data[end - 5] != 34:  # (the first and last
            return parser.blocks(data)  # quotes: the others are checked in `run`)
        joined = b"".join(strings)
        try:
            if joined.isascii() and joined.find(b"\\") < 0 and joined.find(b'"') < 0:
                # ASCII with no escape, no quote: the pieces cannot run into each other (nor
                # share a character), and are all valid strings if their concatenation is one
                texts = [_decode_text(b'"' + joined + b'"')]
            else:  # one array of as many strings (a piece that is more is seen)
                texts = _decode_texts(b'["' + b'","'.join(strings) + b'"]')
                if len(texts) != count:
                    return parser.blocks(data)
        except msgspec.DecodeError:  # (a raw line break or control character among them)
            return parser.blocks(data)
        blocks: list[bytes | list[str]] = []
        if start:
            blocks += parser.blocks(data[:start])
        blocks.append(texts)
        if end < len(data):
            blocks += parser.blocks(data[end:])
        return blocks

    def finish(self) -> list[dict[str, Any]]:
        """The last chunks (none: an Anthropic stream ends with `message_stop`); raises the
        error a read left pending, or the one of a stream cut short."""
        if self._error is not None:
            raise self._error
        if self._finished:
            return []
        self._finished = True
        self._parser.flush()
        return self._translator.finish()


def _join_run(run: dict[str, Any] | None, texts: list[str]) -> None:
    """The text of a run of deltas, joined once, into its one chunk."""
    assert run is not None
    run["choices"][0]["delta"]["content"] = "".join(texts)
