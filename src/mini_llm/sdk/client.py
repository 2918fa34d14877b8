"""`Client` (standard library HTTP, keep-alive) and `AsyncClient` (aiohttp) for the gateway.

Both speak the gateway's OpenAI-compatible API and return typed answers (`mini_llm.sdk.types`);
error answers raise the typed exceptions of `mini_llm.sdk.errors`. The base URL is explicit,
or `auto=True` makes sure the shared gateway runs (`ensure_gateway()`); with neither, the
running gateway is looked up (`$MINI_LLM_BASE_URL`, then the state file, then port 3333).
"""

from __future__ import annotations

import asyncio
import http.client
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

import msgspec

from .. import __version__
from ..sse import SSEParser
from .errors import (
    APIConnectionError,
    APITimeoutError,
    MiniLLMError,
    status_error,
)
from .types import ChatCompletion, ChatCompletionChunk, Health, Model, Usage

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AsyncChatStream", "AsyncClient", "ChatStream", "Client", "Messages"]

DEFAULT_URL = "http://127.0.0.1:3333"
_CHAT = "/v1/chat/completions"
_READ_SIZE = 64 * 1024
_START_HINT = "start it with `mini-llm start`, or use auto=True"

Messages = str | Iterable[Mapping[str, Any]]
"""A list of OpenAI-style messages, or a plain string meaning one user message."""

T = TypeVar("T")

# error types of an error event inside a stream (which has no HTTP status of its own)
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "timeout_error": 504,
}


class _ModelList(msgspec.Struct):
    data: list[Model]


def normalize_base_url(url: str) -> str:
    """`http://host:port[/prefix]` without a trailing slash or `/v1`."""
    url = url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def resolve_base_url(base_url: str | None, auto: bool) -> str:
    if base_url:
        return normalize_base_url(base_url)
    from .manager import GatewayManager, ensure_gateway

    if auto:
        return ensure_gateway()
    if os.environ.get("MINI_LLM_BASE_URL"):
        return normalize_base_url(os.environ["MINI_LLM_BASE_URL"])
    state = GatewayManager().find()
    return state.url if state is not None else DEFAULT_URL


_MESSAGES_WANTED = (
    "messages must be a string (one user message) or a list of message dicts such as "
    "{'role': 'user', 'content': 'Hello'}"
)


def _messages(messages: Messages) -> list[dict[str, Any]]:
    """The messages as a list of dicts; a clear `TypeError` for anything else."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if isinstance(messages, (bytes, bytearray, Mapping)) or not isinstance(messages, Iterable):
        raise TypeError(f"{_MESSAGES_WANTED}, not {type(messages).__name__}")
    result = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise TypeError(f"{_MESSAGES_WANTED}; got a {type(message).__name__} in the list")
        result.append(dict(message))
    return result


def _chat_body(model: str, messages: Messages, params: Mapping[str, Any], stream: bool) -> bytes:
    if not isinstance(model, str) or not model:
        raise TypeError(f"model must be a model name such as 'mock/echo', not {model!r}")
    body = {"model": model, "messages": _messages(messages), **params}
    body["stream"] = stream
    if stream and "stream_options" not in params:
        # the gateway reports a stream's usage only when asked: the SDK always asks
        body["stream_options"] = {"include_usage": True}
    return msgspec.json.encode(body)


def _decode(data: bytes, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(data, type=type_)
    except msgspec.DecodeError as e:
        raise MiniLLMError(f"unexpected answer from the gateway: {e}") from None


class _ChunkDecoder:
    """SSE bytes in, typed chunks out; `done` once `data: [DONE]` has arrived."""

    def __init__(self) -> None:
        self.parser = SSEParser()
        self.done = False
        self.usage: Usage | None = None

    def feed(self, data: bytes, out: deque[ChatCompletionChunk]) -> None:
        events = self.parser.feed(data) if data else self.parser.flush()
        for event in events:
            if self.done or not event.data:
                continue
            if event.data == "[DONE]":
                self.done = True
                continue
            try:
                raw = msgspec.json.decode(event.data)
            except msgspec.DecodeError as e:
                raise MiniLLMError(f"unexpected event from the gateway: {e}") from None
            if isinstance(raw, dict) and "error" in raw and "choices" not in raw:
                error = raw["error"] if isinstance(raw["error"], dict) else {}
                raise status_error(_STREAM_ERROR_STATUS.get(str(error.get("type")), 502), raw)
            try:
                chunk = msgspec.convert(raw, ChatCompletionChunk)
            except msgspec.ValidationError as e:
                raise MiniLLMError(f"unexpected event from the gateway: {e}") from None
            if chunk.usage is not None:
                self.usage = chunk.usage
            out.append(chunk)


def _headers(api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    result = {"Content-Type": "application/json", "User-Agent": f"mini-llm-python/{__version__}"}
    if api_key:
        result["Authorization"] = f"Bearer {api_key}"
    result.update(headers or {})
    return result


class ChatStream:
    """An iterator of `ChatCompletionChunk`s; `text()` joins the rest of the text. Close it
    (or use `with`) when not reading to the end."""

    def __init__(self, response: http.client.HTTPResponse, release: Callable[[bool], None]):
        self._response = response
        self._release: Callable[[bool], None] | None = release
        self._decoder = _ChunkDecoder()
        self._pending: deque[ChatCompletionChunk] = deque()

    @property
    def usage(self) -> Usage | None:
        """Token usage, once the stream has reported it (at its end; the SDK asks for it
        unless the call passed its own `stream_options`)."""
        return self._decoder.usage

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self

    def __next__(self) -> ChatCompletionChunk:
        while not self._pending:
            if self._decoder.done or self._release is None:
                self._finish()
                raise StopIteration
            try:
                data = self._response.read1(_READ_SIZE)
            except TimeoutError:
                self.close()
                raise APITimeoutError("the gateway stopped sending the stream") from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise APIConnectionError(f"the stream broke: {e}") from None
            try:
                self._decoder.feed(data, self._pending)
            except MiniLLMError:
                self.close()
                raise
            if not data:
                self._decoder.done = True
        return self._pending.popleft()

    def text(self) -> str:
        """The text of every chunk not read yet, joined."""
        return "".join(chunk.text for chunk in self)

    def _finish(self) -> None:
        if self._release is None:
            return
        release, self._release = self._release, None
        try:
            self._response.read()  # the end of the chunked body, so the connection can be reused
            release(not self._response.will_close)
        except (OSError, http.client.HTTPException):
            release(False)

    def close(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release(False)

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self.close()


def _signed(
    headers: dict[str, str], secret: str | None, method: str, path: str, body: bytes | None
) -> dict[str, str]:
    """`headers` with `x-timestamp` and `x-signature` when the key signs its requests:
    v1=HMAC-SHA256(secret, "{timestamp}.{METHOD}.{path}." + body), path without the query."""
    if secret is None:
        return headers
    import hashlib
    import hmac
    import time

    stamp = str(int(time.time()))
    message = f"{stamp}.{method.upper()}.{path.partition('?')[0]}.".encode() + (body or b"")
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return {**headers, "x-timestamp": stamp, "x-signature": "v1=" + digest}


class Client:
    """A synchronous client for the gateway (standard library only, keep-alive connections).

    >>> client = Client(auto=True)
    >>> client.chat("mock/echo", "Hello").text
    'Hello'
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        auto: bool = False,
        api_key: str | None = None,
        signing_secret: str | None = None,
        timeout: float = 600.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url, auto)
        self._signing_secret = signing_secret
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MiniLLMError(f"base URL must be http(s)://host[:port], got {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self._headers = _headers(api_key, headers)
        self._idle: list[http.client.HTTPConnection] = []

    def chat(self, model: str, messages: Messages, **params: Any) -> ChatCompletion:
        """One chat completion; `params` (temperature, max_tokens, tools...) pass through.
        `messages` is a string or a list of message dicts (anything else: `TypeError`)."""
        body = _chat_body(model, messages, params, stream=False)
        return _decode(self._call("POST", _CHAT, body), ChatCompletion)

    def stream(self, model: str, messages: Messages, **params: Any) -> ChatStream:
        """A streamed chat completion: iterate the chunks, or call `.text()`."""
        body = _chat_body(model, messages, params, stream=True)
        conn, response = self._send("POST", _CHAT, body)
        if response.status >= 400:
            data = self._read(conn, response)
            raise status_error(response.status, data)

        def release(reuse: bool) -> None:
            if reuse:
                self._idle.append(conn)
            else:
                conn.close()

        return ChatStream(response, release)

    def models(self) -> list[Model]:
        return _decode(self._call("GET", "/v1/models"), _ModelList).data

    def health(self) -> Health:
        return _decode(self._call("GET", "/health"), Health)

    def reset_providers(self, provider: str | None = None) -> dict[str, int]:
        """Bring the keys the gateway set aside (or cools down) back at once, for one provider
        or all: how many keys each provider got back. The gateway answers loopback callers
        only."""
        query = "?provider=" + quote(provider, safe="") if provider else ""
        answer = msgspec.json.decode(self._call("POST", "/admin/providers/reset" + query))
        reset = answer.get("reset") if isinstance(answer, dict) else None
        return {str(k): int(v) for k, v in reset.items()} if isinstance(reset, dict) else {}

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        self.close()

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.timeout)

    def _send(
        self, method: str, path: str, body: bytes | None = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        for attempt in range(2):
            try:
                conn, reused = self._idle.pop(), True
            except IndexError:
                conn, reused = self._connect(), False
            try:
                target = self._prefix + path
                headers = _signed(self._headers, self._signing_secret, method, target, body)
                conn.request(method, target, body=body, headers=headers)
                return conn, conn.getresponse()
            except TimeoutError:
                conn.close()
                raise APITimeoutError(f"the gateway at {self.base_url} did not answer") from None
            except (ConnectionResetError, BrokenPipeError, http.client.BadStatusLine) as e:
                conn.close()
                if reused and attempt == 0:
                    continue  # the gateway closed an idle keep-alive connection: try a new one
                raise APIConnectionError(f"lost the connection to {self.base_url}: {e}") from None
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise APIConnectionError(
                    f"cannot reach the gateway at {self.base_url}: {e}", _START_HINT
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> bytes:
        try:
            data = response.read()
        except TimeoutError:
            conn.close()
            raise APITimeoutError(f"the gateway at {self.base_url} stopped answering") from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise APIConnectionError(f"lost the connection to {self.base_url}: {e}") from None
        if response.will_close:
            conn.close()
        else:
            self._idle.append(conn)
        return data

    def _call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        conn, response = self._send(method, path, body)
        data = self._read(conn, response)
        if response.status >= 400:
            raise status_error(response.status, data)
        return data


class AsyncChatStream:
    """An async iterator of `ChatCompletionChunk`s (`async with` closes it early);
    `await stream.text()` joins the rest of the text."""

    def __init__(self, client: AsyncClient, body: bytes) -> None:
        self._client = client
        self._body = body
        self._response: aiohttp.ClientResponse | None = None
        self._chunks: AsyncIterator[bytes] | None = None
        self._decoder = _ChunkDecoder()
        self._pending: deque[ChatCompletionChunk] = deque()
        self._closed = False

    @property
    def usage(self) -> Usage | None:
        return self._decoder.usage

    async def _open(self) -> None:
        self._response = await self._client._request("POST", _CHAT, self._body)
        if self._response.status >= 400:
            data = await self._client._read(self._response)
            self._closed = True
            raise status_error(self._response.status, data)
        self._chunks = self._response.content.iter_any()

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        import aiohttp

        if self._response is None and not self._closed:
            await self._open()
        while not self._pending:
            if self._decoder.done or self._closed or self._chunks is None:
                await self.aclose()
                raise StopAsyncIteration
            try:
                data = await self._chunks.__anext__()
            except StopAsyncIteration:
                data = b""
            except asyncio.TimeoutError:
                await self.aclose()
                raise APITimeoutError("the gateway stopped sending the stream") from None
            except aiohttp.ClientError as e:
                await self.aclose()
                raise APIConnectionError(f"the stream broke: {e}") from None
            try:
                self._decoder.feed(data, self._pending)
            except MiniLLMError:
                await self.aclose()
                raise
            if not data:
                self._decoder.done = True
        return self._pending.popleft()

    async def text(self) -> str:
        return "".join([chunk.text async for chunk in self])

    async def aclose(self) -> None:
        self._closed = True
        if self._response is not None:
            self._response.release()

    async def __aenter__(self) -> AsyncChatStream:
        if self._response is None and not self._closed:
            await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncClient:
    """An asyncio client for the gateway over one pooled aiohttp session.

    With `auto=True` the gateway is ensured (in a worker thread) on first use. Close it with
    `await client.aclose()` or `async with AsyncClient(...) as client:`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        auto: bool = False,
        api_key: str | None = None,
        signing_secret: str | None = None,
        timeout: float = 600.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._base_url = normalize_base_url(base_url) if base_url else None
        self._signing_secret = signing_secret
        self._auto = auto
        self.timeout = timeout
        self._headers = _headers(api_key, headers)
        self._session: aiohttp.ClientSession | None = None

    async def base_url(self) -> str:
        if self._base_url is None:
            self._base_url = await asyncio.to_thread(resolve_base_url, None, self._auto)
        return self._base_url

    async def chat(self, model: str, messages: Messages, **params: Any) -> ChatCompletion:
        body = _chat_body(model, messages, params, stream=False)
        return _decode(await self._call("POST", _CHAT, body), ChatCompletion)

    def stream(self, model: str, messages: Messages, **params: Any) -> AsyncChatStream:
        """A streamed chat completion: `async for chunk in client.stream(...)`."""
        return AsyncChatStream(self, _chat_body(model, messages, params, stream=True))

    async def models(self) -> list[Model]:
        return _decode(await self._call("GET", "/v1/models"), _ModelList).data

    async def health(self) -> Health:
        return _decode(await self._call("GET", "/health"), Health)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _request(
        self, method: str, path: str, body: bytes | None = None
    ) -> aiohttp.ClientResponse:
        import aiohttp

        base_url = await self.base_url()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                # like Client: a bound on each wait for the gateway, not on a whole stream
                timeout=aiohttp.ClientTimeout(sock_connect=self.timeout, sock_read=self.timeout),
            )
        try:
            url = base_url + path
            headers = _signed({}, self._signing_secret, method, urlsplit(url).path, body)
            return await self._session.request(method, url, data=body, headers=headers)
        except asyncio.TimeoutError:
            raise APITimeoutError(f"the gateway at {base_url} did not answer") from None
        except aiohttp.ClientError as e:
            raise APIConnectionError(
                f"cannot reach the gateway at {base_url}: {e}", _START_HINT
            ) from None

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        import aiohttp

        try:
            return await response.read()
        except asyncio.TimeoutError:
            raise APITimeoutError("the gateway stopped answering") from None
        except aiohttp.ClientError as e:
            raise APIConnectionError(f"lost the connection to the gateway: {e}") from None
        finally:
            response.release()

    async def _call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        response = await self._request(method, path, body)
        data = await self._read(response)
        if response.status >= 400:
            raise status_error(response.status, data)
        return data
