"""Forwarding one chat request to its target and bringing the answer back.

When the client's dialect is the provider's wire format the answer's bytes go back as they
come, streams included: nothing is re-encoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..errors import AuthenticationError, GatewayError, UpstreamStatusError
from ..providers.base import Provider, UpstreamResponse
from ..routing.router import Target
from ..upstream import upstream_failure
from .responses import Dialect, error_body

__all__ = ["Proxy"]

log = logging.getLogger("mini_llm.gateway")

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


class Proxy:
    def __init__(self, redact: Callable[[str], str]) -> None:
        self._redact = redact

    async def send(self, target: Target, body: dict[str, Any]) -> UpstreamResponse:
        """Send the request to the target; an error status becomes an `UpstreamStatusError`."""
        provider = target.provider
        key = provider.acquire_key()
        if key is None and provider.config.key_required:
            raise _missing_key(provider)
        body["model"] = target.model
        request = provider.wire.chat_request(provider, body, key)
        try:
            response = await provider.transport.send(request)
        except Exception as e:
            raise self._failure(e, provider) from None
        if response.status >= 400:
            try:
                raw = await response.read()
            except Exception as e:
                raise self._failure(e, provider) from None
            finally:
                response.release()
            raise self._status_error(provider, response.status, raw)
        return response

    async def pass_through(
        self,
        request: web.Request,
        target: Target,
        body: dict[str, Any],
        stream: bool,
        dialect: Dialect,
    ) -> web.StreamResponse:
        response = await self.send(target, body)
        provider = target.provider
        content_type = response.headers.get("Content-Type", "application/json")
        if not (stream and content_type.startswith("text/event-stream")):
            try:
                data = await response.read()
            except Exception as e:
                raise self._failure(e, provider) from None
            finally:
                response.release()
            return web.Response(body=data, headers={"Content-Type": content_type})

        out = web.StreamResponse(headers=_SSE_HEADERS)
        await out.prepare(request)
        try:
            async for chunk in response.content.iter_any():
                await out.write(chunk)
        except (ConnectionResetError, OSError) as e:
            if request.transport is None or request.transport.is_closing():
                log.info("client went away during a stream from %s", provider.name)
                response.close()
                return out
            await self._end_stream_with_error(out, self._failure(e, provider), dialect)
            response.close()
            return out
        except Exception as e:
            await self._end_stream_with_error(out, self._failure(e, provider), dialect)
            response.close()
            return out
        response.release()
        await out.write_eof()
        return out

    async def _end_stream_with_error(
        self, out: web.StreamResponse, error: GatewayError, dialect: Dialect
    ) -> None:
        event = b"event: error\n" if dialect is Dialect.ANTHROPIC else b""
        try:
            await out.write(event + b"data: " + error_body(error, dialect) + b"\n\n")
            await out.write_eof()
        except (ConnectionResetError, OSError):
            pass

    def _failure(self, exc: BaseException, provider: Provider) -> GatewayError:
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
