"""`strip_usage`: the usage the gateway asked for upstream, removed for a client that did not ask
— the byte-cut fast path and the decoding path give the same chunks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from mini_llm.dialects.openai_chat import strip_usage


def _stripped(*reads: bytes) -> list[dict[str, object]]:
    async def source() -> AsyncIterator[bytes]:
        for read in reads:
            yield read

    async def collect() -> bytes:
        return b"".join([part async for part in strip_usage(source())])

    text = asyncio.run(collect()).decode()
    events = [e for e in text.split("\n\n") if e.strip()]
    assert all(e.startswith("data:") for e in events), events
    return [json.loads(e[5:]) for e in events if e[5:].strip() != "[DONE]"]


def _chunk(usage_first: bool, spaced: bool, content: str = "hi") -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "choices": [
        {"index": 0, "delta": {"content": content}, "finish_reason": None}
    ]}  # fmt: skip
    members = [("usage", None), *body.items()] if usage_first else [*body.items(), ("usage", None)]
    separators = (", ", ": ") if spaced else (",", ":")
    return b"data: " + json.dumps(dict(members), separators=separators).encode() + b"\n\n"


def test_null_usage_is_cut_wherever_it_stands_and_however_spaced() -> None:
    for usage_first in (False, True):
        for spaced in (False, True):
            (chunk,) = _stripped(_chunk(usage_first, spaced))
            assert "usage" not in chunk
            assert chunk["choices"][0]["delta"] == {"content": "hi"}  # type: ignore[index]


def test_text_that_mentions_usage_is_left_alone() -> None:
    quoted = 'say "usage":null, please'
    (chunk,) = _stripped(_chunk(False, False, quoted))
    assert "usage" not in chunk
    assert chunk["choices"][0]["delta"] == {"content": quoted}  # type: ignore[index]


def test_the_usage_chunk_goes_and_done_stays() -> None:
    final = {"id": "c1", "object": "chat.completion.chunk", "choices": [],
             "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}  # fmt: skip
    reads = (
        _chunk(False, False) + b"data: " + json.dumps(final).encode() + b"\n\n",
        b"data: [DONE]\n\n",
    )
    chunks = _stripped(*reads)
    assert len(chunks) == 1 and "usage" not in chunks[0]
