"""What usage + metrics + the access log add to one request, in process (a few seconds).

    python bench/micro_observe.py [--seconds 0.4] [--rounds 5] [--src DIR]

Runs the pipeline's answer step (`_whole`) for a non-stream OpenAI pass-through answer, the
bench mock's, with no policy (the pass-through's cost) and with the chain the bench's
"usage + metrics + access log on" scenario builds (the request's `RequestInfo`, the policies'
`before` and `after`, the usage read and the cost header included); the difference is what
observing a request costs. Then the parts on their own (each policy's `after`), and the ledger's
batch write to SQLite per record. CPU-µs per request, the minimum of a few rounds; the JSON
access lines go to a temporary file, as the bench gateway's stderr does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import msgspec

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # --src: another tree's sources (an A/B against a checkout)
    _at = sys.argv.index("--src") + 1 if "--src" in sys.argv else 0
    sys.path.insert(0, sys.argv[_at] if _at else str(ROOT / "src"))

from mini_llm.call import Answer  # noqa: E402
from mini_llm.config import load_settings  # noqa: E402
from mini_llm.dialects.openai_chat import OPENAI_CHAT  # noqa: E402
from mini_llm.gateway import pipeline  # noqa: E402
from mini_llm.gateway.app import Observers, Runtime  # noqa: E402
from mini_llm.policies.base import RequestInfo  # noqa: E402
from mini_llm.policies.metrics import Metrics  # noqa: E402
from mini_llm.state import MemoryState  # noqa: E402
from mini_llm.store import open_store  # noqa: E402
from mini_llm.upstream import HttpTransport  # noqa: E402
from mini_llm.usage.ledger import Ledger  # noqa: E402

BODY = {
    "model": "openai/gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Say hello to the benchmark in twenty tokens."},
    ],
    "max_tokens": 64,
}
ANSWER = msgspec.json.encode(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello " * 20},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32},
    }
)


TURN = 8
"""Requests that end in one event loop turn (about so at 16 connections)."""


def _per_call(run: Callable[[int], None], seconds: float, rounds: int) -> float:
    """CPU-µs per call, the best of `rounds` runs of about `seconds` each."""
    count = 200
    while True:  # calibrate
        began = time.process_time()
        run(count)
        spent = time.process_time() - began
        if spent > seconds / 4:
            break
        count *= 4
    count = max(1, int(count * seconds / spent))
    best = float("inf")
    for _ in range(rounds):
        began = time.process_time()
        run(count)
        best = min(best, (time.process_time() - began) / count)
    return best * 1e6


def _settings(home: str) -> Any:
    return load_settings(
        env={
            "HOME": home,
            "MINI_LLM_DATA_DIR": home,
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
            "MINI_LLM_USAGE": "true",
            "MINI_LLM_METRICS": "true",
            "MINI_LLM_LOG_LEVEL": "info",
            "MINI_LLM_LOG_FORMAT": "json",
        }
    )


class _Request(dict[str, Any]):
    """The request, as `RequestInfo` reads it: its headers."""

    headers: ClassVar[dict[str, str]] = {"content-type": "application/json"}


async def main(seconds: float, rounds: int) -> None:
    from mini_llm.logs import setup_logging

    home = tempfile.mkdtemp(prefix="micro-observe-")
    log_file = open(os.path.join(home, "gateway.log"), "w")  # noqa: SIM115, ASYNC230
    sys.stderr = log_file  # the access log's JSON lines go where the gateway's stderr goes
    settings = _settings(home)
    setup_logging(settings.log_level)
    ledger = Ledger(open_store(f"sqlite:///{home}/usage.db"))
    http = HttpTransport(settings.timeouts, 8, "micro")
    runtime = Runtime(settings, http, MemoryState(), observers=Observers(Metrics(), ledger))
    chain = runtime.policies
    call = OPENAI_CHAT.parse(msgspec.json.decode(msgspec.json.encode(BODY)), {})
    route = runtime.router.route(call.model)
    served = route.serving(call.operation, call.format)
    assert served is not None
    target = served.primary
    request: Any = _Request()
    loop = asyncio.get_running_loop()

    def answer() -> Answer:
        made = Answer(target, True, ANSWER)
        made.waited = 0.0002
        return made

    def plain(count: int) -> None:
        runtime.policies = type(chain)()
        for _ in range(count):
            pipeline._whole(runtime, OPENAI_CHAT, call, answer(), None, "r", 0.0)
        runtime.policies = chain

    def observed(count: int) -> None:
        for done in range(1, count + 1):
            info = RequestInfo("r", "/v1/chat/completions", "openai", request.headers)
            info.keep_answer = chain.keep_answer
            info.call = call
            _drive(chain.before(info))
            info.target, info.attempts = target, 1
            pipeline._whole(runtime, OPENAI_CHAT, call, answer(), info, "r", 0.0)
            chain.after(info)
            if done % TURN == 0:
                end_turn(done)
        end_turn(0)

    def end_turn(done: int) -> None:
        """What the event loop does between requests: the access log's lines of the turn
        written; the ledger's batch taken by its writer (measured apart)."""
        await_lines()
        if done % ledger.batch == 0:
            ledger.queue.clear()

    def await_lines() -> None:
        for policy in chain.policies:  # the access log's lines of this "turn"
            lines = getattr(policy, "_lines", None)
            if lines is not None:
                lines.flush()

    def finished_info() -> RequestInfo:
        info = RequestInfo("r", "/v1/chat/completions", "openai", request.headers)
        info.call, info.target, info.attempts, info.status = call, target, 1, 200
        info.overhead = 0.0001
        info.usage = None
        return info

    def one_after(policy: Any) -> Callable[[int], None]:
        def run(count: int) -> None:
            for done in range(1, count + 1):
                info = finished_info()
                info.costed, info.cost = True, 1e-5
                policy.after(info)
                if done % TURN == 0:
                    end_turn(done)
            end_turn(0)

        return run

    def construct(count: int) -> None:
        for _ in range(count):
            RequestInfo("r", "/v1/chat/completions", "openai", request.headers)

    figures: dict[str, float] = {}
    figures["pass-through answer step, no policy"] = _per_call(plain, seconds, rounds)
    figures["same, usage + metrics + access log"] = _per_call(observed, seconds, rounds)
    figures["RequestInfo()"] = _per_call(construct, seconds, rounds)
    for policy in chain.policies:
        name = f"{type(policy).__name__}.after"
        figures[name] = _per_call(one_after(policy), seconds, rounds)

    # the ledger's batch write, per record (the store's thread included)
    record_info = finished_info()
    ledger_policy = next(p for p in chain.policies if type(p).__name__ == "UsageLedger")
    await ledger.flush()  # opens the store, creates the table

    async def write(count: int) -> None:
        for _ in range(count):
            ledger_policy.after(record_info)
        await ledger.flush()

    def ledger_write(count: int) -> None:
        done = asyncio.run_coroutine_threadsafe(write(count), loop)
        while not done.done():
            time.sleep(0.0005)

    figures["ledger batch write, per record"] = await asyncio.to_thread(
        _per_call, ledger_write, seconds, rounds
    )
    await ledger.close()
    await http.close()
    sys.stderr = sys.__stderr__
    log_file.close()
    width = max(map(len, figures))
    for name, value in figures.items():
        print(f"{name:{width}s} {value:8.2f} µs")
    added = figures["same, usage + metrics + access log"]
    added -= figures["pass-through answer step, no policy"]
    print(f"{'observing a request adds':{width}s} {added:8.2f} µs (the ledger's write apart)")


def _drive(step: Awaitable[Any]) -> Any:
    """Runs a coroutine that never suspends (here: none of these waits on anything)."""
    coroutine: Any = step
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    raise RuntimeError("the step suspended")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--src", help="the mini_llm sources to measure (default: this tree's)")
    options = parser.parse_args()
    asyncio.run(main(options.seconds, options.rounds))
