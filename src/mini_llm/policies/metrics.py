"""Prometheus metrics: counted in plain dicts on the hot path, rendered at scrape time.

A request costs a few dict updates (`MetricsPolicy.after`) and, per upstream attempt, one more
(`AttemptCounter`); the text format is made by prometheus-client only when `/metrics` is read
(imported then). Label values stay bounded: a served model that is neither priced, nor listed
by its provider, nor named by an alias is counted as `other`.

With `--workers N` each worker writes its figures to `<metrics_dir>/<pid>.json` every second
(and when it stops); the worker that answers a scrape adds up every file with its own live
figures. Gauges of workers that have exited are left out; their counters stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import UpstreamStatusError, UpstreamTimeoutError
from ..usage.prices import PriceTable
from .base import RequestInfo
from .usage import settle

if TYPE_CHECKING:
    from ..call import Call
    from ..routing.router import Target

__all__ = ["BUCKETS", "AttemptCounter", "Metrics", "MetricsPolicy"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TOKEN_TYPES = ("input", "output", "cached_input", "cache_write", "reasoning")

# name → (kind, help, label names)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mini_llm_requests": (
        "counter",
        "Requests answered",
        ("endpoint", "provider", "model", "status"),
    ),
    "mini_llm_request_duration_seconds": (
        "histogram",
        "Time from a request's arrival to the end of its answer",
        ("endpoint", "provider", "model"),
    ),
    "mini_llm_time_to_first_token_seconds": (
        "histogram",
        "Time from a streamed request's arrival to its first bytes to the client",
        ("endpoint", "provider", "model"),
    ),
    "mini_llm_tokens": ("counter", "Tokens, as providers bill them", ("provider", "model", "type")),
    "mini_llm_cost_usd": ("counter", "Cost in USD of priced answers", ("provider", "model")),
    "mini_llm_upstream_attempts": (
        "counter",
        "Upstream attempts by outcome (ok, an HTTP status, timeout, error, cancelled)",
        ("provider", "outcome"),
    ),
    "mini_llm_rate_limited": ("counter", "Requests answered 429", ("reason",)),
    "mini_llm_cache_requests": ("counter", "Response cache look-ups", ("result",)),
}


class Metrics:
    """The figures of one process; outlives hot reloads."""

    def __init__(self, metrics_dir: str | None = None) -> None:
        self.counters: dict[str, dict[tuple[str, ...], float]] = {
            name: {} for name, (kind, _, _) in FAMILIES.items() if kind == "counter"
        }
        self.histograms: dict[str, dict[tuple[str, ...], list[float]]] = {
            name: {} for name, (kind, _, _) in FAMILIES.items() if kind == "histogram"
        }
        self.in_flight = 0
        self.dropped: Callable[[], int] = lambda: 0
        """Usage records dropped (the ledger's counter, when there is a ledger)."""
        self.key_states: Callable[[], Iterable[tuple[str, str, int]]] = lambda: ()
        """(provider, state, keys) of the running configuration."""
        self.metrics_dir = metrics_dir
        self._task: asyncio.Task[None] | None = None

    def buckets(self, name: str, labels: tuple[str, ...]) -> list[float]:
        """The counts of one histogram series (its buckets, +Inf, then the sum), made on first
        use; held by who observes into it."""
        series = self.histograms[name]
        counts = series.get(labels)
        if counts is None:
            counts = series[labels] = [0.0] * (len(BUCKETS) + 2)
        return counts

    def observe(self, name: str, labels: tuple[str, ...], value: float) -> None:
        counts = self.buckets(name, labels)
        counts[bisect_left(BUCKETS, value)] += 1
        counts[-1] += value

    # -- workers ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "counters": {n: [[*k, v] for k, v in s.items()] for n, s in self.counters.items()},
            "histograms": {n: [[*k, *v] for k, v in s.items()] for n, s in self.histograms.items()},
            "in_flight": self.in_flight,
            "dropped": self.dropped(),
        }

    def write_snapshot(self) -> None:
        if self.metrics_dir is None:
            return
        path = Path(self.metrics_dir) / f"{os.getpid()}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(msgspec.json.encode(self.snapshot()))
        os.replace(temporary, path)

    def start(self) -> None:
        if self.metrics_dir is not None:
            self._task = asyncio.create_task(self._publish(), name="mini-llm metrics")

    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(OSError):
                self.write_snapshot()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.write_snapshot()

    def gathered(self) -> dict[str, Any]:
        """This process's figures plus every other worker's last snapshot."""
        mine = self.snapshot()
        if self.metrics_dir is None:
            return mine
        counters: dict[str, dict[tuple[str, ...], float]] = {
            n: {tuple(r[:-1]): r[-1] for r in rows} for n, rows in mine["counters"].items()
        }
        width = len(BUCKETS) + 2
        histograms: dict[str, dict[tuple[str, ...], list[float]]] = {
            n: {tuple(r[:-width]): r[-width:] for r in rows}
            for n, rows in mine["histograms"].items()
        }
        in_flight, dropped = mine["in_flight"], mine["dropped"]
        for path in Path(self.metrics_dir).glob("*.json"):
            try:
                other = msgspec.json.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError):
                continue
            if not isinstance(other, dict) or other.get("pid") == mine["pid"]:
                continue
            for name, rows in (other.get("counters") or {}).items():
                series = counters.setdefault(name, {})
                for row in rows:
                    key = tuple(row[:-1])
                    series[key] = series.get(key, 0) + row[-1]
            for name, rows in (other.get("histograms") or {}).items():
                hseries = histograms.setdefault(name, {})
                for row in rows:
                    key, values = tuple(row[:-width]), row[-width:]
                    mine_values = hseries.setdefault(key, [0.0] * width)
                    hseries[key] = [a + b for a, b in zip(mine_values, values, strict=True)]
            dropped += int(other.get("dropped") or 0)
            if _alive(other.get("pid")):
                in_flight += int(other.get("in_flight") or 0)
        return {
            "counters": {n: [[*k, v] for k, v in s.items()] for n, s in counters.items()},
            "histograms": {n: [[*k, *v] for k, v in s.items()] for n, s in histograms.items()},
            "in_flight": in_flight,
            "dropped": dropped,
        }

    # -- exposition -----------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text format, and its content type."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        return generate_latest(registry), CONTENT_TYPE_LATEST


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        figures = self.metrics.gathered()
        width = len(BUCKETS) + 2
        for name, rows in figures["counters"].items():
            _, text, labels = FAMILIES[name]
            counter = CounterMetricFamily(name, text, labels=labels)
            for row in rows:
                counter.add_metric([str(v) for v in row[:-1]], row[-1])
            yield counter
        for name, rows in figures["histograms"].items():
            _, text, labels = FAMILIES[name]
            histogram = HistogramMetricFamily(name, text, labels=labels)
            for row in rows:
                values = row[-width:]
                cumulative, buckets = 0.0, []
                for bound, count in zip((*map(str, BUCKETS), "+Inf"), values[:-1], strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                histogram.add_metric([str(v) for v in row[:-width]], buckets, values[-1])
            yield histogram
        yield GaugeMetricFamily(
            "mini_llm_in_flight_requests", "Requests under way", value=figures["in_flight"]
        )
        keys = GaugeMetricFamily(
            "mini_llm_provider_keys",
            "Provider keys by state (healthy, cooling, set_aside), as this worker sees them",
            labels=("provider", "state"),
        )
        for provider, state, count in self.metrics.key_states():
            keys.add_metric([provider, state], count)
        yield keys
        yield CounterMetricFamily(
            "mini_llm_usage_records_dropped",
            "Usage records dropped because the store could not take them",
            value=figures["dropped"],
        )


class _Series:
    """The series one (endpoint, served model) counts into, resolved on its first request: its
    label tuples made once, its histograms' bucket lists held."""

    __slots__ = ("cost", "duration", "requests", "tokens", "ttft", "where")

    def __init__(self, metrics: Metrics, endpoint: str, provider: str, model: str) -> None:
        self.where = (endpoint, provider, model)
        self.requests: dict[int, tuple[str, ...]] = {}  # status -> its series
        self.tokens = tuple((provider, model, kind) for kind in TOKEN_TYPES)
        self.cost = (provider, model)
        self.duration = metrics.buckets("mini_llm_request_duration_seconds", self.where)
        self.ttft: list[float] | None = None  # made by the first stream: not every path has one

    def request(self, status: int) -> tuple[str, ...]:
        key = self.requests.get(status)
        if key is None:
            key = self.requests[status] = (*self.where, str(status))
        return key


class MetricsPolicy:
    """Counts every request (first in the chain, so the in-flight gauge sees every one)."""

    wants_usage = True

    def __init__(self, metrics: Metrics, prices: PriceTable, known: Callable[[str], bool]) -> None:
        self.metrics = metrics
        self.prices = prices
        self._known = known
        self._labels: dict[str, str] = {}
        self._series: dict[tuple[str, str], _Series] = {}

    def series(self, endpoint: str, target: Target | None) -> _Series:
        label = target.label if target is not None else ""
        found = self._series.get((endpoint, label))
        if found is None:
            if target is not None:
                provider, model = target.provider.name, self.model_label(target)
            else:
                provider = model = "none"
            found = _Series(self.metrics, endpoint, provider, model)
            if len(self._series) < 4096:
                self._series[(endpoint, label)] = found
        return found

    def model_label(self, target: Target) -> str:
        label = target.label
        try:
            return self._labels[label]
        except KeyError:
            pass
        shown = target.model if self._known(label) else "other"
        if len(self._labels) < 4096:
            self._labels[label] = shown
        return shown

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        self.metrics.in_flight += 1
        return None

    def after(self, info: RequestInfo) -> None:
        metrics = self.metrics
        metrics.in_flight -= 1
        settle(info, self.prices)
        series = self.series(info.endpoint, info.target)
        counters = metrics.counters
        requests = counters["mini_llm_requests"]
        key = series.request(info.status)
        requests[key] = requests.get(key, 0) + 1
        started = info.started
        latency = time.monotonic() - started
        counts = series.duration
        counts[bisect_left(BUCKETS, latency)] += 1
        counts[-1] += latency
        first = info.first_byte
        if first is not None:
            ttft_counts = series.ttft
            if ttft_counts is None:
                family = "mini_llm_time_to_first_token_seconds"
                ttft_counts = series.ttft = metrics.buckets(family, series.where)
            ttft = first - started
            ttft_counts[bisect_left(BUCKETS, ttft)] += 1
            ttft_counts[-1] += ttft
        usage = info.usage
        if usage is not None:
            tokens = counters["mini_llm_tokens"]
            names = series.tokens
            count = usage.input_tokens
            if count:
                tokens[names[0]] = tokens.get(names[0], 0) + count
            count = usage.output_tokens
            if count:
                tokens[names[1]] = tokens.get(names[1], 0) + count
            count = usage.cached_input_tokens
            if count:
                tokens[names[2]] = tokens.get(names[2], 0) + count
            count = usage.cache_write_tokens
            if count:
                tokens[names[3]] = tokens.get(names[3], 0) + count
            count = usage.reasoning_tokens
            if count:
                tokens[names[4]] = tokens.get(names[4], 0) + count
        if info.cost:
            costs = counters["mini_llm_cost_usd"]
            costs[series.cost] = costs.get(series.cost, 0.0) + info.cost
        if info.status == 429:
            limited = counters["mini_llm_rate_limited"]
            reason = _UPSTREAM if info.attempts else _GATEWAY
            limited[reason] = limited.get(reason, 0) + 1
        if info.cache_hit is not None:
            cache = counters["mini_llm_cache_requests"]
            result = _HIT if info.cache_hit else _MISS
            cache[result] = cache.get(result, 0) + 1


_UPSTREAM, _GATEWAY, _HIT, _MISS = ("upstream",), ("gateway",), ("hit",), ("miss",)


class AttemptCounter:
    """The dispatcher's attempt hook for `mini_llm_upstream_attempts_total`."""

    def __init__(self, metrics: Metrics) -> None:
        self.series = metrics.counters["mini_llm_upstream_attempts"]

    def started(self, target: Target, call: Call) -> tuple[Any, Mapping[str, str] | None]:
        return None, None

    def ended(self, handle: Any, target: Target, error: BaseException | None) -> None:
        if error is None:
            outcome = "ok"
        elif isinstance(error, UpstreamStatusError):
            outcome = str(error.upstream_status)
        elif isinstance(error, UpstreamTimeoutError):
            outcome = "timeout"
        elif isinstance(error, (asyncio.CancelledError, GeneratorExit)):
            outcome = "cancelled"
        else:
            outcome = "error"
        key = (target.provider.name, outcome)
        self.series[key] = self.series.get(key, 0) + 1
