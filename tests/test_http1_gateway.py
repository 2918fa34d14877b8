"""The gateway end to end over a raw scripted upstream, under each `http_client` (aiohttp's
`HttpTransport`, the built-in `Http1Transport`), driven by the official `openai` client: a
stream chunked in odd places, a gzipped answer, a stream and an answer cut short (errors in the
client's dialect), a client's query forwarded as encoded; and `mini-llm serve` itself (uvloop).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from mini_llm.gateway.app import GATEWAY
from mini_llm.http1 import Http1Transport
from mini_llm.upstream import HttpTransport

from .conftest import GatewayFactory
from .harness import LoopThread, RunningApp, clean_env, http, start_serve
from .raw_http_server import (
    RawConnection,
    RawRequest,
    RawServer,
    chunked,
    gzipped,
    response,
    serve_each,
)

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
CUT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "cut"}]
KEY = "sk-e2e-upstream-key-0001"


def _event(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


SSE_EVENTS = [
    _event({"role": "assistant", "content": ""}),
    _event({"content": "Hel"}),
    _event({"content": "lo, wor"}),
    _event({"content": "ld"}),
    _event({}, "stop"),
    b"data: "
    + json.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "gpt-4o-mini",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6},
        }
    ).encode()
    + b"\n\n",
    b"data: [DONE]\n\n",
]
COMPLETION = {
    "id": "chatcmpl-zip",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "zipped " * 400},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 400, "total_tokens": 403},
}


def _sse_in_odd_splits() -> bytes:
    stream = b"".join(SSE_EVENTS)
    cuts = [0, 7, 8, 61, 200, 201, 333, len(stream) - 3, len(stream)]  # chunks across events
    parts = [stream[a:b] for a, b in itertools.pairwise(cuts)]
    headers = [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]
    return response(200, chunked(parts, extension=";x=y"), headers)


async def _scripted_openai(conn: RawConnection, request: RawRequest) -> bool:
    if request.target != "/v1/chat/completions":
        await conn.send(response(404, b'{"error":{"message":"no such path"}}'))
        return True
    body = json.loads(request.body)
    prompt = body["messages"][0]["content"]
    if body.get("stream") and prompt == "cut":
        head = [("Content-Type", "text/event-stream"), ("Transfer-Encoding", "chunked")]
        events = chunked(SSE_EVENTS[:3])
        await conn.send(response(200, events[: events.rindex(b"0\r\n")] + b"40\r\ndata: {", head))
        return False  # closed mid-stream: the chunked body never ends
    if body.get("stream"):
        await conn.send(_sse_in_odd_splits(), pieces=5, pause=0.0005)
        return True
    data = json.dumps(COMPLETION).encode()
    if prompt == "cut":
        await conn.send(response(200, data, [("Content-Type", "application/json")])[:-50])
        return False
    packed = gzipped(data)
    head = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
    await conn.send(response(200, packed, head), pieces=[10, 100, len(packed) // 2])
    return True


@pytest.fixture(params=["aiohttp", "builtin"])
def raw_gateway(
    request: pytest.FixtureRequest, loop_thread: LoopThread, make_gateway: GatewayFactory
) -> Iterator[tuple[RunningApp, RawServer]]:
    """A gateway whose `openai` provider is a raw scripted upstream, through one client."""
    expected = HttpTransport if request.param == "aiohttp" else Http1Transport
    server = RawServer(serve_each(_scripted_openai))
    loop_thread.run(server.__aenter__())
    try:
        gateway = make_gateway(
            {
                "OPENAI_BASE_URL": server.url("/v1"),
                "OPENAI_API_KEY": KEY,
                "MINI_LLM_RETRY_ATTEMPTS": "1",
                "MINI_LLM_HTTP_CLIENT": request.param,
            }
        )
        assert type(gateway.app[GATEWAY].http) is expected
        yield gateway, server
        server.check()
    finally:
        loop_thread.run(server.stop())


def test_gateway_relays_a_stream_cut_in_odd_places(
    raw_gateway: tuple[RunningApp, RawServer],
) -> None:
    gateway, server = raw_gateway
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    for _ in range(2):
        chunks = list(
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER, stream=True)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "Hello, world"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    first = server.requests[0]
    assert first.header("Authorization") == f"Bearer {KEY}"
    assert first.header("Host") == f"127.0.0.1:{server.port}"


def test_gateway_decodes_a_gzipped_answer(raw_gateway: tuple[RunningApp, RawServer]) -> None:
    gateway, _ = raw_gateway
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    completion = client.chat.completions.create(model="openai/gpt-4o-mini", messages=USER)
    assert completion.choices[0].message.content == "zipped " * 400
    assert completion.usage is not None and completion.usage.completion_tokens == 400


def test_gateway_reports_a_cut_stream_in_the_clients_dialect(
    raw_gateway: tuple[RunningApp, RawServer],
) -> None:
    gateway, _ = raw_gateway
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=CUT, stream=True
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "Hello, wor"  # what came before the cut, then the error
    assert "closed the connection" in str(info.value)
    assert KEY not in str(info.value)


def test_gateway_reports_a_cut_answer_as_a_502(raw_gateway: tuple[RunningApp, RawServer]) -> None:
    gateway, _ = raw_gateway
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=CUT)
    assert info.value.status_code == 502
    error = info.value.body
    assert isinstance(error, dict) and set(error) >= {"message", "type", "code"}
    assert "closed the connection" in error["message"]


def test_gateway_forwards_a_clients_query_as_it_was_encoded(
    raw_gateway: tuple[RunningApp, RawServer],
) -> None:
    """GET /v1/responses/{id not stored here} goes to the native upstream with the client's
    query: percent-encoded as the client sent it, never decoded into the request line."""
    gateway, server = raw_gateway
    query = "after=item%20one%26two&x=%0D%0AX-Injected:%20yes"
    status, _, _ = http("GET", gateway.url + "/v1/responses/resp_elsewhere1/input_items?" + query)
    assert status == 404  # the scripted upstream knows no such path: its 404, relayed
    (forwarded,) = server.requests
    assert forwarded.target == "/v1/responses/resp_elsewhere1/input_items?" + query
    assert forwarded.header("X-Injected") is None


def test_served_gateway_on_uvloop_relays_through_the_builtin_client(
    loop_thread: LoopThread,
) -> None:
    """`mini-llm serve` as it runs (its own process, uvloop), on the default http_client: a
    stream in odd pieces and a gzipped answer (aiohttp's is covered in process above)."""
    server = RawServer(serve_each(_scripted_openai))
    loop_thread.run(server.__aenter__())
    try:
        for kind in ("builtin",):
            env = clean_env(
                OPENAI_BASE_URL=server.url("/v1"),
                OPENAI_API_KEY=KEY,
                MINI_LLM_RETRY_ATTEMPTS="1",
                MINI_LLM_HTTP_CLIENT=kind,
            )
            served = start_serve("--port", "0", "--no-state", env=env)
            try:
                client = openai.OpenAI(base_url=served.url + "/v1", api_key="k", max_retries=0)
                chunks = client.chat.completions.create(
                    model="openai/gpt-4o-mini", messages=USER, stream=True
                )
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
                assert text == "Hello, world", kind
                completion = client.chat.completions.create(
                    model="openai/gpt-4o-mini", messages=USER
                )
                assert completion.choices[0].message.content == "zipped " * 400, kind
            finally:
                served.proc.terminate()
                served.proc.wait(10)
                if served.proc.stdout is not None:
                    output = served.proc.stdout.read()
                    served.proc.stdout.close()
                    assert "Traceback" not in output, output
        server.check()
    finally:
        loop_thread.run(server.stop())
