"""Canonical chunks -> Responses stream events, already formatted. Pure.

`ResponsesEventWriter` is a state machine fed canonical chunks: it opens one item at a time
(`response.output_item.added`, and for a message `response.content_part.added`), sends its
deltas, and closes it (`.done` events) when the next item begins; `finish` closes the last one
and sends `response.completed` or `response.incomplete` with the whole response; `fail` sends
`response.failed`. Every event carries its `sequence_number`.

The usual events are written from templates, the bytes the encoder would give for the same
objects: the response's shell (its unchanging parts encoded once, at the start), a message's
events, and the last event, whose output is the done items' bytes written again
(`tests/test_responses_stream_bytes.py` compares them with the encoder's).
"""

from __future__ import annotations

from typing import Any

import msgspec

from .request import encode_reasoning
from .response import (
    _ECHOED,
    _ECHOED_KEYS,
    _INCOMPLETE,
    ResponseFrame,
    _call_item,
    _finished,
    _message_item,
    _reasoning_item,
    _text_part,
    responses_usage,
    shell,
)

__all__ = ["ResponsesEventWriter", "shell_bytes"]

_encode = msgspec.json.encode

# the echoed fields' bytes, each with its key and the value a request leaves out, in order
_ECHOED_BYTES = {
    name: b',"%s":%b' % (name.encode(), _encode(value)) for name, value in _ECHOED.items()
}


class _Digits(dict[int, bytes]):
    """Counts (sequence numbers, indexes: never negative) as the encoder writes them,
    `_DIGITS[n]`: a small one looked up (no call, no format), a larger one formatted."""

    def __missing__(self, n: int) -> bytes:
        return str(n).encode()


_DIGITS = _Digits((n, b"%d" % n) for n in range(4096))
_ECHOED_NAMES = {name: b',"%s":' % name.encode() for name in _ECHOED}
_ECHOED_DEFAULT = b"".join(_ECHOED_BYTES.values())
_STORED = b',"store":true,"metadata":'
_CREATED_AT = b',"object":"response","created_at":'
_NO_REASONING = b'{"effort":null,"summary":null}'
_TEXT_FORMAT = b'{"format":{"type":"text"}}'


def _shell_parts(frame: ResponseFrame) -> tuple[bytes, bytes, bytes]:
    """The encoded shell's parts that do not change as the response goes on: up to its
    status (`{"id":...,"created_at":N`), its model (`,"model":"..."`), and what follows its
    output up to its usage (the echoed fields, `reasoning`, `text`, `store`, `metadata`),
    with no dict made for them: the request's echoed values encoded one by one, the rest
    written as the encoder writes it."""
    request = frame.request
    echoed = _ECHOED_BYTES
    for name in request.keys() & _ECHOED_KEYS:  # (the fields given: a set operation in C)
        value = request[name]
        if value is not None:
            if echoed is _ECHOED_BYTES:
                echoed = dict(_ECHOED_BYTES)  # (a copy keeps the keys' order)
            echoed[name] = _ECHOED_NAMES[name] + _encode(value)
    reasoning = request.get("reasoning")
    text = request.get("text")
    metadata = request.get("metadata")
    rest = b"".join(
        (
            _ECHOED_DEFAULT if echoed is _ECHOED_BYTES else b"".join(echoed.values()),
            b',"reasoning":',
            _encode({"effort": reasoning.get("effort"), "summary": reasoning.get("summary")})
            if type(reasoning) is dict
            else _NO_REASONING,
            b',"text":',
            _encode(text) if type(text) is dict else _TEXT_FORMAT,
            b',"store":false,"metadata":' if request.get("store") is False else _STORED,
            _encode(metadata) if metadata else b"{}",
        )
    )
    head = b"".join((b'{"id":', _quoted(frame.ident), _CREATED_AT, str(frame.created_at).encode()))
    return head, b',"model":' + _encode(frame.model), rest


def shell_bytes(frame: ResponseFrame, status: str) -> bytes:
    """`shell(frame, status)` encoded (the same bytes, key for key:
    `tests/test_responses_stream_bytes.py` compares them)."""
    head, model, rest = _shell_parts(frame)
    return b"".join(
        (
            head,
            b',"status":',
            _encode(status),
            b',"background":false,"error":null,"incomplete_details":null',
            model,
            b',"output":[]',
            rest,
            b',"usage":null}',
        )
    )


def _quoted(ident: str) -> bytes:
    """An id as the encoder writes it: an identifier's characters are never escaped (the
    usual id: a prefix, `_`, hex digits), so no encoder call for it."""
    if ident.isidentifier():
        return b'"' + ident.encode() + b'"'
    return _encode(ident)


_DELTA_START = (
    b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
    b'"sequence_number":'
)


# a message's first events: the item, then its `output_text` part (`_emit`'s layout), in
# the pieces around its numbers and id
_ITEM_ADDED = (
    b'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
    b'"sequence_number":'
)
_MESSAGE_ITEM = b',"item":{"type":"message","id":'
_PART_ADDED = (
    b',"status":"in_progress","role":"assistant","content":[]}}\n\n'
    b'event: response.content_part.added\ndata: {"type":"response.content_part.added",'
    b'"sequence_number":'
)
_EMPTY_PART = (
    b',"content_index":0,'
    b'"part":{"type":"output_text","text":"","annotations":[],"logprobs":[]}}\n\n'
)
_DELTA_AT = b',"content_index":0,"delta":'
_DELTA_END = b',"logprobs":[]}\n\n'
# a message's done events and item, laid out as `_emit` and the encoder would write them
_TEXT_PART = b'{"type":"output_text","text":%b,"annotations":[],"logprobs":[]}'
_TEXT_DONE = (
    b'event: response.output_text.done\ndata: {"type":"response.output_text.done",'
    b'"sequence_number":%d,"item_id":%b,"output_index":%d,"content_index":%d,"text":%b,'
    b'"logprobs":[]}\n\n'
)
_PART_DONE = (
    b'event: response.content_part.done\ndata: {"type":"response.content_part.done",'
    b'"sequence_number":%d,"item_id":%b,"output_index":%d,"content_index":%d,"part":%b}\n\n'
)
_MESSAGE_DONE = b'{"type":"message","id":%b,"status":"completed","role":"assistant","content":[%b]}'
# ... the same, in the pieces around their numbers, ids and text (`_close_text`)
_TEXT_PART_HEAD = b'{"type":"output_text","text":'
_TEXT_PART_TAIL = b',"annotations":[],"logprobs":[]}'
_MESSAGE_DONE_HEAD = b'{"type":"message","id":'
_MESSAGE_DONE_PARTS = b',"status":"completed","role":"assistant","content":['
_TEXT_DONE_HEAD = (
    b'event: response.output_text.done\ndata: {"type":"response.output_text.done",'
    b'"sequence_number":'
)
_PART_DONE_HEAD = (
    b',"logprobs":[]}\n\n'
    b'event: response.content_part.done\ndata: {"type":"response.content_part.done",'
    b'"sequence_number":'
)
_ITEM_DONE_HEAD = (
    b"}\n\n"
    b'event: response.output_item.done\ndata: {"type":"response.output_item.done",'
    b'"sequence_number":'
)
_ITEM_DONE = (
    b'event: response.output_item.done\ndata: {"type":"response.output_item.done",'
    b'"sequence_number":%d,"output_index":%d,"item":%b}\n\n'
)
_COMPLETED_EVENT = (
    b'event: response.completed\ndata: {"type":"response.completed","sequence_number":'
)
_INCOMPLETE_EVENT = (
    b'event: response.incomplete\ndata: {"type":"response.incomplete","sequence_number":'
)
_CREATED = b'event: response.created\ndata: {"type":"response.created","sequence_number":'
_IN_PROGRESS_EVENT = (
    b'event: response.in_progress\ndata: {"type":"response.in_progress","sequence_number":'
)
_IN_PROGRESS = b',"status":"in_progress","background":false,"error":null,"incomplete_details":null'


class ResponsesEventWriter:
    """Canonical chunks -> Responses stream events, already formatted (one per stream)."""

    __slots__ = (
        "_calls",
        "_delta_head",
        "_finish",
        "_frame",
        "_items",
        "_name",
        "_open",
        "_output",
        "_pieces",
        "_sequence",
        "_shell",
        "_shell_parts",
        "_started",
        "_texting",
        "_thinking",
        "_usage",
        "thinking",
    )

    def __init__(self, frame: ResponseFrame) -> None:
        self._frame = frame
        self._sequence = 0
        self._started = False
        self._shell: dict[str, Any] | None = None  # the response without output, made once
        self._shell_parts: tuple[bytes, bytes, bytes] | None = None  # ... encoded (`_start`)
        # each output item as its `output_item.done` event gave it, in order: the output of
        # the last event, written again (an item does not change once done); None once not so
        self._items: list[bytes] | None = []
        self._output: list[dict[str, Any]] = []  # items, in progress then done
        self._open: int | None = None  # output index of the item still receiving deltas
        self._calls: dict[int, int] = {}  # canonical tool-call index -> output index
        self._thinking: list[dict[str, Any]] = []  # thinking blocks of the open reasoning item
        self.thinking: list[dict[str, Any]] = []
        """Every thinking block of the answer (signatures included), for the store."""
        self._finish: str | None = None
        self._usage: Any = None
        self._pieces: list[str] = []  # the open text part's deltas, joined when it is read
        # the bytes of an `output_text.delta` event around its sequence number and delta,
        # made once per text part: (the open message's index, the part's index, after, tail)
        self._delta_head: tuple[int, int, bytes, bytes] | None = None
        self._texting = False  # the open item is a message whose last part is output_text
        self._name: tuple[int, bytes] | None = None  # the message `_open_message` opened, its id

    def _emit(self, kind: str, payload: dict[str, Any], out: list[bytes]) -> None:
        """One event: `{"type": kind, "sequence_number": n, **payload}` as `_event` lays it
        out, the first two keys written as bytes (`kind` is one of the API's event names,
        plain ASCII; `payload` never empty)."""
        name = kind.encode()
        sequence = self._sequence
        self._sequence = sequence + 1
        out.append(
            b'event: %b\ndata: {"type":"%b","sequence_number":%d,%b\n\n'
            % (name, name, sequence, _encode(payload)[1:])
        )

    def _start(self, out: list[bytes]) -> None:
        self._started = True
        # both events carry the same response: encoded once, as `_emit` would lay it out
        # (the dict itself is made when `response` is asked for)
        self._shell_parts = head, model, rest = _shell_parts(self._frame)
        response = b"".join(
            (
                b',"response":',
                head,
                _IN_PROGRESS,
                model,
                b',"output":[]',
                rest,
                b',"usage":null}}\n\n',
            )
        )
        sequence = self._sequence
        self._sequence = sequence + 2
        out.append(
            b"".join(
                (
                    _CREATED,
                    _DIGITS[sequence],
                    response,
                    _IN_PROGRESS_EVENT,
                    _DIGITS[sequence + 1],
                    response,
                )
            )
        )

    def _add(self, item: dict[str, Any], out: list[bytes]) -> int:
        self._close(out)
        index = len(self._output)
        self._output.append(item)
        self._open = index
        self._emit("response.output_item.added", {"output_index": index, "item": item}, out)
        return index

    def _settle_text(self) -> None:
        """The open text part's deltas joined into its `text` (or `refusal`)."""
        pieces = self._pieces
        if not pieces:
            return
        index = self._open
        if index is not None and self._output[index]["type"] == "message":
            part = self._output[index]["content"][-1]
            field = "text" if part["type"] == "output_text" else "refusal"
            part[field] += "".join(pieces)
        self._pieces = []

    def _close(self, out: list[bytes]) -> None:
        index = self._open
        if index is None:
            return
        self._settle_text()
        self._open = None
        self._texting = False
        item = self._output[index]
        ident = item["id"]
        kind = item["type"]
        if kind == "message":
            if self._close_text(item, index, out):
                return
            parts: list[bytes] = []
            opened = self._name
            name = opened[1] if opened is not None and opened[0] == index else _quoted(ident)
            for n, part in enumerate(item["content"]):
                if part["type"] == "output_text" and len(part) == 4:  # (`_text_part`'s)
                    text = _encode(part["text"])
                    sequence = self._sequence
                    self._sequence = sequence + 2
                    part_bytes = _TEXT_PART % text
                    parts.append(part_bytes)
                    out.append(_TEXT_DONE % (sequence, name, index, n, text))
                    out.append(_PART_DONE % (sequence + 1, name, index, n, part_bytes))
                    continue
                parts.append(_encode(part))
                if part["type"] == "output_text":
                    done = {
                        "item_id": ident,
                        "output_index": index,
                        "content_index": n,
                        "text": part["text"],
                        "logprobs": [],
                    }
                    self._emit("response.output_text.done", done, out)
                else:
                    at = {"item_id": ident, "output_index": index, "content_index": n}
                    self._emit("response.refusal.done", {**at, "refusal": part["refusal"]}, out)
                done = {"item_id": ident, "output_index": index, "content_index": n, "part": part}
                self._emit("response.content_part.done", done, out)
        elif kind == "function_call":
            where = {"item_id": ident, "output_index": index}
            done = {**where, "name": item["name"], "arguments": item["arguments"]}
            self._emit("response.function_call_arguments.done", done, out)
        elif kind == "reasoning":
            where = {"item_id": ident, "output_index": index}
            if self._frame.encrypted:
                item["encrypted_content"] = encode_reasoning(self._thinking)
            self._thinking = []
            for n, summary in enumerate(item["summary"]):
                at = {**where, "summary_index": n}
                done = {**at, "text": summary["text"]}
                self._emit("response.reasoning_summary_text.done", done, out)
                self._emit("response.reasoning_summary_part.done", {**at, "part": summary}, out)
        item["status"] = "completed"
        if kind == "message" and len(item) == 5:  # (`_message_item`'s keys)
            encoded = _MESSAGE_DONE % (name, b",".join(parts))
        else:
            encoded = _encode(item)
        self._keep_done(index, encoded)
        sequence = self._sequence
        self._sequence = sequence + 1
        out.append(_ITEM_DONE % (sequence, index, encoded))  # as `_emit` lays it out

    def _keep_done(self, index: int, encoded: bytes) -> None:
        """A done item's bytes, kept for the last event (when the items so far are all kept,
        in order: else none is)."""
        items = self._items
        if items is not None:
            if len(items) == index:
                items.append(encoded)
            else:
                self._items = None

    def _close_text(self, item: dict[str, Any], index: int, out: list[bytes]) -> bool:
        """The done events of a message `_open_message` opened with one `output_text` part
        and no other, the usual answer: what `_close` writes for it, in one piece; False
        for any other message."""
        opened = self._name
        content = item["content"]
        if opened is None or opened[0] != index or len(content) != 1 or len(item) != 5:
            return False
        part = content[0]
        if part["type"] != "output_text" or len(part) != 4:
            return False
        name = opened[1]
        text = _encode(part["text"])
        sequence = self._sequence
        self._sequence = sequence + 3
        at = _DIGITS[index]
        part_bytes = b"".join((_TEXT_PART_HEAD, text, _TEXT_PART_TAIL))
        encoded = b"".join((_MESSAGE_DONE_HEAD, name, _MESSAGE_DONE_PARTS, part_bytes, b"]}"))
        item["status"] = "completed"
        self._keep_done(index, encoded)
        out.append(
            b"".join(
                (
                    _TEXT_DONE_HEAD,
                    _DIGITS[sequence],
                    b',"item_id":',
                    name,
                    b',"output_index":',
                    at,
                    b',"content_index":0,"text":',
                    text,
                    _PART_DONE_HEAD,
                    _DIGITS[sequence + 1],
                    b',"item_id":',
                    name,
                    b',"output_index":',
                    at,
                    b',"content_index":0,"part":',
                    part_bytes,
                    _ITEM_DONE_HEAD,
                    _DIGITS[sequence + 2],
                    b',"output_index":',
                    at,
                    b',"item":',
                    encoded,
                    b"}\n\n",
                )
            )
        )
        return True

    def _current(self, kind: str) -> dict[str, Any] | None:
        if self._open is not None and self._output[self._open]["type"] == kind:
            return self._output[self._open]
        return None

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        """The events one canonical chunk makes, each one `bytes`."""
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        self._feed(chunk, out)
        return out

    def feed_batch(self, chunks: list[dict[str, Any]]) -> bytes:
        """The events the chunks of one upstream read make, joined (`b""` when none). More
        text for the open text part, the usual chunk, takes a short path: what `_feed` would
        write, without its general checks."""
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        for chunk in chunks:
            if self._texting:  # only text for choice 0 (no finish, no usage): its event
                choices = chunk.get("choices")
                if type(choices) is list and len(choices) == 1 and not chunk.get("usage"):
                    choice = choices[0]
                    delta = choice.get("delta") if type(choice) is dict else None
                    if (
                        type(delta) is dict
                        and len(delta) == 1
                        and not choice.get("finish_reason")
                        and choice.get("index", 0) == 0
                    ):
                        text = delta.get("content")
                        if text and type(text) is str:
                            head = self._delta_head
                            assert head is not None
                            self._pieces.append(text)
                            sequence = self._sequence
                            self._sequence = sequence + 1
                            out += (
                                _DELTA_START,
                                _DIGITS[sequence],
                                head[2],
                                _encode(text),
                                head[3],
                            )
                            continue
            self._feed(chunk, out)
        return b"".join(out)

    def plain(self, text: str, finish: str | None, usage: dict[str, Any] | None) -> bytes:
        """What `feed_batch` makes of a read's chunks that are only the answer's start, `text`
        (more of its one text part), its finish reason and its usage (`PlainSink`)."""
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        if text:
            if self._texting:
                self._more_text(text, out)
            else:
                self._text("output_text", text, out)
        if finish:
            self._finish = finish
        if usage:
            self._usage = usage
        return b"".join(out)

    def more_text(self, text: str) -> bytes | None:
        """The `output_text.delta` event of more text for the open text part, what
        `feed_batch` makes for a chunk of only that text (`b""` for none); None when no text
        part is open (then the chunk goes through `feed_batch`)."""
        if not self._texting:
            return None
        if not text:
            return b""
        head = self._delta_head
        assert head is not None
        self._pieces.append(text)
        sequence = self._sequence
        self._sequence = sequence + 1
        return b"".join((_DELTA_START, _DIGITS[sequence], head[2], _encode(text), head[3]))

    def _feed(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        usage = chunk.get("usage")
        if usage:
            self._usage = usage
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if self._texting and type(delta) is dict and len(delta) == 1:
                content = delta.get("content")
                if content and type(content) is str:  # more of the open text: the usual case
                    self._more_text(content, out)
                    delta = None
            if delta and isinstance(delta, dict):
                if (
                    "reasoning_content" in delta
                    or "reasoning" in delta
                    or "thinking_blocks" in delta
                ):
                    self._reasoning(delta, out)
                content = delta.get("content")
                if content and isinstance(content, str):
                    self._text("output_text", content, out)
                refusal = delta.get("refusal")
                if refusal and isinstance(refusal, str):
                    self._text("refusal", refusal, out)
                for call in delta.get("tool_calls") or ():
                    if isinstance(call, dict):
                        self._call(call, out)
            finish = choice.get("finish_reason")
            if finish:
                self._finish = finish

    def _reasoning_item(self, out: list[bytes]) -> dict[str, Any]:
        item = self._current("reasoning")
        if item is None:
            ident = self._frame.item_id("rs", len(self._output))
            item = _reasoning_item(ident, "", [], False, "in_progress")
            index = self._add(item, out)
            part = {"type": "summary_text", "text": ""}
            item["summary"].append(dict(part))
            where = {"item_id": ident, "output_index": index, "summary_index": 0}
            self._emit("response.reasoning_summary_part.added", {**where, "part": part}, out)
        return item

    def _reasoning(self, delta: dict[str, Any], out: list[bytes]) -> None:
        text = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(text, str) and text:
            self._summary_delta(self._reasoning_item(out), text, out)
        for block in delta.get("thinking_blocks") or ():
            if not isinstance(block, dict):
                continue
            item = self._reasoning_item(out)
            if not item["summary"][0]["text"] and block.get("thinking"):
                self._summary_delta(item, str(block["thinking"]), out)  # it came whole
            self._thinking.append(block)
            self.thinking.append({k: v for k, v in block.items() if k != "index"})

    def _summary_delta(self, item: dict[str, Any], text: str, out: list[bytes]) -> None:
        item["summary"][0]["text"] += text
        where = {"item_id": item["id"], "output_index": self._open, "summary_index": 0}
        self._emit("response.reasoning_summary_text.delta", {**where, "delta": text}, out)

    def _text(self, kind: str, text: str, out: list[bytes]) -> None:
        item = self._current("message")
        if item is None and kind == "output_text":  # a message begins, the usual way
            self._open_message(text, out)
            return
        if item is None:
            ident = self._frame.item_id("msg", len(self._output))
            item = _message_item(ident, [], "in_progress")
            self._add(item, out)
        parts = item["content"]
        index = self._open
        assert index is not None
        if not parts or parts[-1]["type"] != kind:
            self._settle_text()
            part = _text_part("") if kind == "output_text" else {"type": "refusal", "refusal": ""}
            parts.append(part)
            at = {"item_id": item["id"], "output_index": index, "content_index": len(parts) - 1}
            self._emit("response.content_part.added", {**at, "part": dict(part)}, out)
        self._pieces.append(text)
        self._texting = kind == "output_text"
        if kind == "output_text":
            out.append(self._text_delta(item["id"], index, len(parts) - 1, text))
        else:
            at = {"item_id": item["id"], "output_index": index, "content_index": len(parts) - 1}
            self._emit("response.refusal.delta", {**at, "delta": text}, out)

    def _open_message(self, text: str, out: list[bytes]) -> None:
        """A message item with its `output_text` part and the part's first text: what
        `_add`, then `_text` for a part, would write (one template for both events)."""
        if self._open is not None:
            self._close(out)
        output = self._output
        index = len(output)
        ident = self._frame.item_id("msg", index)
        # (`_message_item` and `_text_part`'s dicts, written out)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        output.append(
            {
                "type": "message",
                "id": ident,
                "status": "in_progress",
                "role": "assistant",
                "content": [part],
            }
        )
        self._open = index
        name = _quoted(ident)
        self._name = (index, name)  # (its done events' too)
        sequence = self._sequence
        self._sequence = sequence + 3
        self._pieces.append(text)
        self._texting = True
        at = _DIGITS[index]
        after = b"".join((b',"item_id":', name, b',"output_index":', at, _DELTA_AT))
        self._delta_head = (index, 0, after, _DELTA_END)
        out.append(
            b"".join(
                (
                    _ITEM_ADDED,
                    _DIGITS[sequence],
                    b',"output_index":',
                    at,
                    _MESSAGE_ITEM,
                    name,
                    _PART_ADDED,
                    _DIGITS[sequence + 1],
                    b',"item_id":',
                    name,
                    b',"output_index":',
                    at,
                    _EMPTY_PART,
                    _DELTA_START,
                    _DIGITS[sequence + 2],
                    after,
                    _encode(text),
                    _DELTA_END,
                )
            )
        )

    def _more_text(self, text: str, out: list[bytes]) -> None:
        """More text for the open `output_text` part (`_texting`: its template is made)."""
        head = self._delta_head
        assert head is not None
        self._pieces.append(text)
        sequence = self._sequence
        self._sequence = sequence + 1
        out.append(b"".join((_DELTA_START, _DIGITS[sequence], head[2], _encode(text), head[3])))

    def _text_delta(self, item_id: str, index: int, part: int, text: str) -> bytes:
        """An `output_text.delta` event: the constant parts encoded once per text part, as
        `_emit` would (the same keys in the same order)."""
        head = self._delta_head
        if head is None or head[0] != index or head[1] != part:
            after = b',"item_id":%s,"output_index":%d,"content_index":%d,"delta":' % (
                _encode(item_id),
                index,
                part,
            )
            head = self._delta_head = (index, part, after, b',"logprobs":[]}\n\n')
        sequence = self._sequence
        self._sequence = sequence + 1
        return b"".join((_DELTA_START, _DIGITS[sequence], head[2], _encode(text), head[3]))

    def _call(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index")
        key = position if isinstance(position, int) else len(self._calls)
        function = call.get("function") or {}
        index = self._calls.get(key)
        if index is None or (call.get("id") and self._output[index]["call_id"] != call["id"]):
            n = len(self._calls)
            call_id = str(call.get("id") or f"call_{self._frame.ident.removeprefix('resp_')}_{n}")
            ident = self._frame.item_id("fc", len(self._output))
            name = str(function.get("name") or "")
            index = self._add(_call_item(ident, call_id, name, "", "in_progress"), out)
            self._calls[key] = index
        item = self._output[index]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            if index != self._open:  # a late delta of an earlier call: its item is done
                return
            item["arguments"] += arguments
            where = {"item_id": item["id"], "output_index": index}
            self._emit("response.function_call_arguments.delta", {**where, "delta": arguments}, out)

    def response(self) -> dict[str, Any]:
        """The whole response so far (after `finish`: as the last event gave it)."""
        self._settle_text()
        # the shell itself (its events are written): `_finished` sets what changes
        response = self._shell
        if response is None:
            response = self._shell = shell(self._frame, "in_progress")
        response["output"] = self._output
        return _finished(response, self._finish, self._usage)

    def finish(self) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        self._close(out)
        reason = _INCOMPLETE.get(self._finish or "")
        event = self._finished_event(reason)
        if event is None:
            kind = "response.incomplete" if reason else "response.completed"
            self._emit(kind, {"response": self.response()}, out)
        else:
            out.append(event)
        return out

    def _finished_event(self, reason: str | None) -> bytes | None:
        """The last event, its response (`response()` encoded) made of the bytes already
        written: the shell's parts (`_start`'s) around its status, details, output and usage,
        and the done items'; None when they are not at hand (then it is encoded whole)."""
        items = self._items
        parts = self._shell_parts
        if parts is None or items is None or len(items) != len(self._output) or self._pieces:
            return None
        usage = responses_usage(self._usage)
        sequence = self._sequence
        self._sequence = sequence + 1
        return b"".join(
            (
                _INCOMPLETE_EVENT if reason else _COMPLETED_EVENT,
                _DIGITS[sequence],
                b',"response":',
                parts[0],
                b',"status":"incomplete"' if reason else b',"status":"completed"',
                b',"background":false,"error":null,"incomplete_details":',
                _encode({"reason": reason}) if reason else b"null",
                parts[1],
                b',"output":[',
                b",".join(items),
                b"]",
                parts[2],
                b',"usage":',
                b"null" if usage is None else _encode(usage),
                b"}}\n\n",
            )
        )

    def fail(self, code: str | None, message: str) -> list[bytes]:
        out: list[bytes] = []
        if not self._started:
            self._start(out)
        response = self.response()
        response["status"] = "failed"
        response["incomplete_details"] = None
        # OpenAI's codes for a failed response are a closed list: ours map to the nearest
        known = code if code == "rate_limit_exceeded" else "server_error"
        response["error"] = {"code": known, "message": message}
        self._emit("response.failed", {"response": response}, out)
        return out
