from __future__ import annotations

import random

import pytest

from mini_llm.errors import UpstreamError
from mini_llm.providers.openai import OpenAIStreamReader
from mini_llm.sse import SSEEvent, SSEParser, format_event

STREAM = (
    b"\xef\xbb\xbf: comment line\n"
    b'event: message_start\ndata: {"a": 1}\n\n'
    b"data: line one\r\ndata: line two\r\n\r\n"
    b"id: 7\rretry: 1500\rdata: cr only\r\r"
    b"data:no-space\n\n"
    b"event: ignored-without-data\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent('{"a": 1}', "message_start"),
    SSEEvent("line one\nline two"),
    SSEEvent("cr only", None, "7", 1500),
    SSEEvent("no-space", None, "7"),
    SSEEvent("[DONE]", None, "7"),
]


def test_parse_whole_stream() -> None:
    parser = SSEParser()
    assert parser.feed(STREAM) + parser.flush() == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 16])
def test_parse_split_anywhere(size: int) -> None:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for i in range(0, len(STREAM), size):
        events += parser.feed(STREAM[i : i + size])
    assert events + parser.flush() == EXPECTED


def test_unterminated_event_is_dropped_at_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: complete\n\ndata: partial") == [SSEEvent("complete")]
    assert parser.flush() == []


def test_format_event_round_trip() -> None:
    parser = SSEParser()
    assert parser.feed(format_event("ping", b"{}")) == [SSEEvent("{}", "ping")]


def test_openai_stream_reader() -> None:
    reader = OpenAIStreamReader()
    chunk = reader.feed(SSEEvent('{"choices": [{"index": 0, "finish_reason": "stop"}]}'))
    assert chunk == [{"choices": [{"index": 0, "finish_reason": "stop"}]}]
    assert reader.feed(SSEEvent("[DONE]")) == []
    assert reader.finish() == []


def test_openai_stream_reader_errors() -> None:
    with pytest.raises(UpstreamError, match="malformed"):
        OpenAIStreamReader().feed(SSEEvent("{not json"))
    with pytest.raises(UpstreamError, match="overloaded"):
        OpenAIStreamReader().feed(SSEEvent('{"error": {"message": "overloaded"}}'))
    reader = OpenAIStreamReader()
    reader.feed(SSEEvent('{"choices": [{"index": 0, "delta": {"content": "x"}}]}'))
    with pytest.raises(UpstreamError, match="ended before"):
        reader.finish()


def _reference(stream: bytes) -> list[SSEEvent]:
    """The rules read one line at a time, as the spec words them: the oracle for the parser,
    which reads a whole event at once."""
    if stream.startswith(b"\xef\xbb\xbf"):
        stream = stream[3:]
    lines = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    lines.pop()  # the unterminated last line (or the empty rest after the last line end)
    events: list[SSEEvent] = []
    data: list[str] = []
    event: str | None = None
    ident: str | None = None
    retry: int | None = None
    for raw in lines:
        if not raw:
            if data:
                events.append(SSEEvent("\n".join(data), event, ident, retry))
            data, event, retry = [], None, None
            continue
        if raw.startswith(b":"):
            continue
        field, sep, value = raw.decode("utf-8", "replace").partition(":")
        value = value[1:] if sep and value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id" and "\0" not in value:
            ident = value
        elif field == "retry" and value.isdigit():
            retry = int(value)
    return events


_LINES = [
    b"data: x",
    b"data:y",
    b"data: ",
    b"data",
    b'data: {"type":"content_block_delta"}',
    b"event: message_start",
    b"event:ping",
    b"event: a:b",
    b"id: 4",
    b"id",
    b"retry: 20",
    b"retry: x",
    b": comment",
    b"other: field",
    b"data: caf\xc3\xa9 \xff",
    b"",
    b"",
    b"",
]


@pytest.mark.parametrize("seed", range(40))
def test_parser_agrees_with_the_line_rules(seed: int) -> None:
    rng = random.Random(seed)
    ends = [b"\n"] * 6 + [b"\r\n", b"\r"]
    stream = b"".join(rng.choice(_LINES) + rng.choice(ends) for _ in range(rng.randint(1, 60)))
    if rng.random() < 0.5:
        stream += rng.choice(_LINES)  # an unterminated last line
    expected = _reference(stream)
    parser = SSEParser()
    events: list[SSEEvent] = []
    at = 0
    while at < len(stream):
        size = rng.choice((1, 2, 3, 7, 20, 100, 1000))
        events += parser.feed(stream[at : at + size])
        at += size
    assert events + parser.flush() == expected
