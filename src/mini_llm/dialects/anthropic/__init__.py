"""The Anthropic Messages dialect: `POST /v1/messages` and `/v1/messages/count_tokens`.

To an Anthropic provider a request passes through (only `model` rewritten; the answer's bytes
come back as they are, but for `model`, which is always the name the client sent). Such a
request is checked only for what routing needs: the upstream knows its own blocks. A request
that may be translated is checked in full (`request.py` makes the canonical form), and its
answer is rendered back as a message or as Anthropic stream events (`response.py`).
`count_tokens` goes to Anthropic when the model is there, else the gateway estimates it. The
client's `x-api-key` or bearer token is never forwarded; `anthropic-beta` and
`anthropic-version` are, to Anthropic only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import msgspec

from ...call import Answer, Call
from ...canonical import estimate_tokens
from ...errors import GatewayError
from ...formats import ANTHROPIC, CHAT, COUNT_TOKENS, Operation
from ...schema.anthropic import (
    DocumentBlock,
    ImageBlock,
    MessagesRequest,
    ToolResultBlock,
    validate_messages_envelope,
    validate_messages_request,
)
from ..base import LastEvents
from .request import dropped_fields, to_canonical_request
from .response import AnthropicEventWriter, to_anthropic_message

__all__ = ["ANTHROPIC_COUNT_TOKENS", "ANTHROPIC_MESSAGES", "estimate_input_tokens"]

_encode = msgspec.json.encode
_decode = msgspec.json.decode

# Client headers an Anthropic upstream should see: opt-in betas, and the API version the
# client's request is written for (else the gateway's own).
_FORWARDED = ("anthropic-beta", "anthropic-version")


def _forwarded(headers: Mapping[str, str]) -> dict[str, str] | None:
    found = {name: headers[name] for name in _FORWARDED if name in headers}
    return found or None


def _converter(dropped: list[str]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A call's canonical converter: what it cannot carry is named in `dropped`."""

    def convert(body: dict[str, Any]) -> dict[str, Any]:
        canonical = to_canonical_request(validate_messages_request(body), dropped, body)
        dropped_fields(body, dropped)
        return canonical

    return convert


def _call(
    operation: Operation, body: dict[str, Any], headers: Mapping[str, str], count_only: bool
) -> Call:
    envelope = validate_messages_envelope(body, count_only=count_only)
    dropped: list[str] = []
    call = Call(
        operation,
        ANTHROPIC,
        body,
        envelope.model,
        bool(envelope.stream) and not count_only,
        to_canonical=_converter(dropped),
        forward=_forwarded(headers),
    )
    call.dropped = dropped
    return call


class AnthropicMessagesDialect:
    name = "anthropic.messages"
    format = ANTHROPIC
    operation = CHAT

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        return _call(CHAT, body, headers, count_only=False)

    async def prepare(self, call: Call) -> None:
        return None

    def ask_usage(self, call: Call) -> None:
        return None  # Anthropic streams always carry usage

    def whole(self, call: Call, answer: Answer) -> bytes:
        if answer.completion is not None:
            return _encode(to_anthropic_message(answer.completion, call.model))
        return _with_model(answer.data or b"", call.model)

    async def events(
        self, call: Call, answer: Answer, chunks: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncIterator[bytes]:
        writer = AnthropicEventWriter(call.model, _canonical_estimate(call))
        async for batch in chunks:
            events = [event for chunk in batch for event in writer.feed(chunk)]
            if events:
                yield b"".join(events)
        yield LastEvents(b"".join(writer.finish()))

    async def passthrough(self, call: Call, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The upstream's events as they are, but for `message_start`'s model."""
        renamed = False
        async for data in stream:
            if not renamed and b"message_start" in data:
                renamed = True
                data = _rename_in_start(data, call.model)
            yield data

    def local(self, call: Call) -> tuple[bytes, dict[str, str]] | None:
        return None

    def error_body(self, error: GatewayError) -> bytes:
        return error.anthropic_body()

    def error_event(self, error: GatewayError) -> bytes:
        return b"event: error\ndata: " + error.anthropic_body() + b"\n\n"


class AnthropicCountTokensDialect(AnthropicMessagesDialect):
    name = "anthropic.count_tokens"
    operation = COUNT_TOKENS

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        return _call(COUNT_TOKENS, body, headers, count_only=True)

    def whole(self, call: Call, answer: Answer) -> bytes:
        return answer.data or b""

    def local(self, call: Call) -> tuple[bytes, dict[str, str]] | None:
        """No Anthropic target: an estimate, labelled as such."""
        parsed = validate_messages_request(call.body, count_only=True)
        answer = {"input_tokens": estimate_input_tokens(parsed), "estimated": True}
        return _encode(answer), {"x-mini-llm-token-count": "estimate"}


def _with_model(data: bytes, model: str) -> bytes:
    try:
        message = _decode(data)
    except msgspec.DecodeError:
        return data
    if not isinstance(message, dict) or message.get("model") == model:
        return data
    message["model"] = model
    return _encode(message)


def _rename_in_start(data: bytes, model: str) -> bytes:
    out: list[bytes] = []
    for event in data.split(b"\n\n"):
        if b"message_start" in event:
            head, sep, payload = event.partition(b"data:")
            try:
                start = _decode(payload)
            except msgspec.DecodeError:
                start = None
            message = start.get("message") if isinstance(start, dict) else None
            if isinstance(message, dict) and message.get("model") != model:
                message["model"] = model
                event = head + sep + b" " + _encode(start)
        out.append(event)
    return b"\n\n".join(out)


def _canonical_estimate(call: Call) -> int:
    """The input estimate a translated stream's `message_start` shows (images counted as
    images, not as their base64)."""
    return estimate_input_tokens(validate_messages_request(call.body))


# An image or a PDF page costs Anthropic about width × height / 750 tokens: some 1,600 for a
# picture of about 1.2 megapixels. Their base64 text says nothing about that.
_PICTURE_TOKENS = 1600


def estimate_input_tokens(request: MessagesRequest) -> int:
    """About 4 characters a token over the request's text, tools included, and a flat
    amount per image or document: an estimate."""
    total = 0
    if request.system:
        total += estimate_tokens(_encode(request.system).decode())
    for message in request.messages:
        total += 4 + _content_tokens(message.content)
    if request.tools:
        total += estimate_tokens(_encode(request.tools).decode())
    return total


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return estimate_tokens(content)
    total = 0
    for block in content or ():
        if isinstance(block, (ImageBlock, DocumentBlock)):
            total += _PICTURE_TOKENS
        elif isinstance(block, ToolResultBlock):
            total += 4 + _content_tokens(block.content)
        else:
            total += estimate_tokens(_encode(block).decode())
    return total


ANTHROPIC_MESSAGES = AnthropicMessagesDialect()
ANTHROPIC_COUNT_TOKENS = AnthropicCountTokensDialect()
