"""A mock Azure OpenAI resource: the v1 API and the dated deployment API, OpenAI's bodies.

- `POST /openai/v1/chat/completions`, `/openai/v1/responses`: the deployment in `model`; an
  `api-version` query is refused there, as the v1 API has none;
- `POST /openai/deployments/{deployment}/chat/completions?api-version=…` and
  `/openai/responses?api-version=…`: `api-version` required.

A request needs `api-key: <key>` or `Authorization: Bearer <Entra token>` (else 401, Azure's
wording); a deployment the resource lacks is 404 `DeploymentNotFound`; a deployment named
`error-<status>` answers that status. Answers follow `scenario.decide` (chat and Responses).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from . import responses_upstream
from .openai_upstream import Recorded, send_stream, sse
from .scenario import decide, openai_ask, openai_reply_body, openai_reply_chunks

KEY = "azure-test-key-0123456789abcdef"
AD_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-test-token.sig"
DEPLOYMENTS = ("my-gpt4o", "my-mini", "error-400", "error-401", "error-429", "error-500")


def azure_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


class AzureUpstream:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []

    def reset(self) -> None:
        self.requests.clear()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/openai/v1/chat/completions", self._v1_chat)
        app.router.add_post("/openai/v1/responses", self._v1_responses)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._dated_chat)
        app.router.add_post("/openai/responses", self._dated_responses)
        return app

    async def _read(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        body: dict[str, Any] = json.loads(await request.read())
        self.requests.append(Recorded(request.method, request.path_qs, dict(request.headers), body))
        key = request.headers.get("api-key")
        bearer = request.headers.get("Authorization", "")
        if key != KEY and bearer != "Bearer " + AD_TOKEN:
            message = (
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
                "to provide a valid key for an active subscription and use a correct regional "
                "API endpoint for your resource."
            )
            return body, azure_error(401, "401", message)
        return body, None

    @staticmethod
    def _deployment(name: str) -> web.Response | None:
        if name.startswith("error-") and name[6:].isdigit():
            status = int(name[6:])
            return azure_error(status, str(status), f"mock azure error {status}")
        if name not in DEPLOYMENTS:
            message = "The API deployment for this resource does not exist."
            return azure_error(404, "DeploymentNotFound", message)
        return None

    async def _chat(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        reply = decide(openai_ask(body))
        if body.get("stream"):
            events = [sse(c) for c in openai_reply_chunks(body, reply)] + [b"data: [DONE]\n\n"]
            return await send_stream(request, events)
        return web.json_response(openai_reply_body(body, reply))

    async def _responses(self, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        reply = decide(responses_upstream.ask_of(body, []))
        output = responses_upstream.output_of(reply, 1)
        if body.get("stream"):
            events = responses_upstream.stream_events(body, "resp_azure1", output)
            return await send_stream(request, events)
        return web.json_response(responses_upstream.response_json(body, "resp_azure1", output))

    async def _v1_chat(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request)
        if refused is None and "api-version" in request.query:
            refused = azure_error(400, "BadRequest", "api-version is not allowed on the v1 API")
        return (
            refused or self._deployment(str(body.get("model"))) or await self._chat(request, body)
        )

    async def _v1_responses(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request)
        return (
            refused
            or self._deployment(str(body.get("model")))
            or await self._responses(request, body)
        )

    async def _dated_chat(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request)
        if refused is None and not request.query.get("api-version"):
            refused = azure_error(404, "404", "Resource not found")
        deployment = request.match_info["deployment"]
        return refused or self._deployment(deployment) or await self._chat(request, body)

    async def _dated_responses(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._read(request)
        if refused is None and not request.query.get("api-version"):
            refused = azure_error(404, "404", "Resource not found")
        return (
            refused
            or self._deployment(str(body.get("model")))
            or await self._responses(request, body)
        )
