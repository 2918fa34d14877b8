"""The limits policy: reserve before the request goes upstream, settle when it ends
(`access/limits.py` says how; the budget to the cost the usage ledger records), and tell the
client where it stands in OpenAI's `x-ratelimit-*` headers, on every dialect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..access.limits import Limiter, Reservation
from .base import RequestInfo
from .usage import cost_of

__all__ = ["LimitsPolicy"]


class LimitsPolicy:
    wants_usage = True
    wants_cost = False
    """Tokens settle the tpm; the cost is worked out only for a key with a budget."""

    def __init__(self, limiter: Limiter, names: Callable[[str], tuple[str, ...]]) -> None:
        self.limiter = limiter
        self.names = names

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        key = info.notes.get("key")
        limiter = self.limiter
        call = info.call
        if call is None or not limiter.applies(key):
            return None
        if limiter.keys_only_in_memory and key is not None and key.budget_usd is None:
            # `limiter.quick(key)`: nothing that could wait, so no coroutine
            info.notes["reservation"] = limiter.admit_now(
                key, call.model, call.body, info.response_headers
            )
        else:
            info.notes["reservation"] = await limiter.admit(
                key, call.model, call.body, self.names, info.response_headers
            )
        return None

    def after(self, info: RequestInfo) -> None:
        res: Reservation | None = info.notes.get("reservation")
        if res is not None:
            served = info.target is not None  # it went upstream
            # the cost (also a cancelled stream's usage) only for a budget
            usd = cost_of(info, self.limiter.prices) if res.period else None
            self.limiter.settle(res, info.usage, served, usd)
