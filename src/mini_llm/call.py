"""What passes between a client dialect, the dispatcher and back: a `Call` and its `Answer`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .formats import Format, Operation

if TYPE_CHECKING:
    from .providers.base import Endpoint
    from .routing.router import Target

__all__ = ["Answer", "Call"]


class Call:
    """One client request: the operation, the body in the client's format and, made on demand,
    its canonical form. `forward` are client headers that go upstream only when the provider
    speaks the client's format (`anthropic-beta`, for one). `dropped` names what the canonical
    form could not carry (filled by the dialect's converter; reported when an answer was
    translated)."""

    __slots__ = (
        "_canonical",
        "_to_canonical",
        "body",
        "dropped",
        "format",
        "forward",
        "model",
        "operation",
        "raw",
        "request_id",
        "stream",
        "usage_added",
        "usage_asked",
    )

    def __init__(
        self,
        operation: Operation,
        fmt: Format,
        body: dict[str, Any],
        model: str,
        stream: bool,
        *,
        to_canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        forward: dict[str, str] | None = None,
        usage_asked: bool = True,
    ) -> None:
        self.operation = operation
        self.request_id = ""
        """Set by the pipeline: log lines about this request carry it."""
        self.raw = b""
        """The body's bytes as the client sent them (decompressed), set by the pipeline."""
        self.format = fmt
        self.body = body
        self.model = model
        self.stream = stream
        self.forward = forward
        self.usage_asked = usage_asked
        """Whether the client's stream asked for usage (OpenAI's `stream_options`)."""
        self.usage_added = False
        """Whether the gateway asked upstream for usage the client did not ask for."""
        self.dropped: list[str] = []
        """What the translation to canonical form could not carry (named to the client)."""
        self._to_canonical = to_canonical
        self._canonical: dict[str, Any] | None = None

    def canonical(self) -> dict[str, Any]:
        """The canonical (OpenAI chat) form of the body, made once; a 400 when the body
        cannot be translated."""
        if self._canonical is None:
            convert = self._to_canonical
            self._canonical = convert(self.body) if convert is not None else self.body
        return self._canonical

    def body_for(self, fmt: Format) -> tuple[dict[str, Any], bool]:
        """The body to send to a provider of format `fmt`, and whether it is the client's own."""
        if fmt is self.format:
            return self.body, True
        return self.canonical(), False


class Answer:
    """The answer that began: a whole body, or a stream whose first bytes have arrived.

    A whole answer in the client's own format is `data` (checked to be a JSON object); a
    translated one is `completion`, already canonical (parsed during the attempt, so a
    malformed answer is retried like any failure).
    """

    __slots__ = (
        "attempts",
        "completion",
        "data",
        "dropped",
        "endpoint",
        "native",
        "sent",
        "stream",
        "target",
        "waited",
    )

    def __init__(
        self,
        target: Target | None,
        native: bool,
        data: bytes | None = None,
        stream: AsyncIterator[bytes] | None = None,
        completion: dict[str, Any] | None = None,
        endpoint: Endpoint | None = None,
    ) -> None:
        self.target = target
        self.endpoint = endpoint
        """The upstream endpoint that answered (its decoder reads the stream); None for an
        answer a policy gave (a cache hit), which is always canonical."""
        self.native = native
        self.data = data
        self.stream = stream
        self.completion = completion
        self.attempts = 1
        self.dropped: tuple[str, ...] = ()
        """What the target that answered could not take of the canonical request."""
        self.sent = 0.0
        """When (time.monotonic) the answering attempt was sent."""
        self.waited = 0.0
        """Seconds that attempt waited on the upstream (the whole body, or a stream's first
        bytes): what the gateway's overhead leaves out."""

    def headers(self) -> dict[str, str]:
        if self.target is None:
            return {"x-mini-llm-attempts": "0"}
        return {
            "x-mini-llm-provider": self.target.provider.name,
            "x-mini-llm-model": self.target.model,
            "x-mini-llm-attempts": str(self.attempts),
        }
