"""The OpenAI Chat Completions dialect: `POST /v1/chat/completions` (also without `/v1`).

Its format is the canonical one, so a body goes to an OpenAI-format provider as it came (only
`model` rewritten) and to any other through its wire format's translation. When the gateway
needs usage from a stream whose client did not ask for it, it asks upstream anyway
(`stream_options.include_usage`) and takes the usage out again on the way back, so the client's
stream is what it asked for.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from ..call import Answer, Call
from ..errors import GatewayError
from ..formats import CHAT, OPENAI
from ..schema.openai import validate_chat_request
from ..sse import DONE
from .base import LastEvents

LAST_DONE = LastEvents(DONE)

__all__ = ["OPENAI_CHAT", "OpenAIChatDialect", "strip_usage"]

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class OpenAIChatDialect:
    name = "openai.chat"
    format = OPENAI
    operation = CHAT

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        chat = validate_chat_request(body)
        options = chat.stream_options
        asked = bool(options is not None and options.include_usage)
        return Call(CHAT, OPENAI, body, chat.model, bool(chat.stream), usage_asked=asked)

    async def prepare(self, call: Call) -> None:
        return None

    def ask_usage(self, call: Call) -> None:
        """Ask the upstream for a stream's usage even though the client did not."""
        if call.stream and not call.usage_asked:
            call.usage_added = True
            options = call.body.get("stream_options")
            call.body["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }

    def whole(self, call: Call, answer: Answer) -> bytes:
        completion = answer.completion
        if completion is None:
            return answer.data or b""
        completion["created"] = completion.get("created") or int(time.time())
        return _encode(completion)

    async def events(
        self, call: Call, answer: Answer, chunks: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncIterator[bytes]:
        # translators always end with a usage chunk (no choices); only sent when asked for
        include_usage = call.usage_asked
        created = int(time.time())
        async for batch in chunks:
            out = []
            for chunk in batch:
                if not chunk.get("created"):
                    chunk["created"] = created
                if "usage" in chunk and not include_usage:
                    if not chunk.get("choices"):
                        continue
                    del chunk["usage"]
                out.append(b"data: " + _encode(chunk) + b"\n\n")
            if out:
                yield b"".join(out)
        yield LAST_DONE

    def passthrough(self, call: Call, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        if call.usage_added:
            return strip_usage(stream)
        return stream

    def local(self, call: Call) -> tuple[bytes, dict[str, str]] | None:
        return None

    def error_body(self, error: GatewayError) -> bytes:
        return error.openai_body()

    def error_event(self, error: GatewayError) -> bytes:
        return b"data: " + error.openai_body() + b"\n\n"


async def strip_usage(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """An OpenAI stream without the usage the gateway asked for: the usage-only chunk goes,
    and `"usage": null` goes from the others. Only events that mention usage are re-encoded."""
    async for data in stream:
        if b'"usage"' not in data:
            yield data
            continue
        out: list[bytes] = []
        for event in data.split(b"\n\n"):
            if b'"usage"' not in event:
                if event.strip():
                    out.append(event + b"\n\n")
                continue
            bare = _without_null_usage(event)
            if bare is not None:  # the common case (OpenAI's every chunk): no decode
                out.append(bare + b"\n\n")
                continue
            head, sep, payload = event.partition(b"data:")
            try:
                chunk = _decode(payload)
            except msgspec.DecodeError:
                out.append(event + b"\n\n")
                continue
            if not isinstance(chunk, dict):
                out.append(event + b"\n\n")
                continue
            if not chunk.get("choices"):
                continue  # the usage-only chunk: the client did not ask for it
            chunk.pop("usage", None)
            out.append(head + sep + b" " + _encode(chunk) + b"\n\n")
        if out:
            yield b"".join(out)


_NULL_USAGE = (b',"usage":null', b', "usage": null', b'"usage":null,', b'"usage": null, ')


def _without_null_usage(event: bytes) -> bytes | None:
    """The event without its top-level `"usage": null` member, cut from the bytes; None when
    that cannot be done safely (usage mentioned otherwise, or more than once). A quote inside a
    JSON string is escaped, so an unescaped `"usage"` is a key; a chat chunk has no nested
    object with that key."""
    if event.count(b'"usage"') != 1:
        return None
    for member in _NULL_USAGE:
        at = event.find(member)
        if at >= 0:
            return event[:at] + event[at + len(member) :]
    return None


OPENAI_CHAT = OpenAIChatDialect()
