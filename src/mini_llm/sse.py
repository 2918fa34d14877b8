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
    """Incremental SSE parser: `feed(bytes)` returns the events each chunk completes.

    The bytes of an event still incomplete are kept as they are until its blank line comes
    (then the event is read whole): a read holds many events, most of them one `event:` line
    and one `data:` line, which take a short path."""

    __slots__ = ("_buf", "_id", "_pending_cr", "_started", "idle")

    def __init__(self) -> None:
        self._buf = b""  # an incomplete event's lines, line ends already made LF
        self._id: str | None = None
        self._started = False
        self._pending_cr = False
        self.idle = False
        """Whether the parser holds nothing (no part of an event, no CR whose LF may follow,
        the BOM check done): a decoder may then read a chunk that is exactly one whole event
        of its own, without `blocks`."""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for block in self.blocks(chunk):
            event = self.event(block)
            if event is not None:
                events.append(event)
        return events

    def blocks(self, chunk: bytes) -> list[bytes]:
        """The lines of each event this chunk completes, still bytes (line ends made LF, the
        blank line that ends the event left out); `event` reads one. For a decoder that
        recognises its most frequent event by its bytes: `feed` is `event` of each."""
        if not chunk:
            return []
        if self._pending_cr:
            # the previous chunk ended in CR: an LF right after it belongs to that line end
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if not self._started:
            chunk = self._buf + chunk
            self._buf = b""
            if len(chunk) < 3 and b"\xef\xbb\xbf".startswith(chunk):
                self._buf = chunk
                return []
            self._started = True
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
        # (`find`, not `in`: `in` tries the needle as an int first, and pays for the error)
        if chunk.find(b"\r") >= 0:
            self._pending_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        held = self._buf
        if held:
            # a blank line in what came now, or across the boundary: else nothing completes
            if chunk.find(b"\n\n") < 0 and not (held[-1:] == b"\n" and chunk[:1] == b"\n"):
                self._buf = held + chunk
                return []
            chunk = held + chunk
        blocks = chunk.split(b"\n\n")  # each the lines of one event (a blank line ends it)
        held = self._buf = blocks.pop()
        self.idle = not held and not self._pending_cr
        return blocks

    @property
    def holding(self) -> bool:
        """Whether a part of an event (or a CR whose LF may follow) is held: else the next
        chunk begins an event, the first one perhaps (`idle`: and the start is behind)."""
        return bool(self._buf) or self._pending_cr

    def event(self, block: bytes) -> SSEEvent | None:
        """The event of one block `blocks` gave (None for one without data), in order."""
        if block[:7] == b"event: ":  # `event: <name>` then `data: <payload>`, alone
            end = block.find(b"\n")
            if end > 0 and block[end + 1 : end + 7] == b"data: " and block.find(b"\n", end + 1) < 0:
                name = block[7:end].decode("utf-8", "replace")
                return SSEEvent(block[end + 7 :].decode("utf-8", "replace"), name, self._id)
        elif block[:6] == b"data: " and block.find(b"\n") < 0:
            return SSEEvent(block[6:].decode("utf-8", "replace"), None, self._id)
        event, self._id = self._block(block, self._id)
        return event

    @staticmethod
    def _block(block: bytes, ident: str | None) -> tuple[SSEEvent | None, str | None]:
        """Any event's lines, field by field (the blank line that ends the block dispatches
        it); with the last event id."""
        data: list[str] = []
        event: str | None = None
        retry: int | None = None
        for raw in block.split(b"\n"):
            if not raw:  # a blank line at the start of a block (three line ends in a row)
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
        if data:
            return SSEEvent("\n".join(data), event, ident, retry), ident
        return None, ident

    def flush(self) -> list[SSEEvent]:
        """End of stream: an event lacking its blank line is dropped, as the spec says."""
        self._buf = b""
        return []


def format_data(payload: bytes) -> bytes:
    """One `data:` event around a single-line payload (JSON never contains raw newlines)."""
    return b"data: " + payload + b"\n\n"


def format_event(event: str, payload: bytes) -> bytes:
    """A named event, as Anthropic streams use."""
    return b"event: " + event.encode() + b"\ndata: " + payload + b"\n\n"
