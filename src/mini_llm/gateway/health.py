"""`/health/live` and `/health/ready`: the probes of load balancers and orchestrators.

    /health/live    200 `{"status": "ok"}` while the process serves requests
    /health/ready   200 `{"status": "ready"}` when every store this gateway needs answers;
                    503 `{"status": "unready", "failing": ["redis"]}` naming the ones that
                    do not; 503 `{"status": "draining"}` once SIGTERM has begun the drain

The stores are the SQL store (`sqlite` or `postgresql`: the gateway keys' one, else the usage
ledger's) and the state backend when it is shared (`redis`). Each is pinged with a short
timeout, all at once; the verdict is kept for `ttl` seconds and probes arriving meanwhile share
it (or the one check under way), so a probe every 100 ms costs one round trip a second. Both
routes are open without a key (like `/health`) and say nothing but a status and store names.

The drain (`drain(delay)`, from SIGTERM, when `[server] drain_delay` is set): for `delay`
seconds the gateway still accepts and serves requests, but readiness answers 503 and every
answer says `Connection: close`, so that a load balancer's kept-alive connections end with an
answer instead of being closed under a request it is sending; only then does the server stop
listening and wait for what is in flight (aiohttp's shutdown, which also marks the drain).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import msgspec
from aiohttp import web

from ..state import StateBackend
from ..store import Store

__all__ = ["HEALTH", "HEALTH_PATHS", "Health", "Liveness", "Probe", "Readiness"]

log = logging.getLogger("mini_llm.gateway")

HEALTH_PATHS = ("/health/live", "/health/ready")


class Liveness(msgspec.Struct):
    status: Literal["ok"]


class Readiness(msgspec.Struct):
    status: Literal["ready", "unready", "draining"]
    failing: list[str] = msgspec.field(default_factory=list)


Probe = tuple[str, Callable[[], Awaitable[object]]]
"""A store's name and a call that raises (or hangs) when the store does not answer."""


class _Stores(Protocol):
    """What the probes are made from (the `Gateway`)."""

    state: StateBackend

    @property
    def sql_store(self) -> Store | None: ...

    @property
    def shares_state(self) -> bool: ...


def probes_for(stores: _Stores) -> list[Probe]:
    probes: list[Probe] = []
    store = stores.sql_store
    if store is not None:
        sql = store

        async def ping_sql() -> None:
            await sql.open()  # at once when open; else the first connection (a lazy ledger)
            await sql.fetch("SELECT 1")

        probes.append((store.engine, ping_sql))
    if stores.shares_state:
        state = stores.state
        probes.append(("redis", lambda: state.get("health:ping")))
    return probes


class Health:
    """The two probe routes; `draining` is set when the app begins its shutdown."""

    def __init__(self, probes: list[Probe], *, timeout: float = 0.5, ttl: float = 1.0) -> None:
        self.probes = probes
        self.timeout = timeout
        self.ttl = ttl
        self.draining = False
        self._verdict: list[str] = []
        self._checked = float("-inf")
        self._pending: asyncio.Future[list[str]] | None = None

    async def failing(self) -> list[str]:
        """The names of the stores that did not answer (kept `ttl` seconds)."""
        if time.monotonic() - self._checked < self.ttl:
            return self._verdict
        if self._pending is None or self._pending.done():  # else: share the check under way
            self._pending = asyncio.ensure_future(self._check())
        return await asyncio.shield(self._pending)  # a probe that gives up does not cancel it

    async def _check(self) -> list[str]:
        results = await asyncio.gather(
            *(self._ping(name, ping) for name, ping in self.probes), return_exceptions=True
        )
        verdict = [
            name for (name, _), ok in zip(self.probes, results, strict=True) if ok is not True
        ]
        if verdict != self._verdict:
            log.warning("readiness: %s", f"failing {', '.join(verdict)}" if verdict else "ready")
        self._verdict, self._checked = verdict, time.monotonic()
        return verdict

    async def _ping(self, name: str, ping: Callable[[], Awaitable[object]]) -> bool:
        try:
            await asyncio.wait_for(ping(), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # any failure, a timeout included, means "not ready"
            log.debug("readiness: %s does not answer: %s", name, type(e).__name__)
            return False
        return True

    async def live(self, request: web.Request) -> web.Response:
        return _json(Liveness("ok"), 200)

    async def ready(self, request: web.Request) -> web.Response:
        if self.draining:
            return _json(Readiness("draining"), 503)
        failing = await self.failing()
        if failing:
            return _json(Readiness("unready", list(failing)), 503)
        return _json(Readiness("ready"), 200)

    async def _begin_drain(self, app: web.Application) -> None:
        self.draining = True

    async def drain(self, delay: float) -> None:
        """Serve `delay` seconds more as a draining instance (see the module's docstring)."""
        self.draining = True
        log.info("draining: serving %.3g s more, closing each connection after its answer", delay)
        await asyncio.sleep(delay)

    def install(self, app: web.Application, add: Callable[[str, str, Any], None]) -> None:
        """Add the routes (through the app's `add`, trailing slashes and HEAD included) and
        mark the drain when the app shuts down (after SIGTERM, before in-flight requests end)."""
        add("GET", "/health/live", self.live)
        add("GET", "/health/ready", self.ready)
        app.on_shutdown.append(self._begin_drain)
        app[HEALTH] = self


HEALTH = web.AppKey("health", Health)


def _json(body: msgspec.Struct, status: int) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
