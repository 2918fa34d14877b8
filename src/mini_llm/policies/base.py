"""The policy seam: hooks around the dispatch, in one ordered chain.

    before(info)   before anything is routed: may raise a GatewayError (auth, limits) or
                   answer at once with a canonical answer (a cache hit)
    after(info)    once the request is over — the answer sent, the stream ended, or the error
                   rendered — with `info` complete: status, target, attempts, usage

`info.usage` is filled on every path (pass-through and translated, whole and streamed) when a
policy in the chain sets `wants_usage`; reading usage costs a decode on pass-through paths,
so it is only done then. An empty chain costs one attribute test per request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..canonical import Usage

if TYPE_CHECKING:
    from ..call import Call
    from ..routing.router import Target

__all__ = ["Policy", "PolicyChain", "RequestInfo"]


class RequestInfo:
    """One request as policies see it; filled as it goes."""

    __slots__ = (
        "attempts",
        "cache_hit",
        "call",
        "cost",
        "costed",
        "delivered",
        "dialect",
        "endpoint",
        "error_code",
        "first_byte",
        "headers",
        "key_id",
        "overhead",
        "request_id",
        "started",
        "status",
        "stream_cancelled",
        "target",
        "trace",
        "usage",
    )

    def __init__(
        self, request_id: str, endpoint: str, dialect: str, started: float | None = None
    ) -> None:
        self.request_id = request_id
        self.endpoint = endpoint
        self.dialect = dialect
        self.started = time.monotonic() if started is None else started
        """time.monotonic() when the request began."""
        self.first_byte: float | None = None
        """time.monotonic() when a stream's first bytes went to the client."""
        self.overhead: float | None = None
        """Seconds the gateway itself added (the upstream's time left out)."""
        self.cache_hit: bool | None = None
        """Set by a response cache: True when it answered, False when it looked and missed."""
        self.key_id: str | None = None
        """The gateway key that made the request (access control), if any."""
        self.cost: float | None = None
        self.costed = False
        """`cost` was worked out (None then means: no price known)."""
        self.headers: Mapping[str, str] | None = None
        """The client's request headers (a trace's `traceparent`)."""
        self.trace: Any = None
        """What a tracing policy keeps between `before` and `after`."""
        self.delivered = 0
        """Characters of answer text sent so far on a stream (for a cancelled stream's
        estimate); counted only when a policy wants usage."""
        self.call: Call | None = None
        self.target: Target | None = None
        self.attempts = 0
        self.status = 0
        self.error_code: str | None = None
        self.usage: Usage | None = None
        self.stream_cancelled = False

    @property
    def model(self) -> str:
        return self.call.model if self.call is not None else ""

    @property
    def latency(self) -> float:
        return time.monotonic() - self.started


class Policy(Protocol):
    wants_usage: bool

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        """None to go on; a canonical answer to answer at once; raise to refuse."""
        ...

    def after(self, info: RequestInfo) -> None:
        """The request is over; must not raise or block (queue slow work)."""
        ...


class PolicyChain:
    __slots__ = ("policies", "wants_usage")

    def __init__(self, policies: Sequence[Policy] = ()) -> None:
        self.policies = tuple(policies)
        self.wants_usage = any(p.wants_usage for p in self.policies)

    def __bool__(self) -> bool:
        return bool(self.policies)

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        for policy in self.policies:
            answer = await policy.before(info)
            if answer is not None:
                return answer
        return None

    def after(self, info: RequestInfo) -> None:
        for policy in self.policies:
            policy.after(info)
