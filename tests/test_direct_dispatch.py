"""The server's shortcut for the model endpoints (`connections.direct_dispatch`): a POST to a
route of a fixed path goes to its handler without aiohttp's router, through the same
middlewares; everything else takes the router, and an application whose middlewares or
response hooks may need the router's match has no shortcut at all."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from mini_llm.config import load_settings
from mini_llm.gateway.app import build_app
from mini_llm.gateway.connections import direct_dispatch

from .conftest import GatewayFactory
from .harness import RunningApp, http

MASTER = "mk-direct-dispatch-master-0123456789"
CHAT = json.dumps({"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]})


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test run to its end in a new event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _app(env: dict[str, str]) -> web.Application:
    return build_app(load_settings(env={"MINI_LLM_USAGE": "false", **env}))


class Routed:
    """Stands for the application's own handler (the router): counts what reaches it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.raw_path)
        return web.Response(status=299)


def _request(method: str, path: str, **headers: str) -> web.Request:
    return make_mocked_request(method, path, headers=CIMultiDict(headers))


@in_loop
async def test_a_post_to_a_model_endpoint_skips_the_router() -> None:
    routed = Routed()
    dispatch = direct_dispatch(_app({}), routed)
    assert dispatch is not routed
    # an empty body: the pipeline's own 400 in the endpoint's dialect, not the router's 299
    for path in ("/v1/chat/completions", "/v1/chat/completions/", "/chat/completions"):
        response = await dispatch(_request("POST", path))
        assert response.status == 400, path
    response = await dispatch(_request("POST", "/v1/messages"))
    assert response.status == 400
    assert isinstance(response, web.Response) and isinstance(response.body, bytes)
    assert json.loads(response.body)["type"] == "error"  # Anthropic's error shape
    assert routed.paths == []


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/v1/chat/completions", {}),
        ("POST", "/v1/chat/completions?x=1", {}),
        ("POST", "/v1/chat%2Fcompletions", {}),
        ("POST", "/v1beta/models/mock/echo:generateContent", {}),  # a path with a variable
        ("POST", "/nowhere", {}),
        ("POST", "/v1/chat/completions", {"Expect": "100-continue"}),
    ],
)
@in_loop
async def test_everything_else_takes_the_router(
    method: str, path: str, headers: dict[str, str]
) -> None:
    routed = Routed()
    dispatch = direct_dispatch(_app({}), routed)
    response = await dispatch(_request(method, path, **headers))
    assert response.status == 299 and routed.paths == [path]


@in_loop
async def test_the_access_control_runs_on_the_shortcut() -> None:
    routed = Routed()
    dispatch = direct_dispatch(_app({"MINI_LLM_MASTER_KEY": MASTER}), routed)
    assert dispatch is not routed
    response = await dispatch(_request("POST", "/v1/chat/completions"))
    assert response.status == 401 and routed.paths == []
    with_key = _request("POST", "/v1/chat/completions", Authorization=f"Bearer {MASTER}")
    assert (await dispatch(with_key)).status == 400  # let in: the pipeline reads the body


@in_loop
async def test_no_shortcut_where_a_middleware_or_hook_may_read_the_match() -> None:
    routed = Routed()
    cors = _app({"MINI_LLM_CORS_ORIGINS": "https://app.example.com"})
    assert direct_dispatch(cors, routed) is routed
    hooked = _app({})

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        return None

    hooked.on_response_prepare.append(hook)
    assert direct_dispatch(hooked, routed) is routed
    foreign = _app({})

    @web.middleware
    async def other(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        return response

    foreign.middlewares.append(other)
    assert direct_dispatch(foreign, routed) is routed


def test_served_answers_are_those_of_the_router(make_gateway: GatewayFactory) -> None:
    gateway: RunningApp = make_gateway({"MINI_LLM_MASTER_KEY": MASTER})
    auth = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"}
    for path in ("/v1/chat/completions", "/v1/chat/completions?trace=1"):  # shortcut, router
        status, headers, body = http("POST", gateway.url + path, CHAT.encode(), auth)
        assert status == 200, body
        assert json.loads(body)["choices"][0]["message"]["content"]
        assert headers["x-request-id"]
    status, _, body = http("POST", gateway.url + "/v1/chat/completions", CHAT.encode())
    assert status == 401 and json.loads(body)["error"]["type"]


def test_expect_100_continue_is_still_answered(make_gateway: GatewayFactory) -> None:
    gateway: RunningApp = make_gateway({})
    port = int(gateway.url.rsplit(":", 1)[1])
    body = CHAT.encode()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        interim = sock.recv(1024)  # the body is held back until the server asks for it
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["object"] == "chat.completion"
