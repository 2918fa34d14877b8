"""Binding, running and stopping the gateway server."""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import sys
from collections.abc import Callable

from aiohttp import web

from ..config import Settings
from .app import build_app

__all__ = ["BindError", "bind_socket", "run", "serve", "url_for"]

log = logging.getLogger("mini_llm.server")


class BindError(OSError):
    pass


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _bind_one(host: str, port: int) -> socket.socket:
    last: OSError | None = None
    for family, type_, proto, _, addr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(1024)
            sock.setblocking(False)
            return sock
        except OSError as e:
            sock.close()
            last = e
    raise last or OSError(f"cannot resolve {host}")


def bind_socket(host: str, port: int, retries: int) -> socket.socket:
    """Bind `port`, or the next free one up to `retries` further; port 0 lets the OS choose.

    Binding is the test: there is no check-then-bind window for another process to race into.
    """
    last_port = port if port == 0 else min(port + retries, 65535)
    for candidate in range(port, last_port + 1):
        try:
            return _bind_one(host, candidate)
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise BindError(e.errno, f"cannot listen on {url_for(host, candidate)}: {e}") from e
            log.debug("port %d is in use", candidate)
    tried = f"ports {port}-{last_port}" if last_port != port else f"port {port}"
    raise BindError(errno.EADDRINUSE, f"{tried} on {host} are all in use")


async def serve(
    settings: Settings,
    *,
    ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set), then close cleanly."""
    app = build_app(settings)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=10.0)
    await runner.setup()
    try:
        sock = bind_socket(settings.host, settings.port, settings.port_retries)
        site = web.SockSite(runner, sock)
        await site.start()
        port = sock.getsockname()[1]
        if settings.port not in (0, port):
            log.warning("port %d was taken; listening on %d instead", settings.port, port)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready(settings.host, port)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()


def run(settings: Settings, ready: Callable[[str, int], None] | None = None) -> None:
    """Run `serve` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        asyncio.run(serve(settings, ready=ready))
        return
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(settings, ready=ready))
    else:  # pragma: no cover
        uvloop.install()
        asyncio.run(serve(settings, ready=ready))
