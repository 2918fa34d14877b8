"""Server-sent events: the one incremental parser and the formatter every stream uses.

The parser follows the WHATWG event-stream rules: lines end in CRLF, LF or CR; `data` lines
of one event are joined with newlines; a blank line dispatches; lines starting with `:` are
comments; a UTF-8 BOM at the very start is dropped. It is fed arbitrary byte chunks (network
reads split events anywhere) and returns the events completed so far.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DONE", "SSEEvent", "SSEParser", "format_data", "format_event"]

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Incremental SSE parser: `feed(bytes)` returns the events each chunk completes."""

    __slots__ = ("_buf", "_data", "_event", "_id", "_pending_cr", "_retry", "_started")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None
        self._retry: int | None = None
        self._started = False
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if not chunk:
            return []
        if self._pending_cr:
            # the previous chunk ended in CR: an LF right after it belongs to that line end
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        buf = self._buf + chunk if self._buf else chunk
        if not self._started:
            if len(buf) < 3 and b"\xef\xbb\xbf".startswith(buf):
                self._buf = buf
                return []
            self._started = True
            if buf.startswith(b"\xef\xbb\xbf"):
                buf = buf[3:]
        events: list[SSEEvent] = []
        if b"\r" in buf:
            lines = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            if buf.endswith(b"\r"):
                self._pending_cr = True
        else:
            lines = buf.split(b"\n")
        self._buf = lines.pop()
        # `_line`, inlined with the state in locals: a read holds many lines (this is the
        # hot loop of every translated stream)
        data, event, ident, retry = self._data, self._event, self._id, self._retry
        for raw in lines:
            if not raw:
                if data:
                    events.append(SSEEvent("\n".join(data), event, ident, retry))
                    data = []
                event = None
                retry = None
                continue
            if raw[:1] == b":":
                continue
            field, sep, value = raw.decode("utf-8", "replace").partition(":")
            if sep and value[:1] == " ":
                value = value[1:]
            if field == "data":
                data.append(value)
            elif field == "event":
                event = value
            elif field == "id":
                if "\0" not in value:
                    ident = value
            elif field == "retry" and value.isdigit():
                retry = int(value)
        self._data, self._event, self._id, self._retry = data, event, ident, retry
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: an unterminated last line is read, but an event lacking its blank
        line is dropped, as the spec says."""
        events: list[SSEEvent] = []
        if self._buf:
            self._line(self._buf, events)
            self._buf = b""
        self._data = []
        self._event = None
        return events

    def _line(self, raw: bytes, events: list[SSEEvent]) -> None:
        if not raw:
            if self._data:
                events.append(SSEEvent("\n".join(self._data), self._event, self._id, self._retry))
            self._data = []
            self._event = None
            self._retry = None
            return
        if raw[:1] == b":":
            return
        line = raw.decode("utf-8", "replace")
        field, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry" and value.isdigit():
            self._retry = int(value)


def format_data(payload: bytes) -> bytes:
    """One `data:` event around a single-line payload (JSON never contains raw newlines)."""
    return b"data: " + payload + b"\n\n"


def format_event(event: str, payload: bytes) -> bytes:
    """A named event, as Anthropic streams use."""
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
