from __future__ import annotations

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
