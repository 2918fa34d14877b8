"""The client-dialect seam: what one client API needs to be served by the generic handler.

A dialect parses and validates a request body into a `Call` (its operation, its format, the
model asked and whether it streams, and how to make the canonical form), renders a whole answer
and a stream in the client's shape, and renders errors, whole and as a stream's last event.
It never does I/O; the generic handler in `gateway.pipeline` drives it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import GatewayError
from ..formats import Format, Operation

if TYPE_CHECKING:
    from ..call import Answer, Call

__all__ = ["Dialect", "LastEvents"]


class LastEvents(bytes):
    """A stream's last events, as `Dialect.events` yields them: the writer sends them with the
    end of the answer (one socket write, not two)."""


class Dialect(Protocol):
    name: str
    """For logs and metrics: `openai.chat`, `anthropic.messages`…"""
    format: Format
    """The wire format the client's bodies are in: a provider of this format gets them as
    they are (pass-through), any other their canonical form."""
    operation: Operation

    def parse(self, body: dict[str, Any], headers: Mapping[str, str]) -> Call:
        """The call for a request body (400 `InvalidRequestError` naming the field when it is
        not valid). Checks only what routing needs when the body may pass through untouched;
        the full check happens when the canonical form is made."""
        ...

    async def prepare(self, call: Call) -> None:
        """What the canonical form needs from state, fetched before it is made (the
        Responses dialect loads `previous_response_id`'s conversation); usually nothing."""
        ...

    def ask_usage(self, call: Call) -> None:
        """Make a stream's upstream report usage even if the client did not ask (then
        `passthrough` takes it out again)."""
        ...

    def whole(self, call: Call, answer: Answer) -> bytes:
        """The body of a whole answer: native bytes as they came, or the canonical answer
        rendered in the client's shape."""
        ...

    def events(
        self, call: Call, answer: Answer, chunks: AsyncIterator[list[dict[str, Any]]]
    ) -> AsyncIterator[bytes]:
        """A translated stream: batches of canonical chunks rendered as the client's events."""
        ...

    def passthrough(self, call: Call, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """A native stream on its way to the client (usually `stream` as it is)."""
        ...

    def local(self, call: Call) -> tuple[bytes, dict[str, str]] | None:
        """An answer (body, headers) the gateway gives itself when no target serves the
        operation (an estimate, say), or None for a 400."""
        ...

    def error_body(self, error: GatewayError) -> bytes: ...

    def error_event(self, error: GatewayError) -> bytes:
        """The last event of a stream that failed after it began."""
        ...
