"""The policy seam: hooks around the dispatch, in one ordered chain.

    before(info)   before anything is routed: may raise a GatewayError (auth, limits) or
                   answer at once with a canonical answer (a cache hit)
    after(info)    once the request is over — the answer sent, the stream ended, or the error
                   rendered — with `info` complete: status, target, attempts, usage

`info.usage` is filled on every path (pass-through and translated, whole and streamed) when a
policy in the chain sets `wants_usage`; reading usage costs a decode on pass-through paths,
so it is only done then. An empty chain costs one attribute test per request.

`info.completion` (the whole canonical answer, assembled from a stream when there was one) is
filled only for a complete, successful answer from upstream, and only when a policy sets
`wants_completion` (optional: a policy without the attribute does not want it) — the response
cache stores it. A policy reads the client's headers in `info.headers` and adds headers to
the answer through `info.response_headers` (set in `before`: a stream's headers leave with its
first event). `info.owner` is whose request it is (the gateway key's owner; "" until keys
exist); `info.cache_hit` says the answer came from the cache; `info.notes` is scratch space
a policy keeps between its `before` and `after`, under its own key.
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
        "completion",
        "dialect",
        "endpoint",
        "error_code",
        "first_byte",
        "headers",
        "notes",
        "owner",
        "request_id",
        "response_headers",
        "started",
        "status",
        "stream_cancelled",
        "target",
        "usage",
    )

    def __init__(
        self,
        request_id: str,
        endpoint: str,
        dialect: str,
        headers: Mapping[str, str] | None = None,
        owner: str = "",
    ) -> None:
        self.request_id = request_id
        self.headers: Mapping[str, str] = headers if headers is not None else {}
        """The client's request headers."""
        self.owner = owner
        """Whose request this is: the gateway key's owner ("" until gateway keys exist)."""
        self.response_headers: dict[str, str] = {}
        """Headers a policy adds to the answer (merged into it by the pipeline)."""
        self.completion: dict[str, Any] | None = None
        """The whole canonical answer, when a policy `wants_completion` and it was complete."""
        self.cache_hit = False
        self.notes: dict[str, Any] = {}
        self.endpoint = endpoint
        self.dialect = dialect
        self.started = time.monotonic()
        self.call: Call | None = None
        self.target: Target | None = None
        self.attempts = 0
        self.status = 0
        self.error_code: str | None = None
        self.usage: Usage | None = None
        self.first_byte: float | None = None
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
    __slots__ = ("policies", "wants_completion", "wants_usage")

    def __init__(self, policies: Sequence[Policy] = ()) -> None:
        self.policies = tuple(policies)
        self.wants_completion = any(getattr(p, "wants_completion", False) for p in self.policies)
        self.wants_usage = self.wants_completion or any(p.wants_usage for p in self.policies)

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
