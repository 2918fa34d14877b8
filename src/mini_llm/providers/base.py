"""The provider seam: a pure wire format, keyed by operation, plus a transport.

A `WireFormat` says, for each `Operation` it serves, how to build the upstream request
(`Endpoint.request`: URL with the model percent-encoded, headers that do not depend on the
credentials, body — pure), how to read a whole answer back to canonical form (`parse`), how to
decode a stream (`decoder`: bytes in, canonical chunks out; SSE today, any framing tomorrow)
and how a pass-through stream is cut into whole events (`framing`). Credentials are a value
(`Credential`) applied by `WireFormat.sign` on every attempt, so a per-request signature
(SigV4) fits; a credential that must first be exchanged for a short-lived token (OAuth) has a
`CredentialSource` whose async `prepare` runs before signing — only for the wires that have
one, so a static key costs no await. A `Transport` sends an `UpstreamRequest` and returns an
`UpstreamResponse`: the aiohttp transport does real HTTP, the mock transport answers in process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from ..canonical import token_count
from ..errors import UpstreamError
from ..formats import Format, Operation
from ..resilience import Timeouts
from ..sse import SSEEvent, SSEParser

_decode_json = msgspec.json.decode

__all__ = [
    "Credential",
    "CredentialSource",
    "Endpoint",
    "ErrorInfo",
    "EventTranslator",
    "Framing",
    "HeaderSigner",
    "SSEDecoder",
    "SSEFraming",
    "Signer",
    "StreamDecoder",
    "StreamReader",
    "Transport",
    "UpstreamModel",
    "UpstreamRequest",
    "UpstreamResponse",
    "Wire",
    "WireFormat",
    "event_object",
    "native_format",
    "token_count",
]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    """Already percent-encoded: sent exactly as it is."""
    headers: Mapping[str, str]
    body: bytes
    dropped: tuple[str, ...] = ()
    """Fields of the (canonical) request this target cannot take, left out: named to the
    client in `x-mini-llm-dropped`."""


@dataclass(frozen=True, slots=True)
class Credential:
    """What a request is signed with: one secret, or several fields (a cloud's access key,
    secret and session token). Never shown: `hint` is its last 4 characters."""

    secret: str
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def hint(self) -> str:
        return "…" + self.secret[-4:]

    def __repr__(self) -> str:
        return f"Credential({self.hint})"


@dataclass(frozen=True, slots=True)
class UpstreamModel:
    """Where a request goes, as pure data: built once per target, no credentials."""

    provider: str
    base_url: str
    model: str
    headers: Mapping[str, str]
    """The headers every request to this provider carries (content type, API version, the
    configured extra headers): built once, never holding a credential."""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an upstream's error body says, to show the client (never the raw body)."""

    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None


def event_object(data: str) -> dict[str, Any]:
    """A stream event's data as the JSON object it must be; `UpstreamError` otherwise."""
    try:
        decoded = _decode_json(data)
    except msgspec.DecodeError:
        raise UpstreamError("upstream sent a malformed stream event") from None
    if not isinstance(decoded, dict):
        raise UpstreamError("upstream sent a malformed stream event")
    return decoded


class EventTranslator(Protocol):
    """Turns one upstream stream's parsed SSE events into canonical chunk dicts.

    A small state machine, one per stream: `feed` takes each event in order and returns the
    canonical chunks it completes; `finish` is called once when the stream ends. Both raise
    `GatewayError` for an error event or a stream that ended before its answer was complete.
    """

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...


class StreamDecoder(Protocol):
    """An upstream stream's bytes, as they arrive, to canonical chunks. `finish` is called
    when the stream ends, again until it returns no chunk."""

    def feed(self, data: bytes) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...


class SSEDecoder:
    """The decoder of every SSE wire format: the one SSE parser, then the format's events.

    When an event fails (an error event), the chunks decoded before it in the same read are
    still returned, and the error is raised on the next call: what came first reaches the
    client before the error does."""

    __slots__ = ("_error", "_finished", "_parser", "_translator")

    def __init__(self, translator: EventTranslator) -> None:
        self._parser = SSEParser()
        self._translator = translator
        self._error: Exception | None = None
        self._finished = False

    def _decode(self, events: list[SSEEvent], out: list[dict[str, Any]]) -> None:
        if self._error is not None:
            raise self._error
        translate = self._translator.feed
        for event in events:
            try:
                out += translate(event)
            except Exception as e:
                if not out:
                    raise
                self._error = e
                return

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self._decode(self._parser.feed(data), out)
        return out

    def finish(self) -> list[dict[str, Any]]:
        """The last chunks; call again until it returns none (an error that followed them
        is raised by the next call)."""
        out: list[dict[str, Any]] = []
        if self._finished:
            if self._error is not None:
                raise self._error
            return out
        self._finished = True
        self._decode(self._parser.flush(), out)
        if self._error is None:
            out += self._translator.finish()
        return out


class Framing(Protocol):
    """How a pass-through stream is cut into whole events, and how it must end."""

    content_type: str
    """The stream's media type: an answer of another type is a whole body."""

    def cut(self, data: bytes) -> int:
        """The length of the whole events at the start of `data` (0: none yet)."""
        ...

    def complete(self, tail: bytes) -> bool:
        """Whether a stream whose last bytes are `tail` ended as it should."""
        ...


class SSEFraming:
    """Server-sent events: an event ends at a blank line; the stream with `end_marker`."""

    __slots__ = ("end_marker",)

    content_type = "text/event-stream"

    def __init__(self, end_marker: bytes) -> None:
        self.end_marker = end_marker

    def cut(self, data: bytes) -> int:
        return max(data.rfind(b"\n\n"), data.rfind(b"\r\n\r\n") + 2) + 2 if data else 0

    def complete(self, tail: bytes) -> bool:
        return self.end_marker in tail


class Endpoint(Protocol):
    """One operation of one wire format. Pure."""

    @property
    def framing(self) -> Framing:
        """How a pass-through stream from here is cut into whole events."""
        ...

    @property
    def translates(self) -> bool:
        """Whether canonical requests can be sent here (else only the format's own bodies)."""
        ...

    @property
    def format(self) -> Format | None:
        """The format of the bodies this endpoint takes as they are, when it is not the wire's
        (OpenAI's `/responses` on the OpenAI wire); None: the wire's."""
        ...

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        """The upstream request for `body`: in this format's own shape when `native` (only
        the model is set), else canonical, translated. Credentials are not applied here."""
        ...

    def parse(self, raw: bytes) -> dict[str, Any]:
        """A whole answer in canonical form; `UpstreamError` when it is malformed."""
        ...

    def decoder(self) -> StreamDecoder:
        """A fresh decoder for one stream's bytes, to canonical chunks."""
        ...


class WireFormat(Protocol):
    """A provider API's wire format: its identity, its endpoints per operation, its signer."""

    @property
    def name(self) -> str: ...

    @property
    def format(self) -> Format: ...

    @property
    def endpoints(self) -> Mapping[Operation, Endpoint]: ...

    def headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The headers every request carries (`extra` are the configured ones)."""
        ...

    def sign(self, request: UpstreamRequest, credential: Credential | None) -> UpstreamRequest:
        """The request with the credential applied; called on every attempt."""
        ...

    def error_info(self, status: int, body: bytes) -> ErrorInfo: ...

    @property
    def source(self) -> CredentialSource | None:
        """What turns a configured credential into the signing one (None: it signs as it is)."""
        ...


class Signer(Protocol):
    def sign(self, request: UpstreamRequest, credential: Credential | None) -> UpstreamRequest:
        """The request with the credential applied; called on every attempt."""
        ...


class CredentialSource(Protocol):
    """Turns a configured credential into the one a request is signed with, when that takes
    I/O (a service account's OAuth access token): awaited before `sign` on every attempt, so
    a token is fetched, cached and refreshed here, never inside the pure parts."""

    async def prepare(self, credential: Credential, transport: Transport) -> Credential: ...


@dataclass(frozen=True, slots=True)
class Wire:
    """A wire format made of its parts: the built-in formats are rows of this shape."""

    name: str
    format: Format
    endpoints: Mapping[Operation, Endpoint]
    signer: Signer
    base_headers: Mapping[str, str]
    read_error: Callable[[int, bytes], ErrorInfo]
    source: CredentialSource | None = None

    def headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        return {**self.base_headers, **extra}

    def sign(self, request: UpstreamRequest, credential: Credential | None) -> UpstreamRequest:
        return self.signer.sign(request, credential)

    def error_info(self, status: int, body: bytes) -> ErrorInfo:
        return self.read_error(status, body)


class HeaderSigner:
    """Signs by putting the secret in one header (`Authorization: Bearer …`, `x-api-key`…)."""

    __slots__ = ("header", "prefix")

    def __init__(self, header: str, prefix: str = "") -> None:
        self.header = header
        self.prefix = prefix

    def sign(self, request: UpstreamRequest, credential: Credential | None) -> UpstreamRequest:
        if credential is None:
            return request
        headers = dict(request.headers)
        headers[self.header] = self.prefix + credential.secret
        return UpstreamRequest(request.method, request.url, headers, request.body, request.dropped)


class StreamReader(Protocol):
    def iter_any(self) -> AsyncIterator[bytes]: ...


class UpstreamResponse(Protocol):
    """What a transport returns; `aiohttp.ClientResponse` is one as it is."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> StreamReader: ...

    async def read(self) -> bytes: ...

    def release(self) -> Any: ...

    def close(self) -> Any:
        """Drop the connection (an answer not read to its end must not go back to the pool)."""
        ...


class Transport(Protocol):
    async def send(
        self, request: UpstreamRequest, timeouts: Timeouts | None = None
    ) -> UpstreamResponse: ...

    async def close(self) -> None: ...


def native_format(wire: WireFormat, endpoint: Endpoint) -> Format:
    """The format of the bodies `endpoint` takes as they are: its own `format` when it has one
    (an endpoint of another API than the wire's: OpenAI's `/responses`), else the wire's."""
    return endpoint.format or wire.format
