"""Hostile names and leaky upstreams (issue 18 items 1, 2 and 6), and the key set-aside that
comes back (issue 9 item 4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from mini_llm.gateway.app import GATEWAY

from .conftest import GatewayFactory
from .harness import LoopThread, RunningApp, http

SECRET = "sk-leaky-upstream-secret-0123456789"


class Recorder:
    """An upstream that records the raw path of every request and echoes the key it got
    everywhere it can: error message, code, param, type, stream events, content."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.mode = "error"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.raw_path)
        key = request.headers.get("Authorization", "").removeprefix("Bearer ") or (
            request.headers.get("x-goog-api-key") or request.headers.get("x-api-key") or ""
        )
        body = await request.json()
        if self.mode == "error":
            fields = {"message": f"bad key {key}", "type": key, "code": key, "param": key}
            return web.json_response({"error": fields}, status=400)
        if self.mode == "stream-error":
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            chunk = {
                "id": "c1",
                "object": "chat.completion.chunk",
                "model": body.get("model"),
                "choices": [{"index": 0, "delta": {"content": f"my key is {key}"}}],
            }
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            failed = {"error": {"message": f"failed with {key}", "code": key, "param": key}}
            await response.write(b"data: " + json.dumps(failed).encode() + b"\n\n")
            return response
        answer = {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"the key is {key}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return web.json_response(answer)


@pytest.fixture
def recorder(loop_thread: LoopThread) -> Iterator[tuple[Recorder, str]]:
    rec = Recorder()
    running = RunningApp(loop_thread, rec.app())
    yield rec, running.url
    running.stop()


def _post(gateway: RunningApp, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
    status, _, data = http(
        "POST", gateway.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    return status, data


HOSTILE = [
    "gemini/../../evil",
    "gemini/%2e%2e/%2e%2e/evil",
    "gemini/x/../../../v1/chat/completions",
    "gemini/x?key=abc",
    "gemini/x#frag",
    "gemini/x\r\nx-injected: 1",
    "gemini/x\ny",
    "openai/gpt 4",
    "vllm/./x",
    "vllm//x",
]


@pytest.mark.parametrize("model", HOSTILE)
def test_a_model_name_never_changes_the_upstream_path(
    make_gateway: GatewayFactory, recorder: tuple[Recorder, str], model: str
) -> None:
    rec, url = recorder
    gateway = make_gateway(
        {
            "GEMINI_BASE_URL": url + "/v1beta",
            "GEMINI_API_KEY": "AIza-test-key-0000000000000000",
            "OPENAI_BASE_URL": url + "/v1",
            "OPENAI_API_KEY": "sk-test-0000000000",
            "VLLM_BASE_URL": url + "/v1",
        }
    )
    messages = [{"role": "user", "content": "hi"}]
    for path, body in (
        ("/v1/chat/completions", {"model": model, "messages": messages}),
        ("/v1/messages", {"model": model, "max_tokens": 5, "messages": messages}),
    ):
        status, data = _post(gateway, path, body)
        assert status == 400, data
        error = json.loads(data)
        if path == "/v1/messages":
            assert error["type"] == "error"
            assert error["error"]["type"] == "invalid_request_error"
        else:
            assert error["error"]["code"] == "invalid_model"
    assert rec.paths == []


def test_model_names_with_odd_characters_are_encoded_as_one_segment(
    make_gateway: GatewayFactory, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    rec.mode = "answer"
    gateway = make_gateway(
        {"GEMINI_BASE_URL": url + "/v1beta", "GEMINI_API_KEY": "AIza-test-key-0000000000000000"}
    )
    body = {"model": "gemini/tuned/my:model@v1+x", "messages": [{"role": "user", "content": "a"}]}
    _post(gateway, "/v1/chat/completions", body)
    assert rec.paths == ["/v1beta/models/tuned%2Fmy%3Amodel%40v1%2Bx:generateContent"]


@pytest.mark.parametrize("mode", ["error", "stream-error", "answer"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_an_upstream_that_echoes_the_key_cannot_leak_it(
    make_gateway: GatewayFactory, recorder: tuple[Recorder, str], mode: str, path: str
) -> None:
    rec, url = recorder
    rec.mode = mode
    gateway = make_gateway({"OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": SECRET})
    body: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": mode == "stream-error",
    }
    if path == "/v1/messages":
        body["max_tokens"] = 5
    _, headers, data = http(
        "POST", gateway.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    assert rec.paths, "the upstream was asked"
    assert SECRET not in data.decode()
    assert SECRET[-4:] in data.decode()  # masked, last 4 characters kept: it did echo
    assert all(SECRET not in f"{k}: {v}" for k, v in headers.items())


def test_a_refused_key_comes_back_after_its_time_and_on_reset(
    make_gateway: GatewayFactory, recorder: tuple[Recorder, str]
) -> None:
    rec, url = recorder
    gateway = make_gateway({"OPENAI_BASE_URL": url + "/v1", "OPENAI_API_KEY": SECRET})
    runtime = gateway.app[GATEWAY].runtime
    pool = runtime.providers["openai"].keys
    entry = next(iter(pool))
    pool.set_aside(entry, 401, now=1000.0)
    assert pool.acquire(now=1000.0 + 59) is None
    assert pool.acquire(now=1000.0 + 61) is entry  # tried again after 1 min
    pool.set_aside(entry, 401, now=1100.0)  # refused again: 2 min
    assert pool.acquire(now=1100.0 + 119) is None
    assert pool.acquire(now=1100.0 + 121) is entry
    for _ in range(10):
        entry.aside.clear()
        pool.set_aside(entry, 401, now=2000.0)
    assert entry.aside.until - 2000.0 == 3600.0  # at most an hour
    pool.recovered(entry)
    assert pool.acquire(now=2001.0) is entry and entry.strikes.value == 0

    # a real 401 sets it aside; /health says when it is tried again; reset brings it back
    rec.mode = "answer"
    pool.set_aside(entry, 401)
    status, _, data = http("GET", gateway.url + "/health")
    report = json.loads(data)["providers"]["openai"]
    assert report["set_aside"] == [entry.hint]
    assert 0 < report["retry_in_s"][entry.hint] <= 3600
    status, _, data = _reply(gateway)
    assert status == 401
    status, _, data = http("POST", gateway.url + "/admin/providers/reset?provider=openai")
    assert status == 200 and json.loads(data)["reset"]["openai"] >= 1
    status, _, data = _reply(gateway)
    assert status == 200, data


def _reply(gateway: RunningApp) -> tuple[int, dict[str, str], bytes]:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    return http(
        "POST",
        gateway.url + "/v1/chat/completions",
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
