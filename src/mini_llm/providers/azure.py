"""Azure OpenAI: the OpenAI wire format at a resource's deployments.

A model name maps to a deployment name (`deployments = { "gpt-4o" = "my-gpt4o" }`; unmapped
names are deployment names already). Two API shapes, chosen by `api_version`:

- the v1 API (no `api_version`, or `"v1"`): `{resource}/openai/v1/chat/completions` and
  `/responses`, the deployment in `model`, no `api-version` query — OpenAI's own endpoints;
- a dated API version: `{resource}/openai/deployments/{deployment}/chat/completions
  ?api-version=…` (the deployment percent-encoded in the path) and
  `{resource}/openai/responses?api-version=…`.

The base URL the configuration hands over already ends in `/openai/v1` or `/openai`. A key goes
in the `api-key` header; a Microsoft Entra token (a credential of kind `bearer`) as
`Authorization: Bearer`. Bodies, answers and streams are OpenAI's, so OpenAI clients pass
through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from ..formats import CHAT, OPENAI, RESPONSES, Format
from .base import (
    Credential,
    Endpoint,
    Framing,
    StreamDecoder,
    UpstreamModel,
    UpstreamRequest,
    Wire,
    WireFormat,
)
from .openai import OpenAIChat, openai_error_info
from .openai_responses import OpenAIResponses

__all__ = ["AzureSigner", "azure_wires"]


class AzureSigner:
    """`api-key: <key>`, or `Authorization: Bearer <token>` for an Entra ID token."""

    __slots__ = ()

    def sign(self, request: UpstreamRequest, credential: Credential | None) -> UpstreamRequest:
        if credential is None:
            return request
        headers = dict(request.headers)
        if credential.fields.get("kind") == "bearer":
            headers["Authorization"] = "Bearer " + credential.secret
        else:
            headers["api-key"] = credential.secret
        return UpstreamRequest(request.method, request.url, headers, request.body, request.dropped)


class _Deployed:
    """One OpenAI endpoint at a deployment: the model name becomes the deployment's, and a
    dated API version moves it into the path and adds the `api-version` query."""

    __slots__ = ("_inner", "_path", "_query", "deployments")

    def __init__(
        self,
        inner: Endpoint,
        deployments: Mapping[str, str],
        version: str | None,
        path: Callable[[str], str] | None,
    ) -> None:
        self._inner = inner
        self.deployments = dict(deployments)
        self._query = "?api-version=" + quote(version, safe="") if version else ""
        self._path = path

    @property
    def framing(self) -> Framing:
        return self._inner.framing

    @property
    def translates(self) -> bool:
        return self._inner.translates

    @property
    def format(self) -> Format | None:
        return self._inner.format

    def request(
        self, to: UpstreamModel, body: dict[str, Any], native: bool, stream: bool
    ) -> UpstreamRequest:
        deployment = self.deployments.get(to.model, to.model)
        at = UpstreamModel(to.provider, to.base_url, deployment, to.headers)
        built = self._inner.request(at, body, native, stream)
        if self._path is None:
            return built
        url = to.base_url + self._path(deployment) + self._query
        return UpstreamRequest(built.method, url, built.headers, built.body, built.dropped)

    def parse(self, raw: bytes) -> dict[str, Any]:
        return self._inner.parse(raw)

    def decoder(self) -> StreamDecoder:
        return self._inner.decoder()


def _chat_path(deployment: str) -> str:
    return f"/deployments/{quote(deployment, safe='')}/chat/completions"


def azure_wires(options: Mapping[str, Any]) -> Callable[[str], WireFormat]:
    """The Azure wire of one configured resource (its deployments and API version)."""
    version = options.get("api_version")
    deployments: Mapping[str, str] = options.get("deployments") or {}
    dated = isinstance(version, str) and bool(version)
    chat = _Deployed(
        OpenAIChat(), deployments, version if dated else None, _chat_path if dated else None
    )
    responses = _Deployed(
        OpenAIResponses(),
        deployments,
        version if dated else None,
        (lambda _deployment: "/responses") if dated else None,
    )
    wire = Wire(
        name="azure",
        format=OPENAI,
        endpoints={CHAT: chat, RESPONSES: responses},
        signer=AzureSigner(),
        base_headers={"Content-Type": "application/json"},
        read_error=openai_error_info,
    )
    return lambda _model: wire
