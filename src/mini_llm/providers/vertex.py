"""Google Vertex AI: Gemini and Claude at a project's location, with OAuth tokens.

The configuration hands over the base `{endpoint}/v1/projects/{project}/locations/{location}`
(the endpoint regional, `aiplatform.googleapis.com` for `global`, or `base_url`). A model is
spoken to in its publisher's format:

- Google's (`vertex/gemini-2.5-flash`): the Gemini wire at
  `…/publishers/google/models/{model}:generateContent` (`:streamGenerateContent?alt=sse`);
- Anthropic's (`vertex/claude-sonnet-4-5@20250929`): the Anthropic wire at
  `…/publishers/anthropic/models/{model}:rawPredict` (`:streamRawPredict`), the body without
  `model` and with `anthropic_version: "vertex-2023-10-16"`; token counts at
  `…/models/count-tokens:rawPredict`. Anthropic clients pass through.

Both sign with `Authorization: Bearer <access token>`, the token coming from the provider's
service account through `google_auth.ServiceAccountTokens` (the wires' credential source).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import msgspec

from ..formats import ANTHROPIC, CHAT, COUNT_TOKENS, GEMINI, RESPONSES
from .anthropic import AnthropicCountTokens, AnthropicMessages, to_anthropic_request
from .anthropic_answer import anthropic_error_info
from .base import HeaderSigner, UpstreamModel, UpstreamRequest, Wire, WireFormat
from .gemini import GeminiGenerate
from .gemini_answer import gemini_error_info
from .google_auth import ServiceAccountTokens

__all__ = ["VERTEX_ANTHROPIC_VERSION", "publisher", "vertex_wires"]

VERTEX_ANTHROPIC_VERSION = "vertex-2023-10-16"

_encode = msgspec.json.encode


def publisher(model: str) -> str:
    """The publisher whose format a Vertex model speaks."""
    return "anthropic" if model.startswith("claude") else "google"


class VertexGemini(GeminiGenerate):
    """Gemini's `generateContent` under `publishers/google`."""

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        at = UpstreamModel(to.provider, to.base_url + "/publishers/google", to.model, to.headers)
        return super().request(at, body, native, stream)


class VertexClaude(AnthropicMessages):
    """Claude's `rawPredict` (`streamRawPredict`): an Anthropic body without `model`."""

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        payload = dict(body) if native else to_anthropic_request(body, stream)
        payload.pop("model", None)
        payload["anthropic_version"] = VERTEX_ANTHROPIC_VERSION
        method = ":streamRawPredict" if stream else ":rawPredict"
        url = f"{to.base_url}/publishers/anthropic/models/{quote(to.model, safe='')}{method}"
        return UpstreamRequest("POST", url, to.headers, _encode(payload))


class VertexClaudeCount(AnthropicCountTokens):
    """`…/publishers/anthropic/models/count-tokens:rawPredict`: the model in the body."""

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        built = super().request(to, body, native, stream)
        url = f"{to.base_url}/publishers/anthropic/models/count-tokens:rawPredict"
        return UpstreamRequest("POST", url, built.headers, built.body)


_GEMINI = VertexGemini()
_CLAUDE = VertexClaude()
_BEARER = HeaderSigner("Authorization", "Bearer ")
_JSON = {"Content-Type": "application/json"}


def vertex_wires(options: Mapping[str, Any]) -> Callable[[str], WireFormat]:
    """The Vertex wires of one configured provider, sharing its token cache."""
    tokens = ServiceAccountTokens(str(options.get("provider") or "vertex"))
    gemini = Wire(
        name="vertex",
        format=GEMINI,
        endpoints={CHAT: _GEMINI, RESPONSES: _GEMINI},
        signer=_BEARER,
        base_headers=_JSON,
        read_error=gemini_error_info,
        source=tokens,
    )
    claude = Wire(
        name="vertex",
        format=ANTHROPIC,
        endpoints={CHAT: _CLAUDE, RESPONSES: _CLAUDE, COUNT_TOKENS: VertexClaudeCount()},
        signer=_BEARER,
        base_headers=_JSON,
        read_error=anthropic_error_info,
        source=tokens,
    )
    return lambda model: claude if publisher(model) == "anthropic" else gemini
