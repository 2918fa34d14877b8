"""Binding, running and stopping the gateway server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable

from aiohttp import web

from ..config import ConfigError, Settings, plan_reload, reload_settings
from .app import GATEWAY, Gateway, build_app
from .connections import GatewayRunner
from .eager import install as install_eager
from .health import HEALTH

__all__ = ["BindError", "bind_socket", "bind_worker_sockets", "run", "serve", "url_for"]

log = logging.getLogger("mini_llm.server")


class BindError(OSError):
    def __str__(self) -> str:
        return self.strerror or super().__str__()  # the message, without "[Errno 98]"


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def _bind_one(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    last: OSError | None = None
    for family, type_, proto, _, addr in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
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
    tried = (
        f"ports {port}-{last_port} on {host} are all"
        if last_port != port
        else f"port {port} on {host} is"
    )
    raise BindError(
        errno.EADDRINUSE, f"{tried} in use; choose another with --port or MINI_LLM_PORT"
    )


def bind_worker_sockets(host: str, port: int, retries: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one port with SO_REUSEPORT: the kernel spreads connections.

    The port is chosen by an exclusive bind first (so that we never join another process's
    SO_REUSEPORT group by accident), released, and bound again `count` times at once; if
    someone takes it in between, the whole choice starts over.
    """
    for _ in range(5):
        probe = bind_socket(host, port, retries)
        chosen = probe.getsockname()[1]
        probe.close()
        socks: list[socket.socket] = []
        try:
            for _ in range(count):
                socks.append(_bind_one(host, chosen, reuse_port=True))
            return socks
        except OSError as e:
            for sock in socks:
                sock.close()
            if e.errno != errno.EADDRINUSE:
                raise BindError(e.errno, f"cannot listen on {url_for(host, chosen)}: {e}") from e
    raise BindError(errno.EADDRINUSE, f"could not hold a port on {host} for the workers")


async def serve(
    settings: Settings,
    *,
    ready: Callable[[str, int], None] | None = None,
    stop: asyncio.Event | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (or `stop` is set), then close cleanly.

    `sock` is an already listening socket (a worker's); without it the configured port is bound.
    """
    app = build_app(settings)
    watch: asyncio.Task[None] | None = None
    eager = install_eager(asyncio.get_running_loop())  # each handler started at once (3.11)
    # handler_cancellation: a client that goes away cancels its upstream call at once;
    # shutdown_timeout: on SIGTERM, in-flight requests and streams get this long to finish;
    # header timeout, connection caps, compressed bodies: see gateway.connections
    runner = GatewayRunner(
        app,
        settings,
        access_log=None,
        handle_signals=False,
        handler_cancellation=True,
        shutdown_timeout=settings.shutdown_grace,
    )
    await runner.setup()
    try:
        if sock is None:
            sock = bind_socket(settings.host, settings.port, settings.bind_retries)
        site = web.SockSite(runner, sock)
        await site.start()
        port = sock.getsockname()[1]
        if settings.port not in (0, port):
            log.warning("port %d was taken; listening on %d instead", settings.port, port)
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_gateway, app[GATEWAY])
        # a SIGHUP that came while this process was starting has waited, blocked (see `run`):
        # delivered now, once, to the handler just installed
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        if settings.watch_config and settings.config_path:
            # stamped now, before `ready`: a change made once we are listening is seen
            stamp = _stamp(settings.config_path)
            watch = asyncio.create_task(_watch_config(settings.config_path, app[GATEWAY], stamp))
        if ready is not None:
            ready(settings.host, port)
        await stop.wait()
        if settings.drain_delay:  # still serving, readiness 503, connections closed after use
            await app[HEALTH].drain(settings.drain_delay)
            await _stop_listening(site, runner, sock)
        log.info("stopping")
    finally:
        if watch is not None:
            watch.cancel()
        await runner.cleanup()
        if eager:
            asyncio.get_running_loop().set_task_factory(None)


async def _stop_listening(site: web.SockSite, runner: GatewayRunner, sock: socket.socket) -> None:
    """Stop accepting without resetting the connections the kernel has already completed.

    Closing a listening socket resets the connections queued on it, which a load balancer has
    already sent a request on (nginx does not send a POST again). So a duplicate keeps the
    socket open while the server stops; what is queued meanwhile is accepted and served; then
    it is closed, and the last connections get a moment to have their requests read (a
    connection with no request under way is closed by the shutdown that follows).
    """
    held = sock.dup()
    held.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await site.stop()
        for last in (False, False, True):  # closed right after the last look: no gap
            while True:
                try:
                    conn, _ = held.accept()
                except (BlockingIOError, InterruptedError):
                    break
                conn.setblocking(False)
                await loop.connect_accepted_socket(runner.server, conn)  # type: ignore[arg-type]
            if not last:
                await asyncio.sleep(0.05)
    finally:
        held.close()
    await asyncio.sleep(0.2)


def _stamp(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


async def _watch_config(
    path: str, gateway: Gateway, seen: tuple[int, int] | None, interval: float = 1.0
) -> None:
    """`[server] watch_config`: reload when the file's size or modification time changes."""
    while True:
        await asyncio.sleep(interval)
        now = _stamp(path)
        if now != seen and now is not None:
            seen = now
            reload_gateway(gateway)


def reload_gateway(gateway: Gateway) -> bool:
    """SIGHUP: read the configuration again as at start-up (same file, environment, flags)
    and switch to it if it is valid; else log every problem and keep serving the old one."""
    current = gateway.settings
    try:
        plan = plan_reload(current, reload_settings(current))
        gateway.reload(plan.settings)
    except ConfigError as e:
        log.error(
            "configuration not reloaded, still serving the previous one: %s", gateway.redact(str(e))
        )
        return False
    logging.getLogger("mini_llm").setLevel(plan.settings.log_level.upper())
    for warning in plan.settings.warnings:
        log.warning("%s", warning)
    if plan.needs_restart:
        log.warning(
            "configuration: %s changed but needs a restart to take effect",
            ", ".join(plan.needs_restart),
        )
    log.info(
        "configuration reloaded (fingerprint %s): %s",
        gateway.fingerprint,
        "changed " + ", ".join(plan.changed) if plan.changed else "nothing else changed",
    )
    return True


def run(
    settings: Settings, ready: Callable[[str, int], None] | None = None, workers: int = 1
) -> None:
    """Run `serve` on uvloop when it is installed; `workers` > 1 forks that many processes.

    SIGHUP is blocked until a process can handle it (workers inherit the mask): one sent while
    it starts waits and is delivered once. (A Python handler that remembered it would see it a
    second time through the event loop's wake-up file once the loop runs: two reloads.)
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        if workers > 1:
            _run_workers(settings, ready, workers)
            return
        _run_one(settings, ready)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _run_one(
    settings: Settings,
    ready: Callable[[str, int], None] | None = None,
    sock: socket.socket | None = None,
) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        asyncio.run(serve(settings, ready=ready, sock=sock))
        return
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(settings, ready=ready, sock=sock))
    else:  # pragma: no cover
        uvloop.install()
        asyncio.run(serve(settings, ready=ready, sock=sock))


_WORKER_STOP_MARGIN = 5.0  # seconds beyond the workers' own drain (drain_delay + shutdown_grace)


def _run_workers(
    settings: Settings, ready: Callable[[str, int], None] | None, workers: int
) -> None:
    """One process per worker, each with its own SO_REUSEPORT socket on the same port.

    The parent binds every socket (so that bind errors surface here, once), forks, closes its
    copies and only supervises: SIGINT/SIGTERM are passed on to the workers, which drain and
    exit; one that has not exited after a grace period is killed. A worker that dies on its own
    takes the others down too (exit status 1), so that whatever supervises the gateway sees it.
    Each worker has its own in-memory state; share state across workers through Redis.
    """
    socks = bind_worker_sockets(settings.host, settings.port, settings.bind_retries, workers)
    port = socks[0].getsockname()[1]
    # each worker publishes its metrics here; the one that answers a scrape adds them up
    metrics_dir = tempfile.mkdtemp(prefix="mini-llm-metrics-")
    settings = dataclasses.replace(settings, metrics_dir=metrics_dir)
    pids: list[int] = []
    for sock in socks:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the worker process
            code = 0
            try:
                for other in socks:
                    if other is not sock:
                        other.close()
                _run_one(settings, sock=sock)
            except KeyboardInterrupt:
                pass
            except BaseException:
                log.exception("worker %d failed", os.getpid())
                code = 1
            finally:
                logging.shutdown()
                os._exit(code)
        pids.append(pid)
    for sock in socks:
        sock.close()
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if not stopping:
            stopping.append(signum)
            _signal_all(pids, signal.SIGTERM)

    def reload(signum: int, frame: object) -> None:
        _signal_all(pids, signal.SIGHUP)  # each worker reloads (and logs) on its own

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, reload)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # one that waited: passed on
    try:
        log.info("%d workers (pids %s)", workers, ", ".join(map(str, pids)))
        if ready is not None:
            ready(settings.host, port)
        grace = settings.drain_delay + settings.shutdown_grace + _WORKER_STOP_MARGIN
        failed = _supervise(pids, stopping, grace)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if failed:
        raise SystemExit(1)


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _supervise(pids: list[int], stopping: list[int], grace: float) -> bool:
    """Wait until every worker has exited; True when one exited without being asked to."""
    alive = set(pids)
    failed = False
    deadline: float | None = None
    while alive:
        if stopping and deadline is None:
            deadline = time.monotonic() + grace
        try:
            # never a blocking wait: Python restarts an interrupted waitpid (PEP 475), so a
            # signal would not get us back here to start the kill deadline
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            if deadline is not None and time.monotonic() > deadline:
                log.warning("workers %s did not stop in time; killing them", sorted(alive))
                _signal_all(sorted(alive), signal.SIGKILL)
                deadline = float("inf")
            time.sleep(0.05 if deadline is not None else 0.2)
            continue
        if pid not in alive:
            continue
        alive.discard(pid)
        if not stopping:
            log.error("worker %d exited (status %d); stopping the others", pid, status)
            failed = True
            stopping.append(0)
            _signal_all(sorted(alive), signal.SIGTERM)
    return failed
