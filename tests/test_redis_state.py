"""The Redis state backend against a real redis-server: exact `reserve` under concurrent
callers in two processes, `incr`/`get`/`set` with TTLs, handles shared between instances,
and an outage: calls fail at once (never block), one warning, recovery."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from mini_llm.state import StateUnavailableError
from mini_llm.state.redis import RedisState

from .services import redis as services
from .services.redis import RedisServer

redis_server = services.redis_server  # the session's redis-server
fresh_redis = services.fresh_redis

T = TypeVar("T")


def run(
    make: Callable[[RedisState], Awaitable[T]],
    url: str,
    retry_after: float = 1.0,
    resync: float = 1.0,
) -> T:
    async def main() -> T:
        state = RedisState(url, retry_after=retry_after, resync=resync)
        try:
            return await make(state)
        finally:
            await state.close()

    return asyncio.run(main())


_RESERVER = textwrap.dedent(
    """
    import asyncio, sys, time
    from mini_llm.state.redis import RedisState

    async def main():
        state = RedisState(sys.argv[1])
        start = float(sys.argv[2])
        await asyncio.sleep(max(start - time.time(), 0))
        got = await asyncio.gather(*(state.reserve("limit", 1, 30, 60) for _ in range(25)))
        await state.close()
        print(sum(1 for admitted, _ in got if admitted))

    asyncio.run(main())
    """
)


def test_reserve_is_exact_under_50_callers_from_two_processes(fresh_redis: RedisServer) -> None:
    start = time.time() + 1.5  # both processes begin at once, once imported
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RESERVER, fresh_redis.url, str(start)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    admitted = [int(p.communicate(timeout=30)[0]) for p in procs]
    assert sum(admitted) == 30, admitted

    async def after(state: RedisState) -> tuple[tuple[bool, float], tuple[bool, float]]:
        refused = await state.reserve("limit", 1, 30, 60)
        settled = await state.reserve("limit", -45, 30, 60)  # a settlement: never below 0
        return refused, settled

    assert run(after, fresh_redis.url) == ((False, 30.0), (True, 0.0))


def test_incr_get_set_delete_and_ttls(fresh_redis: RedisServer) -> None:
    async def work(state: RedisState) -> None:
        assert await state.incr("n", 2.5, ttl=0.3) == 2.5
        assert await state.incr("n", 0.25, ttl=60) == 2.75  # an existing key keeps its TTL
        await state.set("v", b"\x00bytes\xff", ttl=0.3)
        await state.set("forever", b"x")
        assert await state.get("v") == b"\x00bytes\xff"
        await asyncio.sleep(0.45)
        assert await state.get("v") is None
        assert await state.incr("n") == 1.0  # expired: counted from 0 again
        assert await state.get("forever") == b"x"
        await state.delete("forever")
        assert await state.get("forever") is None
        admitted, value = await state.reserve("r", 0.1, 0.3, 60)
        assert admitted and value == pytest.approx(0.1)

    run(work, fresh_redis.url)
    assert fresh_redis.command(b"EXISTS", b"mini-llm:forever") == b":0"  # under the prefix


def test_deadline_handles_are_shared_between_instances(fresh_redis: RedisServer) -> None:
    async def work(_: RedisState) -> None:
        one, two = RedisState(fresh_redis.url), RedisState(fresh_redis.url)
        await one.start()
        await two.start()
        try:
            theirs = two.deadline("key/openai/abcd")
            until = time.monotonic() + 100
            one.deadline("key/openai/abcd").set(until)
            await _until(lambda: theirs.until > 0)
            assert theirs.until == pytest.approx(until, abs=0.05)
            one.deadline("key/openai/abcd").clear()
            await _until(lambda: theirs.until == 0)
            # a third instance, started later, reads what is set from the hash
            one.deadline("other").set(time.monotonic() + 50)
            await asyncio.sleep(0.1)
            three = RedisState(fresh_redis.url)
            await three.start()
            late = three.deadline("other")
            await _until(lambda: late.until > 0)
            await three.close()
        finally:
            await one.close()
            await two.close()

    run(work, fresh_redis.url)


async def _until(ok: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, "not seen in time"
        await asyncio.sleep(0.01)


def test_an_outage_fails_fast_logs_once_and_recovers(
    fresh_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("mini_llm")
    propagated, logger.propagate = logger.propagate, True

    async def work(state: RedisState) -> None:
        await state.start()
        await state.set("k", b"v")
        handle = state.deadline("shared")
        fresh_redis.stop()
        try:
            for _ in range(20):
                began = time.monotonic()
                with pytest.raises(StateUnavailableError):
                    await state.get("k")
                assert time.monotonic() - began < 0.6  # never blocks a request
            handle.set(time.monotonic() + 30)  # written through later: must not raise
            await asyncio.sleep(0.1)
        finally:
            fresh_redis.start()
        deadline = time.monotonic() + 5
        while True:
            try:
                await state.set("k", b"back")
                break
            except StateUnavailableError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        assert await state.get("k") == b"back"

    try:
        with caplog.at_level(logging.WARNING, logger="mini_llm.state"):
            run(work, fresh_redis.url, retry_after=0.2, resync=0.2)
    finally:
        logger.propagate = propagated
    lines = [r.getMessage() for r in caplog.records if r.name == "mini_llm.state"]
    assert sum("unreachable" in line for line in lines) == 1, lines
    assert any("reachable again" in line for line in lines), lines
