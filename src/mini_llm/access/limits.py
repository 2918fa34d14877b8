"""Limits and budgets, exact across instances: reserve before, settle after.

Every limit is a number in the state backend changed only by `reserve_many` (an atomic
check-and-add of every limit at once: one round trip to Redis; on the memory backend its
coroutine-free twins `reserve_now` and `add_now`, called on every request): a request
reserves 1 request (rpm), its estimated tokens (prompt estimate + its max output tokens, else
`default_max_tokens`) for tpm, 1 concurrent slot, and its estimated cost against the budget;
all or nothing (nothing is held when one is refused). When the answer ends it settles, in one
step too: tokens and cost to what the usage says (given back in full when nothing was served),
the slot freed. Concurrent requests can overshoot a limit by at most what they reserved,
never more, on one instance or many.

    rpm:{id}:{minute}   tpm:{id}:{minute}    per key, fixed one-minute windows
    conc:{id}                                 per key, requests in flight
    usd:{id}:{period}                         per key, seeded from the store's key_spend once
    mrpm:{model}:{minute}  mtpm:{model}:{minute}   [limits."provider/model"], every key

Budgets are priced with the usage price table (`usage/prices.py`, config overrides included):
a request reserves its estimated input tokens × the input price + its max output tokens × the
output price, at the dearest of the targets it may be served by, and settles to the cost the
usage ledger records. A budgeted key may not use a model without a price (a target that
could be served and not counted): 403 `model_not_priced`, naming the `[prices."…"]` to set.

State unreachable (`StateUnavailableError`): `on_store_error = "open"` lets requests pass
(one warning an outage, `passed_unchecked` counts them), `"closed"` refuses them with 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from ..canonical import Usage
from ..errors import PermissionDeniedError, RateLimitError
from ..state import StateBackend, StateUnavailableError
from ..state.memory import MemoryState
from ..store import StoreError
from ..usage.prices import PriceTable
from .keys import GatewayKey
from .store import KeyStore

__all__ = [
    "BudgetExceededError",
    "Limiter",
    "Reservation",
    "UnpricedModelError",
    "budget_period",
    "period_bounds",
]

log = logging.getLogger("mini_llm.access")

_WINDOW = 60.0
_INF = float("inf")
_encode = msgspec.json.encode


class BudgetExceededError(RateLimitError):
    type = "insufficient_quota"
    default_code = "insufficient_quota"


class UnpricedModelError(PermissionDeniedError):
    """A key with a budget asked for a model the price table does not know."""

    default_code = "model_not_priced"


class Reservation:
    """What one request holds: `held`, the `(state key, amount, limit, ttl)` it reserved
    (as `reserve_many` took them), and the kind of limit each one is (`kinds`)."""

    __slots__ = ("cells", "headers", "held", "key", "kinds", "model", "period", "tokens", "usd")

    def __init__(
        self,
        model: str = "",
        tokens: int = 0,
        key: GatewayKey | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.held: list[tuple[str, float, float, float]] = []
        self.kinds: Sequence[str] = ()
        self.cells: list[list[Any]] | None = None
        """On the memory path (`admit_now`): the counters held, in place of `held` (the
        kinds in `kinds`, the tokens in `tokens`, 1 of the others)."""
        self.headers: dict[str, str] = {} if headers is None else headers
        """The `x-ratelimit-*` headers (filled in the dict given, the answer's own)."""
        self.model = model
        self.tokens = tokens
        self.usd = 0.0
        self.key = key
        self.period = ""


class _KeyLimits:
    """A key's own limits in one window, as `reserve_many` takes them (a tokens limit's
    amount set per request): worked out once per key and minute, not per request. A reloaded
    key is a new object: its limits are worked out again."""

    __slots__ = (
        "amounts",
        "cells",
        "cells_until",
        "ends",
        "items",
        "key",
        "kinds",
        "limits",
        "shown",
        "starts",
        "tokens_at",
        "window",
    )

    def __init__(self, key: GatewayKey, window: int) -> None:
        self.key = key
        self.window = window
        self.starts, self.ends = window * _WINDOW, (window + 1) * _WINDOW
        """The window's bounds (the limiter's clock)."""
        items: list[tuple[str, float, float, float]] = []
        kinds: list[str] = []
        if key.rpm is not None:
            items.append((f"rpm:{key.id}:{window}", 1, key.rpm, _WINDOW * 2))
            kinds.append("requests")
        if key.tpm is not None:
            items.append((f"tpm:{key.id}:{window}", 0, key.tpm, _WINDOW * 2))
            kinds.append("tokens")
        if key.max_concurrency is not None:
            items.append((f"conc:{key.id}", 1, key.max_concurrency, 3600.0))
            kinds.append("concurrency")
        self.items = tuple(items)
        self.kinds = tuple(kinds)
        self.amounts = tuple(item[1] for item in items)
        self.limits = tuple(item[2] for item in items)
        self.tokens_at = kinds.index("tokens") if "tokens" in kinds else -1
        """Where the tokens limit is in `items` (its amount is each request's own), or -1."""
        self.shown = tuple(
            (i, item[2], _HEADERS[kind], str(item[2]))
            for i, (item, kind) in enumerate(zip(items, kinds, strict=True))
            if kind in _HEADERS
        )
        """What the headers show: (index, limit, header names, the limit as text)."""
        self.cells: list[list[Any]] = []
        """The memory backend's counters of `items` (`MemoryState.cell`), once asked."""
        self.cells_until = 0.0
        """When the first of `cells` expires (the memory backend's clock): ask again then."""

    def fetch(self, memory: MemoryState) -> list[list[Any]]:
        """`cells`, asked of the memory backend again."""
        cells = self.cells = [memory.cell(name, ttl) for name, _, _, ttl in self.items]
        self.cells_until = min(cell[1] or _INF for cell in cells)  # 0: never expires
        return cells

    def show(self, values: list[float], reset: str, headers: dict[str, str]) -> None:
        """The rate-limit headers of `shown`, with the counters' `values` and `reset`."""
        for i, limit, (limit_name, remaining_name, reset_name), text in self.shown:
            remaining = limit - values[i]
            headers[limit_name] = text
            headers[remaining_name] = str(int(remaining)) if remaining > 0 else "0"
            headers[reset_name] = reset

    def wanted(self, tokens: int) -> list[tuple[str, float, float, float]]:
        """The items to reserve for a request of `tokens` estimated tokens."""
        wanted = list(self.items)
        at = self.tokens_at
        if at >= 0:
            name, _, limit, ttl = wanted[at]
            wanted[at] = (name, tokens, limit, ttl)
        return wanted


_HEADERS = {
    kind: tuple(f"x-ratelimit-{what}-{name}" for what in ("limit", "remaining", "reset"))
    for kind, name in (
        ("requests", "requests"),
        ("m-requests", "requests"),
        ("tokens", "tokens"),
        ("m-tokens", "tokens"),
    )
}
"""The headers that tell a kind of limit (the limit, what remains, when it resets)."""


_REQUESTS = frozenset(("requests", "m-requests"))
_TOKENS = frozenset(("tokens", "m-tokens"))


def budget_period(kind: str, now: float) -> tuple[str, float]:
    """The name of the budget period `now` is in and when it ends (Unix seconds, UTC; inf
    for `total`)."""
    name, _, end = period_bounds(kind, now)
    return name, end


def period_bounds(kind: str, now: float) -> tuple[str, float, float]:
    """The budget period `now` is in: its name, start and end (Unix seconds, UTC; 0 and inf
    for `total`)."""
    day = datetime.fromtimestamp(now, timezone.utc).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    if kind == "day":
        return day.strftime("d%Y-%m-%d"), day.timestamp(), (day + timedelta(days=1)).timestamp()
    if kind == "week":
        start = day - timedelta(days=day.weekday())
        return (
            start.strftime("w%Y-%m-%d"),
            start.timestamp(),
            (start + timedelta(days=7)).timestamp(),
        )
    if kind == "month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return start.strftime("m%Y-%m"), start.timestamp(), end.timestamp()
    return "total", 0.0, _INF


def _reset(seconds: float) -> str:
    return f"{max(seconds, 0.001):.3f}".rstrip("0").rstrip(".") + "s"


_OUTPUT_LIMITS = ("max_completion_tokens", "max_tokens", "max_output_tokens")


def _requested_output(body: Mapping[str, Any]) -> int | None:
    for name in _OUTPUT_LIMITS:
        value = body.get(name)
        if value.__class__ is int and value > 0:  # a whole number, not a bool
            return value
    return None


class Limiter:
    def __init__(
        self,
        state: StateBackend,
        keys: KeyStore | None,
        *,
        on_store_error: str = "open",
        default_max_tokens: int = 4096,
        model_limits: Mapping[str, Mapping[str, int]] | None = None,
        prices: PriceTable | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self._memory = state if isinstance(state, MemoryState) else None
        """The memory backend never waits: reserved and settled without a coroutine."""
        self.keys = keys
        self.closed = on_store_error == "closed"
        self.default_max_tokens = default_max_tokens
        self.model_limits = dict(model_limits or {})
        self.keys_only_in_memory = self._memory is not None and not self.model_limits
        """The memory backend and no model limits: a key without a budget is admitted by
        `admit_now` (`quick`)."""
        self.prices = prices if prices is not None else PriceTable()
        self.clock = clock
        self.passed_unchecked = 0
        """Requests let through unchecked while the state store was unreachable."""
        self._outage = False
        self._seeded: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._plans: dict[str, _KeyLimits] = {}
        self._tick = -1
        self._tick_reset = ""

    def applies(self, key: GatewayKey | None) -> bool:
        """Whether a request with `key` has anything to reserve (none: skip it all)."""
        if self.model_limits:
            return True
        return key is not None and (
            key.rpm is not None
            or key.tpm is not None
            or key.max_concurrency is not None
            or key.budget_usd is not None
        )

    def estimate(self, body: Mapping[str, Any]) -> tuple[int, int]:
        """(prompt tokens, output tokens) a request may use at most, estimated: its messages
        (or input, or prompt) and system as JSON, about 4 bytes a token."""
        prompt = body.get("messages")
        if prompt is None:
            prompt = body.get("input", body.get("prompt", ""))
        size = len(prompt.encode()) if isinstance(prompt, str) else len(_encode(prompt))
        system = body.get("system")
        if system is not None:
            size += len(system.encode()) if isinstance(system, str) else len(_encode(system))
        estimate = (size + 3) // 4 if size else 0
        return estimate, _requested_output(body) or self.default_max_tokens

    def quick(self, key: GatewayKey | None) -> bool:
        """Whether `admit_now` serves a request with `key`: the memory backend, no model
        limits, no budget (nothing to seed or price, nothing that could wait)."""
        return self.keys_only_in_memory and key is not None and key.budget_usd is None

    def admit_now(
        self,
        key: GatewayKey,
        model: str,
        body: Mapping[str, Any],
        headers: dict[str, str] | None = None,
    ) -> Reservation:
        """`admit` without a coroutine, where `quick(key)` says it may: the key's own limits
        on the memory backend, which never waits."""
        memory = self._memory
        assert memory is not None
        now = self.clock()
        plan = self._plans.get(key.id)
        if plan is None or plan.key is not key or not plan.starts <= now < plan.ends:
            plan = self._plans[key.id] = _KeyLimits(key, int(now // _WINDOW))
        window = plan.window
        prompt, output = self.estimate(body)
        tokens = prompt + output
        res = Reservation(model, tokens, key, headers)
        items = plan.items
        if not items:
            return res
        cells = plan.cells
        if not cells or memory.now() >= plan.cells_until:
            cells = plan.fetch(memory)
        # the memory backend's reserve_now on the key's own counters, changed in place
        at = plan.tokens_at
        amounts, limits = plan.amounts, plan.limits
        values: list[float] = []
        admitted = True
        for i, cell in enumerate(cells):
            value = cell[0]
            values.append(value)
            amount = tokens if i == at else amounts[i]
            if amount > 0 and value + amount > limits[i]:
                admitted = False
        if admitted:
            for i, cell in enumerate(cells):
                cell[0] = values[i] = values[i] + (tokens if i == at else amounts[i])
            res.cells = cells
            res.kinds = plan.kinds
        reset = self._tick_reset if int(now * 100) == self._tick else self._reset_text(now, window)
        plan.show(values, reset, res.headers)
        if not admitted:
            res.held, res.kinds = plan.wanted(tokens), plan.kinds
            self._refuse(res, values, now, window, _INF)
        return res

    async def admit(
        self,
        key: GatewayKey | None,
        model: str,
        body: Mapping[str, Any],
        names: Callable[[str], tuple[str, ...]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reservation:
        """Reserve what the request may use, or raise a 429 (`BudgetExceededError` for a
        budget) holding nothing; `UnpricedModelError` (403) for a budgeted key on a model
        without a price. `names(model)`: the targets' labels, then `model` (asked only for
        model limits and budgets); the `x-ratelimit-*` headers go into `headers`."""
        if key is not None and self.quick(key):
            return self.admit_now(key, model, body, headers)
        now = self.clock()
        window = int(now // _WINDOW)
        prompt, output = self.estimate(body)
        tokens = prompt + output
        res = Reservation(model, tokens, key, headers)
        wanted = res.held  # (state key, amount, limit, ttl), as reserve_many takes them
        kinds: list[str] = []
        res.kinds = kinds
        budget = None
        plan = None
        if key is not None:
            plan = self._plans.get(key.id)
            if plan is None or plan.key is not key or plan.window != window:
                plan = self._plans[key.id] = _KeyLimits(key, window)
            wanted.extend(plan.wanted(tokens))
            kinds.extend(plan.kinds)
            budget = key.budget_usd
        targets: tuple[str, ...] = (model,)
        if names is not None and (budget is not None or self.model_limits):
            targets = names(model)
        if self.model_limits:
            self._model_limits(targets, window, tokens, wanted, kinds)
        ends = _INF
        try:
            if key is not None and budget is not None:
                res.period, ends = budget_period(key.budget_period, now)
                res.usd = self._estimated_cost(targets, prompt, output)
                bkey = f"usd:{key.id}:{res.period}"
                ttl = 0.0 if ends == _INF else ends - now + 86400.0
                await self._seed(key, res.period, bkey, ttl)
                wanted.append((bkey, res.usd, budget, ttl))
                kinds.append("budget")
            if not wanted:
                return res
            # all or nothing, in one step (one round trip to Redis)
            memory = self._memory
            if memory is not None:
                admitted, values = memory.reserve_now(wanted)
            else:
                admitted, values = await self.state.reserve_many(wanted)
        except (StateUnavailableError, StoreError) as e:
            return self._unavailable(e, res)
        if self._outage:
            self._outage = False
            log.warning("limits: the state store is reachable again; limits are exact again")
        reset = self._reset_text(now, window)
        if plan is not None and not self.model_limits:  # one limit of a kind: no tightest
            plan.show(values, reset, res.headers)
        else:
            self._headers(res, values, reset)
        if not admitted:
            self._refuse(res, values, now, window, ends)
        return res

    def _refuse(
        self, res: Reservation, values: list[float], now: float, window: int, ends: float
    ) -> None:
        """Raise the refusal of the first limit the request would pass (`values`: the ones
        the refusal was decided on); nothing is held."""
        key = res.key
        kind, limit, value = next(
            (kind, limit, value)
            for (_, amount, limit, _), value, kind in zip(res.held, values, res.kinds, strict=True)
            if amount > 0 and value + amount > limit
        )
        res.held, res.kinds = [], ()  # nothing is held
        if kind == "budget":
            assert key is not None
            until = (
                "it has no period: it does not reset"
                if ends == _INF
                else "it resets at "
                + datetime.fromtimestamp(ends, timezone.utc).isoformat(timespec="seconds")
            )
            retry_budget = str(math.ceil(ends - now)) if ends != _INF else "86400"
            raise BudgetExceededError(
                f"This key's {key.budget_period} budget of ${limit:g} is spent "
                f"(${value:.4f} used or reserved; this request may cost ${res.usd:.4f}); "
                f"{until}.",
                headers={"Retry-After": retry_budget},
            )
        retry = 1 if kind == "concurrency" else math.ceil((window + 1) * _WINDOW - now)
        raise RateLimitError(
            _refusal(kind, limit, key, res.model),
            headers={"Retry-After": str(retry), **res.headers},
        )

    def _model_limits(
        self,
        targets: tuple[str, ...],
        window: int,
        tokens: int,
        wanted: list[tuple[str, float, float, float]],
        kinds: list[str],
    ) -> None:
        """The `[limits."provider/model"]` of the names a request may be served by."""
        for name in dict.fromkeys(targets):
            limits = self.model_limits.get(name)
            if limits is None:
                continue
            if "rpm" in limits:
                wanted.append((f"mrpm:{name}:{window}", 1, limits["rpm"], _WINDOW * 2))
                kinds.append("m-requests")
            if "tpm" in limits:
                wanted.append((f"mtpm:{name}:{window}", tokens, limits["tpm"], _WINDOW * 2))
                kinds.append("m-tokens")

    def _reset_text(self, now: float, window: int) -> str:
        """When this window resets, as the headers say it ("12.345s"): worked out once per
        10 ms (a tick never spans two windows: a window is 6000 of them)."""
        tick = int(now * 100)
        if tick != self._tick:
            self._tick = tick
            self._tick_reset = _reset((window + 1) * _WINDOW - now)
        return self._tick_reset

    def _estimated_cost(self, names: tuple[str, ...], prompt: int, output: int) -> float:
        """The most a request may cost at the dearest of its targets (`names`: the targets'
        labels, then the name asked); `UnpricedModelError` when one has no price."""
        most = 0.0
        for label in dict.fromkeys(names[:-1] or names):
            price = self.prices.find(label)
            if price is None:
                raise UnpricedModelError(
                    f"This key has a budget and the model '{label}' has no price, so its "
                    f'spending could not be counted: set [prices."{label}"] input_per_mtok '
                    "and output_per_mtok in the gateway's configuration, or use a priced model.",
                    param="model",
                )
            most = max(most, (prompt * price.input + output * price.output) / 1_000_000)
        return most

    async def _seed(self, key: GatewayKey, period: str, bkey: str, ttl: float) -> None:
        """The first use of a budget period anywhere starts its counter at what the store
        says was spent (so a budget survives restarts of the state backend)."""
        if bkey in self._seeded or self.keys is None:
            return
        first = await self.state.incr("seed:" + bkey, 1, ttl or None)
        if first == 1:
            spent = await self.keys.spent(key.id, period)
            if spent:
                await self.state.incr(bkey, spent, ttl or None)
        self._seeded.add(bkey)

    def _unavailable(self, error: Exception, res: Reservation) -> Reservation:
        if self.closed:
            raise RateLimitError(
                "Limits cannot be checked: the gateway's state store is unreachable "
                '([limits] on_store_error = "closed"). Try again shortly.',
                headers={"Retry-After": "1"},
            )
        self.passed_unchecked += 1
        if not self._outage:
            self._outage = True
            log.warning(
                "limits: the state store is unreachable (%s); requests pass unchecked "
                '([limits] on_store_error = "open") until it is back',
                error,
            )
        return Reservation()

    @staticmethod
    def _headers(res: Reservation, values: list[float], reset: str) -> None:
        """The tightest requests and tokens limits, in the `x-ratelimit-*` headers."""
        headers = res.headers
        for (_, _, limit, _), value, kind in zip(res.held, values, res.kinds, strict=True):
            names = _HEADERS.get(kind)
            if names is None:
                continue
            remaining = int(limit - value)
            if remaining < 0:
                remaining = 0
            previous = headers.get(names[1])
            if previous is not None and int(previous) <= remaining:
                continue  # the tightest limit is the one shown
            headers[names[0]] = str(int(limit))
            headers[names[1]] = str(remaining)
            headers[names[2]] = reset

    def settle(
        self, res: Reservation, usage: Usage | None, served: bool, usd: float | None = None
    ) -> None:
        """The answer ended: tokens to the real usage, the budget to `usd` (what the ledger
        records it cost; None: unknown, the reservation kept when it was served), the slot
        freed. `after` hooks must not wait: the memory backend is changed at once (it never
        waits), anything else in a task."""
        cells = res.cells
        if cells is not None:  # the memory path: its counters changed in place
            real = usage.prompt_tokens + usage.output_tokens if usage is not None else None
            kinds = res.kinds
            for i, cell in enumerate(cells):
                kind = kinds[i]
                if kind == "tokens":  # nothing served: all back; served without usage: kept
                    change = real - res.tokens if real is not None else 0 if served else -res.tokens
                elif kind == "requests" and served:
                    continue  # a request that went upstream counts
                else:  # a slot freed, or a request that never went upstream
                    change = -1
                if change:
                    value = cell[0] + change
                    cell[0] = value if value > 0.0 else 0.0
            res.cells = None
            return
        if not res.held:
            return
        memory = self._memory
        if memory is not None and not res.period:  # no budget: changed at once, nothing kept
            for k, delta, _, ttl in self._changes(res, usage, served, None):
                memory.add_now(k, delta, ttl)
            return
        changes = self._changes(res, usage, served, usd)
        spent = 0.0
        if res.period and res.key is not None and self.keys is not None:
            spent = usd if usd is not None else (res.usd if served else 0.0)
        if not changes and not spent:
            return
        if memory is not None and not spent:
            for k, delta, _, ttl in changes:
                memory.add_now(k, delta, ttl)
            return
        task = asyncio.get_running_loop().create_task(self._apply(res, changes, spent))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def release(self, res: Reservation) -> None:
        """Give back everything held (a request that never went upstream)."""
        self.settle(res, None, False)
        res.held, res.kinds, res.cells = [], (), None

    @staticmethod
    def _changes(
        res: Reservation, usage: Usage | None, served: bool, real_usd: float | None
    ) -> list[tuple[str, float, float, float]]:
        """What settling changes: (state key, delta, no limit, ttl) per limit held."""
        real_tokens = usage.prompt_tokens + usage.output_tokens if usage is not None else None
        changes: list[tuple[str, float, float, float]] = []
        for (k, amount, _, ttl), kind in zip(res.held, res.kinds, strict=True):
            if kind in _REQUESTS:
                if served:
                    continue
                delta = -amount  # a request that never went upstream does not count
            elif kind in _TOKENS:
                if real_tokens is not None:
                    delta = real_tokens - amount
                else:  # nothing served: all back; served without usage: kept
                    delta = 0 if served else -amount
            elif kind == "concurrency":
                delta = -amount
            else:  # the budget
                delta = real_usd - amount if real_usd is not None else 0 if served else -amount
            if delta:
                changes.append((k, delta, _INF, ttl))
        return changes

    async def _apply(
        self, res: Reservation, changes: list[tuple[str, float, float, float]], spent: float
    ) -> None:
        if changes:
            with contextlib.suppress(StateUnavailableError):  # the window's TTL mends it
                await self.state.reserve_many(changes)
        if spent and res.key is not None and self.keys is not None:
            try:
                await self.keys.add_spend(res.key.id, res.period, spent)
            except StoreError as e:
                log.warning("spend of %s not recorded: %s", res.key.label, e)

    async def usage_of(self, key: GatewayKey) -> dict[str, Any]:
        """What a key uses now: this minute's requests and tokens, requests in flight,
        spend (settled and reserved) in its budget period."""
        now = self.clock()
        window = int(now // _WINDOW)
        period, _ = budget_period(key.budget_period, now)

        async def number(name: str) -> float:
            raw = await self.state.incr(name, 0, 120.0)
            return raw

        out: dict[str, Any] = {"period": period}
        try:
            out["requests_this_minute"] = int(await number(f"rpm:{key.id}:{window}"))
            out["tokens_this_minute"] = int(await number(f"tpm:{key.id}:{window}"))
            out["in_flight"] = int(await number(f"conc:{key.id}"))
            out["spend_usd"] = round(await number(f"usd:{key.id}:{period}"), 6)
        except StateUnavailableError:
            out["state"] = "unreachable"
        if self.keys is not None:
            try:
                out["spend_settled_usd"] = round(await self.keys.spent(key.id, period), 6)
            except StoreError:
                out["store"] = "unreachable"
        return out


def _refusal(kind: str, limit: float, key: GatewayKey | None, model: str) -> str:
    who = f"this key ({key.label})" if key is not None else "this gateway"
    if kind == "requests":
        return f"Rate limit reached for {who}: {limit:g} requests per minute."
    if kind == "tokens":
        return f"Rate limit reached for {who}: {limit:g} tokens per minute."
    if kind == "concurrency":
        return f"Rate limit reached for {who}: {limit:g} requests at once."
    unit = "requests" if kind == "m-requests" else "tokens"
    return f"Rate limit reached for {model}: {limit:g} {unit} per minute, shared by every key."
