"""The provider seam: a pure wire format plus a transport, and what passes between them.

A `WireFormat` turns a canonical (OpenAI Chat Completions) request into an `UpstreamRequest`
and reads error bodies; it does no I/O. A `Transport` sends an `UpstreamRequest` and returns
an `UpstreamResponse`; the aiohttp transport does real HTTP, the mock transport answers in
process. A `Provider` is one configured upstream: its config, wire format, keys and transport.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import ProviderConfig
from ..routing.keys import KeyEntry, KeyPool
from ..routing.policies import Timeouts
from ..sse import SSEEvent

__all__ = [
    "ChatStreamTranslator",
    "ErrorInfo",
    "Provider",
    "StreamReader",
    "Transport",
    "UpstreamRequest",
    "UpstreamResponse",
    "WireFormat",
    "token_count",
]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What an upstream's error body says, to show the client (never the raw body)."""

    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None


def token_count(value: Any) -> int:
    """A token count as an upstream reported it; anything not a finite number counts 0."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return max(int(value), 0)
    return 0


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


class ChatStreamTranslator(Protocol):
    """Turns one upstream stream's parsed SSE events into canonical chunk dicts.

    A small state machine, one per stream: `feed` takes each event in order and returns the
    canonical (OpenAI `chat.completion.chunk`) dicts it completes; `finish` is called once
    when the upstream stream ends and returns any last chunks. Both raise `GatewayError`
    for an error event or a stream that ended before its answer was complete.
    """

    def feed(self, event: SSEEvent) -> list[dict[str, Any]]: ...

    def finish(self) -> list[dict[str, Any]]: ...


class WireFormat(Protocol):
    """A provider API's wire format. Pure: no I/O, no clock, no globals.

    `native_request` sends a body already in this wire's own format (pass-through: only
    `model` is rewritten); `chat_request` sends a canonical (OpenAI Chat Completions) body,
    translating it. `parse_chat_response` and `stream_translator` bring answers back to
    canonical form.
    """

    name: str

    def chat_url(self, config: ProviderConfig) -> str: ...

    def auth_headers(self, config: ProviderConfig, key: str) -> dict[str, str]:
        """Every header a request with this key carries ("" for none), built once per key."""
        ...

    def native_request(
        self, provider: Provider, body: dict[str, Any], key: KeyEntry | None, stream: bool
    ) -> UpstreamRequest: ...

    def chat_request(
        self, provider: Provider, body: dict[str, Any], key: KeyEntry | None, stream: bool
    ) -> UpstreamRequest: ...

    def parse_chat_response(self, raw: bytes) -> dict[str, Any]: ...

    def stream_translator(self) -> ChatStreamTranslator: ...

    def error_info(self, status: int, body: bytes) -> ErrorInfo: ...


class Provider:
    """One configured upstream, assembled once at start-up."""

    __slots__ = ("chat_url", "config", "keyless_headers", "keys", "name", "transport", "wire")

    def __init__(self, config: ProviderConfig, wire: WireFormat, transport: Transport) -> None:
        self.name = config.name
        self.config = config
        self.wire = wire
        self.transport = transport
        self.keys = KeyPool(config.keys, lambda k: wire.auth_headers(config, k), config.name)
        self.keyless_headers = wire.auth_headers(config, "")
        self.chat_url = wire.chat_url(config)

    def headers_for(self, key: KeyEntry | None) -> Mapping[str, str]:
        """The upstream headers for a request with this key (or with none)."""
        return key.headers if key is not None else self.keyless_headers
