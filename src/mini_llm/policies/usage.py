"""The usage ledger policy: one record per request, on every path, appended to the ledger.

`settle(info, prices)` is shared by the policies that count usage (ledger, metrics, access
log, traces): once per request it gives a stream that ended before its usage came (the client
went away) an estimate flagged `exact=False` — the request's text and what was delivered, at
about 4 characters a token — and works out the cost (None when the model has no price).
"""

from __future__ import annotations

import time
from typing import Any

from ..canonical import Usage
from ..usage.ledger import Ledger
from ..usage.prices import PriceTable
from .base import RequestInfo

__all__ = ["UsageLedger", "cost_of", "estimate_input", "settle"]

_MODEL_CHARS = 256


def _text_length(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_length(v) for k, v in value.items() if k not in ("model", "type"))
    if isinstance(value, list):
        return sum(_text_length(v) for v in value)
    return 0


def estimate_input(body: dict[str, Any]) -> int:
    """About how many tokens a request's text makes (every string in it, 4 characters a token)."""
    chars = _text_length(body)
    return max(1, (chars + 3) // 4) if chars else 0


_NO_TOKENS = (0, 0, 0, 0, 0, 0)


def token_counts(usage: Usage | None) -> tuple[int, int, int, int, int, int]:
    """A record's token columns, in the ledger's order: input, output, cached input, cache
    write, of it the 1-hour write, reasoning."""
    if usage is None:
        return _NO_TOKENS
    return (
        usage.input_tokens,
        usage.output_tokens,
        usage.cached_input_tokens,
        usage.cache_write_tokens,
        usage.cache_write_1h_tokens,
        usage.reasoning_tokens,
    )


def settle(info: RequestInfo, prices: PriceTable) -> None:
    """Usage estimated where a stream ended without it; the cost worked out. Once."""
    if info.costed:
        return
    info.costed = True
    call = info.call
    if info.usage is None and call is not None and call.stream and info.status == 200:
        info.usage = Usage(
            input_tokens=estimate_input(call.body),
            output_tokens=(info.delivered + 3) // 4,
            exact=False,
        )
    if info.cache_hit:
        info.cost = 0.0  # answered by the gateway: nothing billed
    elif info.usage is not None and info.target is not None:
        info.cost = prices.cost(info.target.label, info.usage)


def cost_of(info: RequestInfo, prices: PriceTable) -> float | None:
    settle(info, prices)
    return info.cost


class UsageLedger:
    """Appends `info` as a ledger record (see `usage/ledger.py: COLUMNS`)."""

    wants_usage = True
    acts_before = False

    def __init__(self, ledger: Ledger, prices: PriceTable) -> None:
        self.ledger = ledger
        self.prices = prices

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        return None

    def after(self, info: RequestInfo) -> None:
        settle(info, self.prices)
        target = info.target
        usage = info.usage
        first = info.first_byte
        model = info.model
        self.ledger.append(
            (
                time.time_ns() // 1000,
                info.request_id,
                info.key_id,
                info.endpoint,
                info.dialect,
                model if len(model) <= _MODEL_CHARS else model[:_MODEL_CHARS],
                target.provider.name if target is not None else None,
                target.model if target is not None else None,
                info.status,
                info.error_code,
                info.attempts,
                (time.monotonic() - info.started) * 1000,
                (first - info.started) * 1000 if first is not None else None,
                info.overhead * 1000 if info.overhead is not None else None,
                *token_counts(usage),
                info.cost,
                1 if info.cache_hit else 0,
                1 if (usage.exact if usage is not None else info.status != 200) else 0,
                1 if info.stream_cancelled else 0,
            )
        )
