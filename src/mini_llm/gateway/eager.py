"""Each request's handler started at once, not one loop turn later (Python 3.11).

aiohttp runs every request's handler in a task of its own (so that context variables set by
one request do not leak into the next on the same connection). On Python 3.12 and later it
starts that task eagerly; on 3.11 `loop.create_task` only schedules it: the handler begins on
the loop's next turn, and the connection's task wakes up on the turn after it ends. That is two
loop turns (an `epoll_wait` each) and a task per request, for handlers that mostly finish
without ever waiting: a cache hit, a local answer, an error.

`install(loop)` sets a task factory that, for aiohttp's request coroutine only, does what 3.12
does: the coroutine runs at once, in a copy of the current context, up to its first wait. One
that finishes there gives back a finished future (no task, no loop turn); one that waits is
continued by a task in the same context, from where it stopped. Every other coroutine gets an
ordinary task. Until its first wait the handler sees the connection's task as the current
one (3.12 would show its own): a cancel aimed at it (a timeout entered before that first wait)
reaches the handler all the same, through the task the connection awaits.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any

from aiohttp.web_protocol import RequestHandler

__all__ = ["install"]

_REQUEST = RequestHandler._handle_request.__code__
_STARTED: Any = object()
_Task: Any = asyncio.Task  # (its `context` argument is 3.11's; this module acts on 3.11 only)
_ACTS: bool = sys.version_info[:2] == (3, 11)


class _Continued(Coroutine[Any, Any, Any]):
    """A coroutine already run up to a wait, for a task to go on with: the task's first step
    gets what the coroutine waits on; every later one is the coroutine's own."""

    __slots__ = ("_coro", "_waits_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waits_on: Any) -> None:
        self._coro = coro
        self._waits_on = waits_on

    def send(self, value: Any) -> Any:
        waits_on = self._waits_on
        if waits_on is not _STARTED:
            self._waits_on = _STARTED
            return waits_on
        return self._coro.send(value)

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> Any:
        # (the task throws only a cancellation: into the coroutine, where it waits)
        self._waits_on = _STARTED
        error = typ if isinstance(typ, BaseException) else typ() if val is None else val
        assert isinstance(error, BaseException)
        return self._coro.throw(error)

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:  # pragma: no cover - a task steps it
        raise TypeError("a continued request coroutine is run by its task, not awaited")


def _start(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    context: contextvars.Context | None,
) -> asyncio.Future[Any]:
    context = contextvars.copy_context() if context is None else context
    try:
        waits_on = context.run(coro.send, None)
    except StopIteration as done:
        finished = loop.create_future()
        finished.set_result(done.value)
        return finished
    except asyncio.CancelledError:
        cancelled = loop.create_future()
        cancelled.cancel()
        return cancelled
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        failed = loop.create_future()
        failed.set_exception(e)
        return failed
    task: asyncio.Future[Any] = _Task(_Continued(coro, waits_on), loop=loop, context=context)
    return task


def _factory(
    loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    context: contextvars.Context | None = None,
    **kwargs: Any,
) -> asyncio.Future[Any]:
    if getattr(coro, "cr_code", None) is _REQUEST:
        return _start(loop, coro, context)
    task: asyncio.Future[Any] = _Task(coro, loop=loop, context=context, **kwargs)
    return task


def install(loop: asyncio.AbstractEventLoop) -> bool:
    """Start aiohttp's request handlers eagerly on `loop` (Python 3.11 only: later versions do
    it themselves, 3.10's tasks take no context), unless the loop has a task factory already.
    Whether it did."""
    if not _ACTS or loop.get_task_factory() is not None:
        return False
    loop.set_task_factory(_factory)  # type: ignore[arg-type]
    return True
