"""The OpenAI Responses dialect: `POST /v1/responses` (also without `/v1`).

A provider that serves the Responses API itself (the `openai` preset; any provider whose wire
is `openai-responses`) gets the body as it came (only `model` rewritten) and the client gets
its bytes back: that upstream stores responses and resolves `previous_response_id` itself.
Every other provider gets the canonical chat form (`request.py`), and the answer comes back as
a response object or as Responses stream events (`response.py`); the gateway then keeps the
response when `store` is not false (`state/responses.py`), so that `previous_response_id` and
`GET /v1/responses/{id}` work there too. A previous response the store does not have (never
stored, expired, deleted, another owner's) is a 400 `previous_response_not_found`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol, cast

import msgspec

from ...call import Answer, Call
from ...canonical import PlainSink
from ...errors import GatewayError, InvalidRequestError, UpstreamError
from ...formats import OPENAI_RESPONSES, RESPONSES
from ...state.responses import ResponseStore, StoredResponse
from ..base import LastEvents
from .request import ResponsesEnvelope, input_messages, to_canonical_request, validate_envelope
from .response import ResponseFrame, assistant_message, to_response
from .stream import ResponsesEventWriter

__all__ = ["OWNER", "OpenAIResponsesDialect", "ResponsesCall", "input_items"]

_encode = msgspec.json.encode

OWNER = ""
"""The owner a request parsed here has: the master key's (and everyone's with auth off);
`gateway/stored_responses.py` sets the caller's gateway key id instead."""

# The last event of a Responses stream; a pass-through stream without one was cut short.
_ENDINGS = (b"response.completed", b"response.incomplete", b"response.failed", b"event: error")


class TextLaneDecoder(Protocol):
    """A stream decoder that can read a text delta on its own (`providers/anthropic_stream.py:
    AnthropicStreamDecoder`): `text` gives the text of a read that is exactly one text delta
    (None: `write` that read), leaving the decoder's state as `write` would."""

    def text(self, data: bytes) -> str | None: ...

    def lean(self) -> None:
        """Make only the chunks this dialect's stream writer reads (none goes elsewhere)."""
        ...

    @property
    def done(self) -> bool:
        """Whether the stream's last event has come (more reads can bring no chunk)."""
        ...

    def write(self, data: bytes, sink: PlainSink) -> bytes:
        """A read's events as `sink` writes them: `sink.feed_batch` of the read's canonical
        chunks, or `sink.plain` for a read of only the usual answer's start, text and end."""
        ...

    def finish(self) -> list[dict[str, Any]]: ...


class ResponsesCall(Call):
    """A Responses request: the call, plus what the store adds (the previous conversation)."""

    __slots__ = ("envelope", "history", "owner")

    def __init__(self, body: dict[str, Any], envelope: ResponsesEnvelope, owner: str) -> None:
        super().__init__(
            RESPONSES,
            OPENAI_RESPONSES,
            body,
            envelope.model,
            bool(envelope.stream),
            to_canonical=self._translate,
        )
        self.envelope = envelope
        self.owner = owner
        self.history: list[dict[str, Any]] = []

    def _translate(self, body: dict[str, Any]) -> dict[str, Any]:
        return to_canonical_request(body, self.history)

    @property
    def stored(self) -> bool:
        return self.envelope.store is not False


def _item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


def input_items(body: dict[str, Any], new_id: Callable[[str], str]) -> list[dict[str, Any]]:
    """The request's input as items with ids, for `GET /v1/responses/{id}/input_items`."""
    given = body.get("input")
    if isinstance(given, str):
        given = [{"type": "message", "role": "user", "content": given}]
    items: list[dict[str, Any]] = []
    for item in given if isinstance(given, list) else ():
        if not isinstance(item, dict):
            continue
        item = dict(item)
        if item.get("type") is None and "role" in item:
            item["type"] = "message"
        if item["type"] == "message":
            content = item.get("content")
            if isinstance(content, str):
                kind = "output_text" if item.get("role") == "assistant" else "input_text"
                item["content"] = [{"type": kind, "text": content}]
            item.setdefault("status", "completed")
        prefix = {"message": "msg", "function_call": "fc", "reasoning": "rs"}.get(
            item["type"], "item"
        )
        item.setdefault("id", new_id(prefix))
        items.append(item)
    return items


class OpenAIResponsesDialect:
    name = "openai.responses"
    format = OPENAI_RESPONSES
    operation = RESPONSES

    def __init__(
        self,
        store: ResponseStore,
        *,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[str], str] = _item_id,
    ) -> None:
        self.store = store
        self._clock = clock
        self._new_id = new_id

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        return ResponsesCall(body, validate_envelope(body), OWNER)

    async def prepare(self, call: Call) -> None:
        """Before the canonical form is made: the previous response's conversation."""
        assert isinstance(call, ResponsesCall)
        previous = call.envelope.previous_response_id
        if not previous:
            return
        record = await self.store.get(call.owner, previous)
        if record is None:
            raise InvalidRequestError(
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        call.history = record.messages

    def ask_usage(self, call: Call) -> None:
        return None  # a Responses stream always ends with its usage

    def _frame(self, call: ResponsesCall) -> ResponseFrame:
        include = call.envelope.include or ()
        return ResponseFrame(
            self._new_id("resp"),
            int(self._clock()),
            call.model,
            call.body,
            encrypted="reasoning.encrypted_content" in include,
        )

    def _keep(self, call: ResponsesCall, response: dict[str, Any], answer: dict[str, Any]) -> None:
        if not call.stored:
            return
        messages = [*input_messages(call.body, call.history), answer]
        self.store.put(
            StoredResponse(
                response["id"],
                call.owner,
                response,
                input_items(call.body, self._new_id),
                messages,
                self._clock() + self.store.ttl,
            )
        )

    def whole(self, call: Call, answer: Answer) -> bytes:
        completion = answer.completion
        if completion is None:
            return answer.data or b""
        assert isinstance(call, ResponsesCall)
        response = to_response(completion, self._frame(call))
        if call.stored:
            choices = completion.get("choices") or [{}]
            message = choices[0].get("message") if isinstance(choices[0], dict) else None
            if not isinstance(message, dict):
                message = assistant_message(response["output"], [])
            self._keep(call, response, {**message, "role": "assistant"})
        return _encode(response)

    async def events(
        self, call: Call, answer: Answer, chunks: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncIterator[bytes]:
        assert isinstance(call, ResponsesCall)
        writer = ResponsesEventWriter(self._frame(call))
        sent = False
        try:
            async for batch in chunks:
                events = writer.feed_batch(batch)
                if events:
                    sent = True
                    yield events
        except GatewayError as e:
            if not sent:
                raise  # nothing sent yet: the client gets an error response instead
            yield b"".join(writer.fail(e.code, e.message))
            return
        yield LastEvents(b"".join(writer.finish()))
        self._keep_streamed(call, writer)

    def direct_events(self, call: Call, answer: Answer) -> AsyncIterator[bytes] | None:
        """`events` read straight from the upstream's bytes, when its stream decoder has a
        text lane (`text`: the text of a read that is exactly one text delta): such a read
        becomes its `output_text.delta` event with no canonical chunk between; every other
        read goes through the decoder and the writer as in `events`, with the same bytes.
        None when the decoder has no such lane. For a caller that needs no canonical chunk
        of its own (the pipeline when no policy reads the stream)."""
        if answer.stream is None or answer.endpoint is None:
            return None
        decoder = answer.endpoint.decoder()
        if getattr(decoder, "text", None) is None:  # (a protocol's isinstance costs more)
            return None
        assert isinstance(call, ResponsesCall)
        return self._direct(call, answer.stream, cast(TextLaneDecoder, decoder))

    async def _direct(
        self, call: ResponsesCall, stream: AsyncIterator[bytes], decoder: TextLaneDecoder
    ) -> AsyncIterator[bytes]:
        writer = ResponsesEventWriter(self._frame(call))
        decoder.lean()
        text_of = decoder.text
        more_text = writer.more_text
        write = decoder.write
        sent = False
        # the events of the read that ended the answer (its last event came): they go with
        # the last events, in one write (the stream's end comes next, with nothing more)
        held = b""
        try:
            try:
                async for data in stream:
                    text = text_of(data)
                    if text is not None:
                        event = more_text(text)
                        if event is not None:  # the open text part's: sent before this
                            if event:
                                yield event
                            continue
                    events = write(data, writer)
                    if events:
                        if decoder.done:
                            held += events
                            continue
                        sent = True
                        yield events
                batch = decoder.finish()
                while batch:
                    events = writer.feed_batch(batch)
                    if events:
                        sent = True
                        yield held + events
                        held = b""
                    batch = decoder.finish()
            except GatewayError as e:
                if held:  # what came before the failure goes first, as it would have
                    sent = True
                    yield held
                if not sent:
                    raise  # nothing sent yet: the client gets an error response instead
                yield b"".join(writer.fail(e.code, e.message))
                return
            yield LastEvents(held + b"".join(writer.finish()))
            self._keep_streamed(call, writer)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def _keep_streamed(self, call: ResponsesCall, writer: ResponsesEventWriter) -> None:
        if call.stored:
            response = writer.response()
            self._keep(call, response, assistant_message(response["output"], writer.thinking))

    async def passthrough(self, call: Call, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The upstream's events as they are; a stream that ends without its last event
        (`response.completed`, `.incomplete`, `.failed`, `error`) ends with an error event."""
        ended = False
        async for data in stream:
            if not ended and any(end in data for end in _ENDINGS):
                ended = True
            yield data
        if not ended:
            raise UpstreamError("upstream ended the stream before the response was complete")

    def local(self, call: Call) -> tuple[bytes, dict[str, str]] | None:
        return None

    def error_body(self, error: GatewayError) -> bytes:
        return error.openai_body()

    def error_event(self, error: GatewayError) -> bytes:
        payload = {
            "type": "error",
            "code": error.code,
            "message": error.message,
            "param": error.param,
            "sequence_number": 0,
        }
        return b"event: error\ndata: " + _encode(payload) + b"\n\n"
