"""An Anthropic Messages stream's bytes -> canonical chunks, quickly.

`AnthropicStreamDecoder` is the SSE parser and `AnthropicStreamTranslator` (in
`anthropic_answer.py`) in one, with short ways for what most of a stream is: a text delta is
read from its bytes (a run of them in one read with a few calls), the events whose bytes never
change are decoded once at import, and `message_start` and `message_delta` are read into only
the fields the translator takes. Anything else goes through the parser and the translator,
with the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, TypeVar

import msgspec

from ..canonical import PlainSink
from ..errors import UpstreamError
from ..sse import SSEParser
from .anthropic_answer import AnthropicStreamTranslator, canonical_usage

__all__ = ["AnthropicStreamDecoder"]

_decode = msgspec.json.decode
_encode = msgspec.json.encode

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


class _Started(msgspec.Struct):
    id: Any = ""
    model: Any = ""
    usage: Any = None


class _MessageStart(msgspec.Struct):
    """A `message_start` event's data, only what the translator reads of it."""

    type: Any = None
    message: _Started | None = None


class _Stop(msgspec.Struct):
    stop_reason: Any = None


class _MessageDelta(msgspec.Struct):
    """A `message_delta` event's data, only what the translator reads of it."""

    type: Any = None
    delta: _Stop | None = None
    usage: Any = None


_MESSAGE_EVENT = b"event: message_"
_START_DATA = b"event: message_start\ndata: "
_DELTA_DATA = b"event: message_delta\ndata: "
_decode_start = msgspec.json.Decoder(_MessageStart).decode
_decode_delta = msgspec.json.Decoder(_MessageDelta).decode


_Data = TypeVar("_Data")


def _data_of(block: bytes, at: int, decode: Callable[[bytes], _Data]) -> _Data | None:
    """The data line that begins at `at`, the event's last, decoded; None when more lines
    follow (the parser's) or it does not decode."""
    if block.find(b"\n", at) >= 0:
        return None
    try:
        return decode(block[at:])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _message_event(
    translator: AnthropicStreamTranslator, block: bytes
) -> list[dict[str, Any]] | None:
    """A `message_start` or `message_delta` event laid out as Anthropic sends it (its two
    lines), read into only the fields the translator takes: what `feed_object` makes of it.
    None for anything else, or data that is not such an object (then read whole)."""
    if block.startswith(_START_DATA):
        start = _data_of(block, len(_START_DATA), _decode_start)
        if start is None or start.type != "message_start":
            return None
        message = start.message
        if message is None:
            return translator.message_start("", "", None)
        return translator.message_start(message.id, message.model, message.usage)
    if block.startswith(_DELTA_DATA):
        delta = _data_of(block, len(_DELTA_DATA), _decode_delta)
        if delta is None or delta.type != "message_delta":
            return None
        return translator.message_delta(
            None if delta.delta is None else delta.delta.stop_reason, delta.usage
        )
    return None


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
# ... what `AnthropicStreamDecoder.write` reads in them: the kind (`_STOPPED`, `_PING`,
# `_OPENED`: a text block's start, `_CLOSED`: a block's stop) and the block's index
_STOPPED, _PING, _OPENED, _CLOSED = range(4)
_PLAIN_EVENTS = {
    raw: (
        {"message_stop": _STOPPED, "ping": _PING, "content_block_start": _OPENED}.get(
            data["type"], _CLOSED
        ),
        data.get("index", -1),
    )
    for raw, (_, data) in _CONSTANT_EVENTS.items()
}
_TEXT_KIND = ("text", -1)  # a text block, as the translator keeps it
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
        "_plain",
        "_prefix",
        "_stage",
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
        self._plain = True  # every read so far handed over plain (`write`)
        self._stage = 0  # ... and how far the answer came in them

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
        self._plain = False  # (`write` reads the rest as chunks too)
        translator = self._translator
        parser = self._parser
        if parser.idle and data.startswith(_TEXT_BLOCK) and not translator._done:
            # one read, one text delta (a model streaming token by token): read without the
            # parser when nothing is held and the read is exactly that event
            alone = _read_text(data)
            if alone is not None:
                return [self._text_chunk(translator._id, translator._model, alone)]
        return self._feed_blocks(self._blocks(data))

    def write(self, data: bytes, sink: PlainSink) -> bytes:
        """A read's events as `sink` writes them (`feed`, then `sink.feed_batch`): a read of
        only the answer's start, its text, its text blocks' starts and stops, pings and its
        end, in that order (the usual answer), is handed over as that (`sink.plain`), with
        no chunk made; any other read, and every read after it, as its chunks."""
        translator = self._translator
        if not self._plain or self._error is not None or translator._done:
            return self._batch(self.feed(data), sink)
        blocks = self._blocks(data)
        texts: list[str] = []
        start: _MessageStart | None = None
        delta: _MessageDelta | None = None
        opened: list[int] = []
        stage = self._stage  # 0: before the start, 1: the answer, 2: its delta, 3: its stop
        for block in blocks:
            if type(block) is list:  # a run of text deltas (`_blocks`)
                if stage != 1:
                    break
                texts += block
                continue
            assert type(block) is bytes
            known = _PLAIN_EVENTS.get(block)
            if known is not None:
                kind, index = known
                if kind == _PING:
                    continue
                if kind == _STOPPED:
                    if stage != 2:
                        break
                    stage = 3
                elif stage != 1:
                    break
                elif kind == _OPENED:
                    opened.append(index)
                # (a block's stop: only text blocks began while reads were plain, and the
                # stop of a text block, or of none, makes no chunk)
                continue
            if block.startswith(_TEXT_BLOCK):
                text = self._block_text(block) if stage == 1 else None
                if text is None:
                    break
                texts.append(text)
            elif block.startswith(_START_DATA) and stage == 0:
                start = _data_of(block, len(_START_DATA), _decode_start)
                if start is None or start.type != "message_start":
                    break
                stage = 1
            elif block.startswith(_DELTA_DATA) and stage == 1:
                delta = _data_of(block, len(_DELTA_DATA), _decode_delta)
                if delta is None or delta.type != "message_delta":
                    break
                stage = 2
            else:
                break
        else:
            # every block read: the translator's state as `feed` would leave it
            self._stage = stage
            if start is not None:
                message = start.message
                if message is None:
                    translator.message_start("", "", None)
                else:
                    translator.message_start(message.id, message.model, message.usage)
            for index in opened:
                translator._blocks[index] = _TEXT_KIND
            finish = None
            if delta is not None:
                stop = None if delta.delta is None else delta.delta.stop_reason
                translator.message_delta(stop, delta.usage)
                finish = translator._finish
            usage = None
            if stage == 3:
                translator._done = True
                usage = canonical_usage(translator._usage)
            if start is None and not texts and finish is None and usage is None:
                return b""  # (nothing that makes a chunk)
            return sink.plain(texts[0] if len(texts) == 1 else "".join(texts), finish, usage)
        # a block of another kind (or out of order): this read and the rest as chunks
        self._plain = False
        return self._batch(self._feed_blocks(blocks), sink)

    @staticmethod
    def _batch(chunks: list[dict[str, Any]], sink: PlainSink) -> bytes:
        return sink.feed_batch(chunks) if chunks else b""

    def _feed_blocks(self, blocks: Sequence[bytes | list[str]]) -> list[dict[str, Any]]:
        """The chunks of a read's blocks (`_blocks`)."""
        translator = self._translator
        parser = self._parser
        out: list[dict[str, Any]] = []
        # text deltas that come in the same read make one chunk (a client concatenates
        # deltas: fewer events, the same text): the run's chunk and texts, joined at its end
        run: dict[str, Any] | None = None
        texts: list[str] = []
        text_chunk = self._text_chunk
        for block in blocks:
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
            if block.startswith(_TEXT_BLOCK) and not translator._done:
                text = self._block_text(block)
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
                if block.startswith(_MESSAGE_EVENT) and not translator._done:
                    made = _message_event(translator, block)
                    if made is not None:  # (else read whole below)
                        out += made
                        continue
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

    def _block_text(self, block: bytes) -> str | None:
        """The text of a text delta's block (it starts with `_TEXT_BLOCK`) laid out as
        Anthropic sends it; None for any other layout (then it is read whole). The bytes up
        to its text are kept (`_prefix`): the next delta's are the same."""
        prefix = self._prefix
        if (
            block.startswith(prefix)
            and block.endswith(b'"}}')
            and block[len(prefix)] == 34  # its quote right after the key: no line break
        ):
            # the bytes of the last text delta up to its text: the JSON string between them
            # and the braces is the text
            try:
                return _decode_text(block[len(prefix) : -2])
            except msgspec.DecodeError:
                return None
        found = _text_of(block)
        if found is None:
            return None
        text, cut = found
        if block[:cut] != prefix:
            prefix = self._prefix = block[:cut]
            self._after_event = b"\n\n" + prefix
            self._between = b'"}}\n\n' + prefix + b'"'
            self._string = itemgetter(slice(cut + 1, -1))
        return text

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
