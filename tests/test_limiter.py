"""The limiter in process, on the memory backend: what its per-key and per-tick caches must
never change (a key changed or reloaded is in force at once, a new minute starts afresh), the
tightest limit in the headers, and the estimate of a request's tokens."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mini_llm.access.keys import GatewayKey
from mini_llm.access.limits import Limiter, Reservation
from mini_llm.canonical import Usage
from mini_llm.errors import RateLimitError
from mini_llm.policies.base import PolicyChain, RequestInfo
from mini_llm.policies.limits import LimitsPolicy
from mini_llm.state.memory import MemoryState

_BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


class Clock:
    def __init__(self, now: float = 6_000_000.5) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _key(**limits: Any) -> GatewayKey:
    return GatewayKey(id="key_1", hash="h", last4="abcd", name="test", **limits)


def _admit(limiter: Limiter, key: GatewayKey | None, model: str = "m") -> Reservation:
    return asyncio.run(limiter.admit(key, model, _BODY, lambda m: (f"p/{m}", m), {}))


def test_a_changed_key_is_in_force_at_once() -> None:
    limiter = Limiter(MemoryState(), None, clock=Clock())
    key = _key(rpm=1)
    _admit(limiter, key)
    with pytest.raises(RateLimitError):
        _admit(limiter, key)
    raised = key.with_fields({"rpm": 3})  # what a PATCH or the 0.5 s reload gives
    assert _admit(limiter, raised).headers["x-ratelimit-remaining-requests"] == "1"
    lowered = key.with_fields({"rpm": 2})
    with pytest.raises(RateLimitError):
        _admit(limiter, lowered)


def test_a_new_minute_starts_afresh_and_says_when_it_resets() -> None:
    clock = Clock(6_000_000.0 + 59.5)
    limiter = Limiter(MemoryState(), None, clock=clock)
    key = _key(rpm=1)
    assert _admit(limiter, key).headers["x-ratelimit-reset-requests"] == "0.5s"
    with pytest.raises(RateLimitError) as refused:
        _admit(limiter, key)
    assert refused.value.headers is not None and refused.value.headers["Retry-After"] == "1"
    clock.now += 0.6  # the next window
    shown = _admit(limiter, key).headers
    assert shown["x-ratelimit-remaining-requests"] == "0"
    assert shown["x-ratelimit-reset-requests"] == "59.9s"


def test_the_tightest_limit_is_shown_and_the_first_one_passed_refuses() -> None:
    clock = Clock()
    limiter = Limiter(
        MemoryState(), None, model_limits={"p/m": {"rpm": 2, "tpm": 10**6}}, clock=clock
    )
    key = _key(rpm=5, tpm=100)
    shown = _admit(limiter, key).headers
    assert shown["x-ratelimit-limit-requests"] == "2"  # the model's, tighter than the key's
    assert shown["x-ratelimit-remaining-requests"] == "1"
    assert shown["x-ratelimit-limit-tokens"] == "100"  # the key's, tighter than the model's
    _admit(limiter, key)
    with pytest.raises(RateLimitError) as refused:
        _admit(limiter, key)
    assert refused.value.message.startswith("Rate limit reached for m: 2 requests per minute")


def test_settling_gives_back_what_was_not_used_and_a_refusal_holds_nothing() -> None:
    state = MemoryState()
    limiter = Limiter(state, None, clock=Clock())
    key = _key(tpm=40, max_concurrency=1)
    res = _admit(limiter, key)
    reserved = res.tokens
    assert reserved == limiter.estimate(_BODY)[0] + 10
    with pytest.raises(RateLimitError):  # the one slot is taken
        _admit(limiter, key)
    tpm = f"tpm:key_1:{int(6_000_000.5 // 60)}"
    assert asyncio.run(state.incr(tpm, 0)) == reserved  # the refused request holds nothing
    limiter.settle(res, Usage(input_tokens=3, output_tokens=2), True)
    assert asyncio.run(state.incr(tpm, 0)) == 5
    assert asyncio.run(state.incr("conc:key_1", 0)) == 0
    res = _admit(limiter, key)
    limiter.release(res)  # never went upstream: all of it back
    assert asyncio.run(state.incr(tpm, 0)) == 5 and not res.held


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "héllo wörld ✓" * 40}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "日本語" * 30}]}]},
        {"input": "plain text input " * 9, "system": [{"type": "text", "text": "be brief"}]},
        {"prompt": "x" * 401},
    ],
)
def test_the_estimate_is_at_least_four_characters_a_token_of_the_text(
    body: dict[str, Any],
) -> None:
    limiter = Limiter(MemoryState(), None, default_max_tokens=77)
    prompt, output = limiter.estimate(body)
    text = "".join(_strings(body))
    assert prompt >= (len(text) + 3) // 4 and output == 77


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def test_two_limiters_on_one_memory_backend_hold_one_limit() -> None:
    """A hot reload builds a new limiter on the same state: the counts go on."""
    state = MemoryState()
    clock = Clock()
    before, after = Limiter(state, None, clock=clock), Limiter(state, None, clock=clock)
    key = _key(rpm=3, max_concurrency=2)
    held = _admit(before, key)
    assert _admit(after, key).headers["x-ratelimit-remaining-requests"] == "1"
    with pytest.raises(RateLimitError):  # both slots taken, one through each limiter
        _admit(before, key)
    before.settle(held, Usage(input_tokens=1, output_tokens=1), True)
    assert asyncio.run(state.incr("conc:key_1", 0)) == 1
    assert _admit(after, key).headers["x-ratelimit-remaining-requests"] == "0"


def test_a_counter_that_expired_is_asked_for_again() -> None:
    """The concurrency count lives an hour from its first use; a key's plan that holds it
    past that takes the new one, which starts at 0."""
    ticks = Clock(100.0)
    state = MemoryState(clock=ticks)
    limiter = Limiter(state, None, clock=Clock())
    key = _key(max_concurrency=1)
    _admit(limiter, key)  # never settled: the slot stays taken...
    with pytest.raises(RateLimitError):
        _admit(limiter, key)
    ticks.now += 3601.0  # ...until its count expires
    res = _admit(limiter, key)
    assert asyncio.run(state.incr("conc:key_1", 0)) == 1
    limiter.settle(res, None, True)
    assert asyncio.run(state.incr("conc:key_1", 0)) == 0


def test_the_memory_path_and_the_general_one_count_alike() -> None:
    """A budget-free key on the memory backend is admitted without a coroutine
    (`admit_now`); with a model limit the general path does it: the same counts."""
    counts = []
    for model_limits in (None, {"p/other": {"rpm": 5}}):
        state = MemoryState()
        limiter = Limiter(state, None, model_limits=model_limits, clock=Clock())
        key = _key(rpm=10, tpm=1000, max_concurrency=4)
        assert limiter.quick(key) is (model_limits is None)
        res = _admit(limiter, key)
        limiter.settle(res, Usage(input_tokens=7, output_tokens=4), True)
        _admit(limiter, key)
        window = int(6_000_000.5 // 60)
        names = (f"rpm:key_1:{window}", f"tpm:key_1:{window}", "conc:key_1")
        counts.append([asyncio.run(state.incr(name, 0)) for name in names])
    assert counts[0] == counts[1]
    assert counts[0][1] == 11 + limiter.estimate(_BODY)[0] + 10 and counts[0][2] == 1


class _Counting:
    """A policy that reads usage (a ledger, metrics): it counts cost as well."""

    wants_usage = True

    async def before(self, info: RequestInfo) -> None:
        return None

    def after(self, info: RequestInfo) -> None:
        return None


def test_the_answer_names_its_cost_only_when_a_policy_counts_it() -> None:
    """The limits read usage for the tokens alone (a budget works its cost out itself), so
    with no other policy the pipeline leaves `x-mini-llm-cost-usd` out."""
    limits = LimitsPolicy(Limiter(MemoryState(), None), lambda m: (m,))
    alone = PolicyChain([limits])
    assert alone.wants_usage and not alone.wants_cost
    assert PolicyChain([limits, _Counting()]).wants_cost


def test_a_cell_is_the_number_as_it_stands() -> None:
    """`MemoryState.cell` hands out the live pair (its value and expiry kept, one without
    an expiry too) and starts a new one at 0 only when there is none, or it expired."""
    ticks = Clock(100.0)
    state = MemoryState(clock=ticks)
    asyncio.run(state.incr("kept", 5, None))  # no expiry
    asyncio.run(state.incr("window", 2, 60.0))
    assert state.cell("kept", 30.0) == [5.0, 0.0]
    window = state.cell("window", 30.0)
    assert window == [2.0, 160.0]
    window[0] += 1  # changed in place: what every other call sees
    assert asyncio.run(state.incr("window", 0)) == 3
    ticks.now = 160.0
    assert state.cell("window", 30.0) == [0.0, 190.0]
    assert state.cell("new", 30.0) == [0.0, 190.0]
