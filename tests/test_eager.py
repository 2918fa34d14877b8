"""Request handlers started at once on Python 3.11 (`gateway.eager`): a handler that never waits
runs with no task and no loop turn of its own; one that waits goes on in a task; context
variables, timeouts, cancellations and errors behave as with aiohttp's own task per request."""

from __future__ import annotations

import asyncio
import contextvars
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from mini_llm.gateway import eager

pytestmark = pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="eager request handlers are installed on 3.11 only"
)

_SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="")

_ASYNCIO: Any = asyncio  # (`timeout` is 3.11's; the type check reads 3.10)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/x", handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}/x"


def _run(test: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        assert eager.install(asyncio.get_running_loop())
        await test()

    asyncio.run(main())


def test_install_only_once_and_not_over_another_factory() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert eager.install(loop)
        assert not eager.install(loop)  # a factory is there already (ours)
        loop.set_task_factory(None)

        def other(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
            return asyncio.Task(coro, loop=loop, **kw)

        loop.set_task_factory(other)
        assert not eager.install(loop)
        assert loop.get_task_factory() is other
        loop.set_task_factory(None)

    asyncio.run(main())


def test_a_handler_that_never_waits_gets_no_task_of_its_own() -> None:
    tasks: list[asyncio.Task[Any] | None] = []

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        tasks.append(asyncio.current_task())
        return web.json_response({"n": len(tasks)})

    async def test() -> None:
        runner, url = await _serve(handler)
        try:
            async with ClientSession(connector=TCPConnector(limit=1)) as s:
                for n in (1, 2, 3):
                    async with s.post(url, data=b"{}") as r:
                        assert r.status == 200
                        assert await r.json() == {"n": n}
        finally:
            await runner.cleanup()
        # all three ran in the connection's own task (aiohttp's would be a new task each)
        assert len(tasks) == 3 and tasks[0] is not None
        assert tasks[0] is tasks[1] is tasks[2]

    _run(test)


def test_a_handler_that_waits_goes_on_in_a_task_of_its_own() -> None:
    before: list[asyncio.Task[Any] | None] = []
    after: list[asyncio.Task[Any] | None] = []

    async def handler(request: web.Request) -> web.Response:
        before.append(asyncio.current_task())
        await asyncio.sleep(0.01)
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.set_result, "later")
        value = await fut
        after.append(asyncio.current_task())
        return web.json_response({"value": value, "body": (await request.json())["q"]})

    async def test() -> None:
        runner, url = await _serve(handler)
        try:
            async with ClientSession(connector=TCPConnector(limit=1)) as s:
                for q in ("a", "b"):
                    async with s.post(url, json={"q": q}) as r:
                        assert await r.json() == {"value": "later", "body": q}
        finally:
            await runner.cleanup()
        assert before[0] is before[1]  # the connection's task, until the first wait
        assert after[0] is not before[0] and after[1] is not before[1]
        assert after[0] is not after[1]  # then a task each

    _run(test)


def test_context_variables_do_not_leak_between_requests() -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(_SEEN.get())
        _SEEN.set(request.headers["x-mark"])
        if request.headers.get("x-wait"):
            await asyncio.sleep(0.005)
            seen.append(_SEEN.get())
        return web.Response(text="ok")

    async def test() -> None:
        runner, url = await _serve(handler)
        try:
            async with ClientSession(connector=TCPConnector(limit=1)) as s:
                for mark, wait in (("one", ""), ("two", "1"), ("three", "")):
                    async with s.post(url, data=b"x", headers={"x-mark": mark, "x-wait": wait}):
                        pass
        finally:
            await runner.cleanup()
        # each request starts from the connection's context; a waiting one keeps its own
        assert seen == ["", "", "two", ""]
        assert _SEEN.get() == ""

    _run(test)


def test_a_timeout_entered_before_the_first_wait_still_fires() -> None:
    async def handler(request: web.Request) -> web.Response:
        try:
            async with _ASYNCIO.timeout(0.05):  # entered while the connection's task runs it
                await asyncio.sleep(5)
        except TimeoutError:
            return web.json_response({"timed_out": True})
        return web.json_response({"timed_out": False})

    async def test() -> None:
        runner, url = await _serve(handler)
        try:
            async with ClientSession(connector=TCPConnector(limit=1)) as s:
                for _ in range(2):  # and the connection serves the next request as before
                    async with s.post(url, data=b"x") as r:
                        assert await r.json() == {"timed_out": True}
        finally:
            await runner.cleanup()

    _run(test)


def test_a_client_that_goes_away_cancels_a_waiting_handler() -> None:
    cancelled = asyncio.Event()
    started = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return web.Response(text="never")

    async def test() -> None:
        runner, url = await _serve(handler)
        try:
            async with ClientSession(timeout=ClientTimeout(total=0.3)) as s:
                with pytest.raises(asyncio.TimeoutError):
                    async with s.post(url, data=b"x"):
                        pass
            assert started.is_set()
            await asyncio.wait_for(cancelled.wait(), 5)
        finally:
            await runner.cleanup()

    _run(test)


@pytest.mark.parametrize("wait_first", [False, True])
def test_a_handler_that_raises_is_a_500_and_the_connection_goes_on(wait_first: bool) -> None:
    calls: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        if wait_first:
            await asyncio.sleep(0.001)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return web.Response(text="fine")

    async def test() -> None:
        runner, url = await _serve(handler)
        try:
            async with ClientSession(connector=TCPConnector(limit=1)) as s:
                async with s.post(url, data=b"x") as r:
                    assert r.status == 500
                    assert "boom" not in await r.text()
                async with s.post(url, data=b"x") as r:
                    assert r.status == 200 and await r.text() == "fine"
        finally:
            await runner.cleanup()

    _run(test)


def test_other_coroutines_get_ordinary_tasks() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert eager.install(loop)
        try:
            ran: list[str] = []

            async def job() -> str:
                ran.append("started")
                return "done"

            task = loop.create_task(job(), name="ordinary")
            assert isinstance(task, asyncio.Task) and task.get_name() == "ordinary"
            assert ran == []  # scheduled, not run at once
            assert await task == "done"
        finally:
            loop.set_task_factory(None)

    asyncio.run(main())
