"""The Gemini-native routes: `/v1beta/models/{model}:{method}` (and `/v1/models/…`), the
Gemini model list and model. The method picks the dialect (`dialects/gemini`); the model in
the path may hold `/`. The list is the gateway's own (`GET /v1/models`) in Gemini's shape,
made once per runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from ..dialects.gemini import GEMINI_METHODS, GeminiDialect, gemini_dialect
from ..errors import ModelNotFoundError, NotFoundError
from .pipeline import Pipeline
from .responses import error_response, request_id

if TYPE_CHECKING:
    from .app import Runtime

__all__ = ["GeminiRoutes", "gemini_models"]

_GENERATE = ["generateContent", "streamGenerateContent", "countTokens"]
_EMBED = ["embedContent", "batchEmbedContents"]


def gemini_models(models_body: bytes) -> dict[str, Any]:
    """`{"models": [...]}` for the OpenAI-shaped model list."""
    data = msgspec.json.decode(models_body)["data"]
    models = []
    for entry in data:
        embeds = "embeddings" in entry.get("capabilities", ())
        models.append(
            {
                "name": "models/" + entry["id"],
                "displayName": entry["id"],
                "supportedGenerationMethods": _EMBED if embeds else _GENERATE,
            }
        )
    return {"models": models}


class GeminiRoutes:
    def __init__(self, pipeline: Pipeline, runtime: Callable[[], Runtime]) -> None:
        self._pipeline = pipeline
        self._runtime = runtime
        self._cache: tuple[object, bytes, dict[str, bytes]] | None = None

    async def call(self, request: web.Request) -> web.StreamResponse:
        """`POST …/models/{model}:{method}`."""
        spec = request.match_info["spec"]
        dialect = gemini_dialect(spec)
        if dialect is None:
            methods = ", ".join(GEMINI_METHODS)
            error = NotFoundError(
                f"Unknown route: POST {request.path} (a Gemini model method is "
                f"models/{{model}}:{{method}}, method one of {methods})."
            )
            return error_response(error, _ERRORS, request_id(request))
        method = spec.rpartition(":")[2]
        prefix = request.path.split("/models/", 1)[0]
        return await self._pipeline.handle(request, dialect, f"{prefix}/models/{{model}}:{method}")

    def _lists(self) -> tuple[bytes, dict[str, bytes]]:
        runtime = self._runtime()
        if self._cache is None or self._cache[0] is not runtime:
            listed = gemini_models(runtime.models_body)
            by_name = {m["name"]: msgspec.json.encode(m) for m in listed["models"]}
            self._cache = (runtime, msgspec.json.encode(listed), by_name)
        return self._cache[1], self._cache[2]

    async def models(self, request: web.Request) -> web.Response:
        body, _ = self._lists()
        return web.Response(body=body, content_type="application/json")

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = self._lists()[1].get(name if name.startswith("models/") else "models/" + name)
        if found is None:
            error = ModelNotFoundError(
                f"The model '{name}' is not in this gateway's model list (GET /v1beta/models).",
                param="model",
            )
            return error_response(error, _ERRORS, request_id(request))
        return web.Response(body=found, content_type="application/json")


_ERRORS = GeminiDialect("")
"""Renders errors of the routes that are not a method call, in Google's shape."""
