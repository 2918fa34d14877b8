"""Sending one chat request upstream and bringing the answer back, raw or canonical.

`Proxy.open` is the one place a request leaves the gateway: it picks a key, builds the upstream
request through the provider's wire format, sends it, and turns an error status into an
`UpstreamStatusError`. On top of it:

- `relay` yields the answer's bytes as they come (pass-through: the client speaks the
  provider's format, nothing is decoded or re-encoded);
- `complete` and `chunks` bring a translated answer back in canonical form (an OpenAI
  `chat.completion` dict, or `chat.completion.chunk` dicts from a stream).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import AuthenticationError, GatewayError, UpstreamStatusError
from ..providers.base import Provider, UpstreamResponse
from ..routing.router import Target
from ..sse import SSEParser
from ..upstream import upstream_failure

__all__ = ["Proxy"]

log = logging.getLogger("mini_llm.gateway")


class Proxy:
    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    async def open(
        self, target: Target, body: dict[str, Any], *, native: bool, stream: bool
    ) -> UpstreamResponse:
        """Send the request; the answer has a success status or this raises `GatewayError`."""
        provider = target.provider
        key = provider.acquire_key()
        if key is None and provider.config.key_required:
            raise _missing_key(provider)
        body["model"] = target.model
        wire = provider.wire
        build = wire.native_request if native else wire.chat_request
        request = build(provider, body, key, stream)
        try:
            response = await provider.transport.send(request)
        except Exception as e:
            raise self.failure(e, provider) from None
        if response.status >= 400:
            try:
                raw = await response.read()
            except Exception as e:
                raise self.failure(e, provider) from None
            finally:
                response.release()
            raise self._status_error(provider, response.status, raw)
        return response

    async def read(self, response: UpstreamResponse, provider: Provider) -> bytes:
        try:
            return await response.read()
        except Exception as e:
            raise self.failure(e, provider) from None
        finally:
            response.release()

    async def relay(self, response: UpstreamResponse, provider: Provider) -> AsyncIterator[bytes]:
        """The answer's bytes as they arrive; failures become `GatewayError`s."""
        complete = False
        try:
            async for chunk in response.content.iter_any():
                yield chunk
            complete = True
        except GatewayError:
            raise
        except Exception as e:
            raise self.failure(e, provider) from None
        finally:
            # an answer not read to its end must not go back to the pool
            if complete:
                response.release()
            else:
                response.close()

    async def complete(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        """A non-stream answer in canonical form."""
        response = await self.open(target, body, native=False, stream=False)
        raw = await self.read(response, target.provider)
        return target.provider.wire.parse_chat_response(raw)

    async def chunks(self, target: Target, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """A stream's canonical chunks, translated as the upstream's events arrive."""
        provider = target.provider
        response = await self.open(target, body, native=False, stream=True)
        translator = provider.wire.stream_translator()
        parser = SSEParser()
        async for data in self.relay(response, provider):
            for event in parser.feed(data):
                for chunk in translator.feed(event):
                    yield chunk
        for event in parser.flush():
            for chunk in translator.feed(event):
                yield chunk
        for chunk in translator.finish():
            yield chunk

    def failure(self, exc: BaseException, provider: Provider) -> GatewayError:
        error = upstream_failure(exc, provider.name)
        log.warning(
            "upstream %s failed: %s", provider.name, self._redact(f"{type(exc).__name__}: {exc}")
        )
        return error

    def _status_error(self, provider: Provider, status: int, raw: bytes) -> UpstreamStatusError:
        info = provider.wire.error_info(status, raw)
        log.warning(
            "upstream %s answered HTTP %d: %s",
            provider.name,
            status,
            self._redact(raw[:4000].decode("utf-8", "replace")),
        )
        return UpstreamStatusError(
            self._redact(info.message),
            provider=provider.name,
            upstream_status=status,
            raw=raw,
            param=info.param,
            code=info.code,
            upstream_type=info.type,
        )


def _missing_key(provider: Provider) -> AuthenticationError:
    env = provider.config.key_env or f"{provider.name.upper()}_API_KEY"
    return AuthenticationError(
        f"No API key is configured for provider '{provider.name}'. Set {env} in the gateway's "
        f"environment (several keys: comma-separated in {env.removesuffix('S')}S), or add keys "
        f"under [providers.{provider.name}] in mini-llm.toml.",
        code="missing_api_key",
    )
