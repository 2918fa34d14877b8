"""What auth + limits add to one request, in process: µs of CPU per request.

The real pipeline (`Pipeline.handle`, behind the auth middleware when a master key is set)
serves a pass-through OpenAI chat request from a mocked aiohttp request; the dispatcher is a
stub that answers at once with a canonical answer's bytes, so no socket, no upstream and no
HTTP parsing is measured: only what the gateway does around the dispatch. Two gateways are
built from the same settings but for the master key: the difference is the cost of auth
(identify the gateway key, `ModelAccess`) and limits (reserve rpm + tpm, the usage read,
settle). Run from a checkout: `PYTHONPATH=src python3 bench/micro_limits.py [--seconds 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from mini_llm.access.keys import GatewayKey, hash_key, new_id, new_key
from mini_llm.call import Answer, Call
from mini_llm.config import load_settings
from mini_llm.gateway.app import Gateway
from mini_llm.routing.router import Route

MASTER = "bench-master-key-0123456789"
BODY = json.dumps(
    {
        "model": "openai/gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a terse assistant."},
            {"role": "user", "content": "Say hello to the benchmark in twenty tokens."},
        ],
        "max_tokens": 64,
    }
).encode()
ANSWER = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, benchmark!"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26},
    }
).encode()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InstantDispatcher:
    """Answers every call at once with `ANSWER`, as the route's first target."""

    async def run(self, route: Route, call: Call) -> Answer:
        return Answer(route.primary, True, ANSWER, endpoint=None)


def _gateway(folder: Path, master_key: str) -> Gateway:
    env = {
        "HOME": str(folder),
        "MINI_LLM_DATA_DIR": str(folder),
        "MINI_LLM_USAGE": "false",
        "MINI_LLM_METRICS": "false",
        "MINI_LLM_LOG_LEVEL": "warning",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    }
    if master_key:
        env["MINI_LLM_MASTER_KEY"] = master_key
    gateway = Gateway(load_settings(env=env))
    gateway.runtime.dispatcher = InstantDispatcher()  # type: ignore[assignment]
    return gateway


def _handler(gateway: Gateway) -> Handler:
    from mini_llm.dialects.openai_chat import OPENAI_CHAT

    handle = gateway.pipeline.handler(OPENAI_CHAT, "chat")
    if not gateway.runtime.settings.master_key:
        return handle
    middleware = gateway.access.middleware()

    async def protected(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await middleware(request, handle)
        return response

    return protected


def _request(secret: str) -> web.Request:
    headers = CIMultiDict({"Content-Type": "application/json", "Content-Length": str(len(BODY))})
    if secret:
        headers["Authorization"] = "Bearer " + secret
    request = make_mocked_request("POST", "/v1/chat/completions", headers=headers)
    request._read_bytes = BODY  # what `read()` gives: the body, read once
    return request


async def _time(handler: Handler, secret: str, seconds: float) -> tuple[float, int]:
    """µs of CPU per request over about `seconds`, and the status of the last answer."""
    requests = [_request(secret) for _ in range(10)] * 100  # reused: mocks are slow to make
    status = 0
    for request in requests[:200]:  # warm up
        status = (await handler(request)).status
    spent, count = 0.0, 0
    while spent < seconds:
        started = time.process_time()
        for request in requests:
            status = (await handler(request)).status
        spent += time.process_time() - started
        count += len(requests)
    return spent / count * 1e6, status


async def main(seconds: float, rounds: int) -> int:
    with tempfile.TemporaryDirectory(prefix="micro-limits-") as folder:
        plain = _gateway(Path(folder) / "plain", "")
        guarded = _gateway(Path(folder) / "guarded", MASTER)
        assert guarded.key_cache is not None
        secret = new_key()
        guarded.key_cache.put(
            GatewayKey(
                id=new_id(),
                hash=hash_key(secret),
                last4=secret[-4:],
                name="bench",
                rpm=10**9,
                tpm=10**12,
            )
        )
        results: dict[str, list[float]] = {"pass-through": [], "auth + limits": []}
        for _ in range(rounds):  # interleaved: a noisy machine affects both alike
            us, status = await _time(_handler(plain), "", seconds / rounds / 2)
            assert status == 200, status
            results["pass-through"].append(us)
            us, status = await _time(_handler(guarded), secret, seconds / rounds / 2)
            assert status == 200, status
            results["auth + limits"].append(us)
    base = statistics.median(results["pass-through"])
    for label, runs in results.items():
        print(f"{label:14s} median {statistics.median(runs):7.1f} µs/request  runs {runs!r:.60}")
    added = statistics.median(results["auth + limits"]) - base
    print(f"auth + limits add {added:.1f} µs/request")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.seconds, args.rounds)))
