"""The OpenAI API: `/v1/chat/completions`."""

from __future__ import annotations

import logging

from aiohttp import web

from ..errors import GatewayError
from ..routing.router import Router
from ..schema.openai import validate_chat_request
from .body import read_json_object
from .proxy import Proxy
from .responses import Dialect, error_response, internal_error

__all__ = ["OpenAIRoutes"]

log = logging.getLogger("mini_llm.gateway")


class OpenAIRoutes:
    def __init__(self, router: Router, proxy: Proxy, max_body_bytes: int) -> None:
        self._router = router
        self._proxy = proxy
        self._limit = max_body_bytes

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await read_json_object(request, self._limit)
            chat = validate_chat_request(body)
            target = self._router.resolve(chat.model)
            return await self._proxy.pass_through(
                request, target, body, bool(chat.stream), Dialect.OPENAI
            )
        except GatewayError as e:
            return error_response(e, Dialect.OPENAI)
        except Exception:
            log.exception("unexpected failure in /v1/chat/completions")
            return error_response(internal_error(), Dialect.OPENAI)
