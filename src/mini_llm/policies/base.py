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
a policy keeps between its `before` and `after`, under its own key. A policy whose `before`
does nothing (it only watches) sets `acts_before = False` (optional) and is not called then;
one whose `after` does nothing (it only checks) sets `acts_after = False` the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..canonical import Usage

if TYPE_CHECKING:
    from ..call import Call
    from ..routing.router import Target

__all__ = ["Given", "Policy", "PolicyChain", "RequestInfo"]


class RequestInfo:
    """One request as policies see it; filled as it goes."""

    __slots__ = (
        "answer_body",
        "answer_text",
        "attempts",
        "cache_hit",
        "call",
        "completion",
        "cost",
        "costed",
        "delivered",
        "dialect",
        "endpoint",
        "error_code",
        "first_byte",
        "headers",
        "keep_answer",
        "key_id",
        "notes",
        "overhead",
        "owner",
        "request_id",
        "response_headers",
        "started",
        "status",
        "stream_cancelled",
        "target",
        "trace",
        "usage",
    )

    def __init__(
        self,
        request_id: str,
        endpoint: str,
        dialect: str,
        headers: Mapping[str, str] | None = None,
        owner: str = "",
        started: float | None = None,
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
        self.notes: dict[str, Any] = {}
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
        self.trace: Any = None
        """What a tracing policy keeps between `before` and `after`."""
        self.delivered = 0
        """Characters of answer text sent so far on a stream (for a cancelled stream's
        estimate); counted only when a policy wants usage."""
        self.keep_answer = 0
        """Up to how many bytes of the answer to keep for a policy (the access log's bodies,
        from `PolicyChain.keep_answer`); 0: none, and nothing is kept."""
        self.answer_body: bytes | None = None
        """A whole answer's bytes as the client got them (when `keep_answer`)."""
        self.answer_text: list[str] | None = None
        """A stream's answer text as delivered, up to `keep_answer` characters (when set)."""
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


class Given(Protocol):
    """An answer a policy gives at once as canonical JSON bytes (a cache hit): a client of
    the canonical format gets the bytes as they are, any other the decoded answer."""

    @property
    def data(self) -> bytes: ...

    @property
    def completion(self) -> dict[str, Any]: ...


class Policy(Protocol):
    wants_usage: bool

    async def before(self, info: RequestInfo) -> dict[str, Any] | Given | None:
        """None to go on; a canonical answer (a dict, or `Given` bytes) to answer at once;
        raise to refuse."""
        ...

    def after(self, info: RequestInfo) -> None:
        """The request is over; must not raise or block (queue slow work)."""
        ...


class PolicyChain:
    __slots__ = (
        "_acting",
        "_watching",
        "keep_answer",
        "policies",
        "reads_usage",
        "wants_completion",
        "wants_cost",
        "wants_usage",
    )

    def __init__(self, policies: Sequence[Policy] = ()) -> None:
        self.policies = tuple(policies)
        self._acting = tuple(p for p in self.policies if getattr(p, "acts_before", True))
        """The policies whose `before` does something, in order."""
        self._watching = tuple(p for p in self.policies if getattr(p, "acts_after", True))
        """The policies whose `after` does something, in order."""
        self.keep_answer: int = max(
            (getattr(p, "keep_answer", 0) for p in self.policies), default=0
        )
        """Up to how many bytes of each answer a policy wants kept (`info.keep_answer`)."""
        self.wants_completion = any(getattr(p, "wants_completion", False) for p in self.policies)
        self.reads_usage = any(p.wants_usage for p in self.policies)
        """A policy reads `info.usage` (not only the whole answer)."""
        self.wants_usage = self.wants_completion or self.reads_usage
        self.wants_cost = any(
            getattr(p, "wants_cost", p.wants_usage or getattr(p, "wants_completion", False))
            for p in self.policies
        )
        """A policy counts what answers cost (the ledger, metrics, logs), so the answer says
        it too (`x-mini-llm-cost-usd`); one that reads usage for tokens alone says
        `wants_cost = False` (the limits: a budget works its cost out itself)."""

    def __bool__(self) -> bool:
        return bool(self.policies)

    async def before(self, info: RequestInfo) -> dict[str, Any] | Given | None:
        for policy in self._acting:
            answer = await policy.before(info)
            if answer is not None:
                return answer
        return None

    def after(self, info: RequestInfo) -> None:
        for policy in self._watching:
            policy.after(info)
