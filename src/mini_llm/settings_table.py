"""The scalar settings as a table, and the one function that applies precedence to every row.

One `Setting` row says everything about a setting: its name, environment variable, TOML table
and key, type and bounds, default, command-line flag, and whether a running gateway can take a
new value (a hot reload) or needs a restart. `resolve()` applies defaults < file < environment
< flags to every row the same way, checks *every* layer that is present (a bad value in the
file is a problem even when the environment overrides it), and records which layer won.

Tables of names (aliases, fallbacks, deployments, per-model settings, providers) are not rows:
their parsing is in `config_tables.py`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .cache.settings import CACHE_MODES
from .routing.policies import STRATEGIES

__all__ = [
    "DEFAULT",
    "ROWS",
    "ROWS_BY_NAME",
    "STRATEGIES",
    "Choice",
    "Flag",
    "Kind",
    "Names",
    "Origins",
    "Seconds",
    "Setting",
    "Switch",
    "Text",
    "Url",
    "Whole",
    "Workers",
    "available_cpus",
    "resolve",
]

DEFAULT = "default"
"""The source of a value nobody configured."""


class Kind:
    """A setting's type and bounds: `parse` turns a raw value (a TOML value, or the string of
    an environment variable) into the typed value, or raises ValueError saying what it must be."""

    def parse(self, raw: object) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Whole(Kind):
    lo: int
    hi: int

    def parse(self, raw: object) -> int:
        try:
            if isinstance(raw, (bool, float)):
                raise ValueError
            number: int = int(raw)  # type: ignore[call-overload]
        except (TypeError, ValueError):
            raise ValueError(f"must be a whole number, got {raw!r}") from None
        if not self.lo <= number <= self.hi:
            raise ValueError(f"must be between {self.lo} and {self.hi}, got {number}")
        return number

    def describe(self) -> str:
        return f"whole number, {self.lo}..{self.hi}"


def available_cpus(cgroup: str = "/sys/fs/cgroup") -> int:
    """The CPUs this process may use: its affinity mask, narrowed by a cgroup CPU quota (a
    container's `--cpus`, a Kubernetes CPU limit; cgroup v2 `cpu.max`, else v1's CFS quota),
    rounded up; at least 1."""
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS
        count = os.cpu_count() or 1
    quota = _cpu_quota(cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def _cpu_quota(cgroup: str) -> float | None:
    """CPUs' worth of time the cgroup may use, or None when it has no quota (or none is read)."""
    try:
        with open(os.path.join(cgroup, "cpu.max"), encoding="ascii") as f:
            quota, period = f.read().split()[:2]  # "max 100000" or "150000 100000"
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(cgroup, "cpu", "cpu.cfs_quota_us"), encoding="ascii") as f:
            v1_quota = int(f.read())
        with open(os.path.join(cgroup, "cpu", "cpu.cfs_period_us"), encoding="ascii") as f:
            v1_period = int(f.read())
    except (OSError, ValueError):
        return None
    return None if v1_quota <= 0 or v1_period <= 0 else v1_quota / v1_period


@dataclass(frozen=True, slots=True)
class Workers(Whole):
    """A number of processes, or `auto`: one per CPU available (`available_cpus`)."""

    def parse(self, raw: object) -> int:
        if isinstance(raw, str) and raw.strip().lower() == "auto":
            return min(max(available_cpus(), self.lo), self.hi)
        try:
            # explicit: zero-argument super() does not work in a slotted dataclass
            return Whole.parse(self, raw)
        except ValueError as e:
            if "whole number" in str(e):
                raise ValueError(f"must be a whole number or auto, got {raw!r}") from None
            raise

    def describe(self) -> str:
        return f"whole number, {self.lo}..{self.hi}, or auto (one per CPU)"


@dataclass(frozen=True, slots=True)
class Seconds(Kind):
    zero_ok: bool = False

    def parse(self, raw: object) -> float:
        try:
            if isinstance(raw, bool):
                raise ValueError
            number = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"must be a number of seconds, got {raw!r}") from None
        if not math.isfinite(number) or number < 0 or (number == 0 and not self.zero_ok):
            least = "0 or more" if self.zero_ok else "more than 0"
            raise ValueError(f"must be {least} seconds, got {number}")
        return number

    def describe(self) -> str:
        return "seconds, 0 or more" if self.zero_ok else "seconds, more than 0"


@dataclass(frozen=True, slots=True)
class Choice(Kind):
    options: tuple[str, ...]

    def parse(self, raw: object) -> str:
        value = str(raw).lower() if isinstance(raw, str) else raw
        if value not in self.options:
            raise ValueError(f"must be one of {', '.join(self.options)}, got {raw!r}")
        return str(value)

    def describe(self) -> str:
        return " | ".join(self.options)


@dataclass(frozen=True, slots=True)
class Flag(Kind):
    def parse(self, raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return raw.lower() in ("1", "true", "yes", "on")
        raise ValueError(f"must be true or false, got {raw!r}")

    def describe(self) -> str:
        return "true | false"


@dataclass(frozen=True, slots=True)
class Text(Kind):
    def parse(self, raw: object) -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError(f"must be a non-empty string, got {raw!r}")
        return raw.strip()

    def describe(self) -> str:
        return "text"


@dataclass(frozen=True, slots=True)
class Names(Kind):
    """A list of names: a TOML array of strings, or comma-separated in a variable."""

    def parse(self, raw: object) -> tuple[str, ...]:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"must be a list of names, got {raw!r}")
        return tuple(i.strip() for i in items if i.strip())

    def describe(self) -> str:
        return "names, comma-separated"


@dataclass(frozen=True, slots=True)
class Origins(Kind):
    """Web origins (`https://app.example.com`, `http://localhost:5173`) or `*`: a TOML list,
    or a comma-separated environment variable."""

    def parse(self, raw: object) -> tuple[str, ...]:
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"must be a list of origins, got {raw!r}")
        origins = tuple(i.strip().rstrip("/") for i in items if i.strip())
        for origin in origins:
            scheme, sep, host = origin.partition("://")
            if origin != "*" and (
                scheme not in ("http", "https") or not sep or not host or "/" in host
            ):
                raise ValueError(
                    f"each origin must be * or scheme://host[:port] (no path), got {origin!r}"
                )
        return origins

    def describe(self) -> str:
        return "list of origins (scheme://host[:port]) or *"


@dataclass(frozen=True, slots=True)
class Switch(Kind):
    """Off, on, or on in one of several ways: true/false or one of `ways`."""

    ways: tuple[str, ...]

    def parse(self, raw: object) -> str:
        if isinstance(raw, str) and raw.strip().lower() in self.ways:
            return raw.strip().lower()
        try:
            return "on" if Flag().parse(raw) else "off"
        except ValueError:
            raise ValueError(
                f"must be true, false or one of {', '.join(self.ways)}, got {raw!r}"
            ) from None

    def describe(self) -> str:
        return "true | false | " + " | ".join(self.ways)


@dataclass(frozen=True, slots=True)
class Url(Kind):
    schemes: tuple[str, ...]

    def parse(self, raw: object) -> str:
        text = raw.strip() if isinstance(raw, str) else ""
        scheme, sep, _ = text.partition("://")
        if not sep or scheme.lower() not in self.schemes:
            shown = f"scheme {scheme!r}" if sep else "no scheme"  # never the password
            raise ValueError(f"must be a {' or '.join(self.schemes)} URL, got {shown}")
        return text

    def describe(self) -> str:
        return " | ".join(f"{s}://…" for s in self.schemes)


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    """The key in `flags` and `Settings.sources`; `timeouts.connect` is `timeouts.connect`."""
    table: str
    key: str
    env: str
    kind: Kind
    default: Any
    flag: str | None = None
    """The command-line option that sets it, if there is one."""
    reloadable: bool = True
    """False: a running gateway keeps its value until it is restarted."""
    help: str = ""
    secret: bool = False
    """The value may hold a password (a URL's): shown and fingerprinted masked."""

    @property
    def toml(self) -> str:
        return f"[{self.table}] {self.key}"


LOG_LEVELS = ("debug", "info", "warning", "error")


def _rows() -> tuple[Setting, ...]:
    server = [
        Setting("host", "server", "host", "MINI_LLM_HOST", Text(), "127.0.0.1", "--host", False,
                "address to listen on"),
        Setting("port", "server", "port", "MINI_LLM_PORT", Whole(0, 65535), 3333, "--port", False,
                "port; 0 lets the OS choose"),
        Setting("port_retries", "server", "port_retries", "MINI_LLM_PORT_RETRIES",
                Whole(0, 1000), 10, None, False,
                "when the default port is taken, how many next ports to try"),
        Setting("workers", "server", "workers", "MINI_LLM_WORKERS", Workers(1, 1024), 1,
                "--workers", False, "worker processes sharing the port (auto: one per CPU)"),
        Setting("max_body_bytes", "server", "max_body_bytes", "MINI_LLM_MAX_BODY_BYTES",
                Whole(1024, 2**31), 10 * 1024 * 1024, None, False,
                "largest request body accepted"),
        Setting("body_timeout", "server", "body_timeout", "MINI_LLM_BODY_TIMEOUT", Seconds(),
                30.0, None, False, "seconds a client has to send its request body"),
        Setting("shutdown_grace", "server", "shutdown_grace", "MINI_LLM_SHUTDOWN_GRACE",
                Seconds(), 30.0, None, False, "seconds in-flight requests get after SIGTERM"),
        Setting("drain_delay", "server", "drain_delay", "MINI_LLM_DRAIN_DELAY",
                Seconds(zero_ok=True), 0.0, None, False,
                "seconds after SIGTERM that the gateway still accepts and serves requests, "
                "each answer closing its connection and /health/ready answering 503, before "
                "it stops listening (behind a load balancer: longer than its keep-alive)"),
        Setting("header_timeout", "server", "header_timeout", "MINI_LLM_HEADER_TIMEOUT",
                Seconds(), 10.0, None, False, "seconds a client has to send a request's head"),
        Setting("max_connections", "server", "max_connections", "MINI_LLM_MAX_CONNECTIONS",
                Whole(0, 10_000_000), 8192, None, False,
                "client connections open at once, in all (0: no cap)"),
        Setting("max_connections_per_client", "server", "max_connections_per_client",
                "MINI_LLM_MAX_CONNECTIONS_PER_CLIENT", Whole(0, 10_000_000), 1024, None, False,
                "client connections open at once from one address (0: no cap)"),
        Setting("pool_size", "server", "pool_size", "MINI_LLM_POOL_SIZE", Whole(0, 100_000), 0,
                None, False, "upstream connections kept at most, in all (0: no bound)"),
        Setting("pool_per_host", "server", "pool_per_host", "MINI_LLM_POOL_PER_HOST",
                Whole(0, 100_000), 1024, None, False,
                "upstream connections to one host at most (0: no bound)"),
        Setting("http_client", "server", "http_client", "MINI_LLM_HTTP_CLIENT",
                Choice(("builtin", "aiohttp")), "builtin", None, False,
                "upstream HTTP client: builtin (pooled HTTP/1.1 on llhttp) or aiohttp"),
        Setting("watch_config", "server", "watch_config", "MINI_LLM_WATCH_CONFIG", Flag(),
                False, None, False, "reload when the config file changes (checked every second)"),
        Setting("log_level", "server", "log_level", "MINI_LLM_LOG_LEVEL", Choice(LOG_LEVELS),
                "info", None, True, "log level"),
    ]  # fmt: skip
    timeouts = [
        Setting(f"timeouts.{key}", "timeouts", key, f"MINI_LLM_TIMEOUT_{key.upper()}", Seconds(),
                default, None, True, meaning)
        for key, default, meaning in (
            ("connect", 10.0, "seconds to connect to an upstream"),
            ("first_byte", 300.0, "seconds until an upstream's answer begins"),
            ("idle", 120.0, "longest silence between two events of a stream"),
            ("total", 600.0, "seconds for a whole upstream call"),
        )
    ]  # fmt: skip
    retries = [
        Setting("retries.attempts", "retries", "attempts", "MINI_LLM_RETRY_ATTEMPTS",
                Whole(1, 100), 3, None, True, "tries of one target, the first included"),
        Setting("retries.backoff", "retries", "backoff", "MINI_LLM_RETRY_BACKOFF",
                Seconds(zero_ok=True), 0.25, None, True, "base of the exponential backoff"),
        Setting("retries.backoff_max", "retries", "backoff_max", "MINI_LLM_RETRY_BACKOFF_MAX",
                Seconds(), 8.0, None, True, "cap of the exponential backoff"),
        Setting("retries.budget", "retries", "budget", "MINI_LLM_RETRY_BUDGET", Seconds(), 60.0,
                None, True, "seconds one request may spend on retries and fallbacks"),
    ]  # fmt: skip
    responses = [
        Setting("responses_ttl", "responses", "ttl", "MINI_LLM_RESPONSES_TTL", Seconds(),
                30 * 86400.0, None, False,
                "seconds the gateway keeps a Responses API answer it stored"),
        Setting("responses_store", "responses", "store", "MINI_LLM_RESPONSES_STORE",
                Choice(("sql", "memory")), "sql", None, False,
                "where stored Responses API answers live: sql (the SQL store) or memory"),
        Setting("responses_per_owner", "responses", "max_per_owner",
                "MINI_LLM_RESPONSES_MAX_PER_OWNER", Whole(1, 10**9), 100_000, None, False,
                "stored responses one key keeps at most in the SQL store (oldest go first)"),
    ]  # fmt: skip
    routing = [
        Setting("strategy", "routing", "strategy", "MINI_LLM_STRATEGY", Choice(STRATEGIES),
                "round-robin", None, True, "default balancing of deployments"),
    ]  # fmt: skip
    cache = [
        Setting("redis_url", "state", "redis_url", "MINI_LLM_REDIS_URL",
                Url(("redis", "rediss", "unix")), "", None, False,
                "Redis shared by every instance: counters, limits and the response cache",
                secret=True),
        Setting("cache.enabled", "cache", "enabled", "MINI_LLM_CACHE",
                Switch(tuple(m for m in CACHE_MODES if m not in ("on", "off"))), "off", None,
                False, "response cache: true (Redis when redis_url is set, else memory), "
                "memory or redis"),
        Setting("cache.max_bytes", "cache", "max_bytes", "MINI_LLM_CACHE_MAX_BYTES",
                Whole(1024, 2**40), 256 * 1024 * 1024, None, False,
                "memory cache: bytes of answers kept at most"),
        Setting("cache.ttl", "cache", "ttl", "MINI_LLM_CACHE_TTL", Seconds(), 3600.0, None, True,
                "seconds an answer is kept"),
        Setting("cache.share", "cache", "share", "MINI_LLM_CACHE_SHARE", Flag(), False, None,
                True, "share answers between gateway keys"),
        Setting("cache.exclude", "cache", "exclude", "MINI_LLM_CACHE_EXCLUDE", Names(), (),
                None, True, "models or aliases never cached"),
        Setting("cache.wait", "cache", "wait", "MINI_LLM_CACHE_WAIT", Seconds(), 30.0, None,
                True, "seconds an identical request waits for the one under way"),
    ]  # fmt: skip
    usage = [
        Setting("usage", "usage", "enabled", "MINI_LLM_USAGE", Flag(), True, None, False,
                "record every request in the usage ledger"),
        Setting("database_url", "usage", "database_url", "MINI_LLM_DATABASE_URL", Text(), "",
                None, False,
                "the SQL store: sqlite:///path or postgresql://… (default: a SQLite file, "
                "mini-llm.db in the data directory)"),
        Setting("data_dir", "usage", "data_dir", "MINI_LLM_DATA_DIR", Text(), "", None, False,
                "the data directory (default: $XDG_DATA_HOME/mini-llm or "
                "~/.local/share/mini-llm)"),
        Setting("usage_queue", "usage", "queue", "MINI_LLM_USAGE_QUEUE",
                Whole(100, 10_000_000), 100_000, None, False,
                "usage records held in memory while the store cannot take them; "
                "more are dropped and counted"),
        Setting("metrics", "metrics", "enabled", "MINI_LLM_METRICS", Flag(), True, None, True,
                "Prometheus metrics at GET /metrics"),
        Setting("log_format", "logging", "format", "MINI_LLM_LOG_FORMAT",
                Choice(("text", "json")), "text", None, True, "the access log's lines"),
        Setting("log_bodies", "logging", "log_bodies", "MINI_LLM_LOG_BODIES", Flag(), False,
                None, True, "add request bodies (redacted) to the access log"),
        Setting("body_max_bytes", "logging", "body_max_bytes", "MINI_LLM_LOG_BODY_MAX_BYTES",
                Whole(16, 1 << 20), 4096, None, True, "bytes of a body logged at most"),
        Setting("otlp_endpoint", "telemetry", "otlp_endpoint", "MINI_LLM_OTLP_ENDPOINT", Text(),
                "", None, False,
                "OpenTelemetry traces to this OTLP/HTTP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT "
                "too); needs mini-llm[otel]"),
    ]  # fmt: skip
    surfaces = [
        Setting("cors_origins", "server", "cors_origins", "MINI_LLM_CORS_ORIGINS", Origins(),
                (), None, False, "web origins allowed to call the gateway (CORS); none: off"),
        Setting("cors_allow_credentials", "server", "cors_allow_credentials",
                "MINI_LLM_CORS_ALLOW_CREDENTIALS", Flag(), False, None, False,
                "let allowed origins send credentials (never with *)"),
    ]  # fmt: skip
    access = [
        Setting("signing_window", "auth", "signing_window", "MINI_LLM_SIGNING_WINDOW",
                Seconds(), 300.0, None, True,
                "seconds a signed request's x-timestamp may be off (either way)"),
        Setting("on_store_error", "limits", "on_store_error", "MINI_LLM_LIMITS_ON_STORE_ERROR",
                Choice(("open", "closed")), "open", None, True,
                "when the state store is unreachable: open (requests pass, a warning) or "
                "closed (429)"),
        Setting("default_max_tokens", "limits", "default_max_tokens",
                "MINI_LLM_LIMITS_DEFAULT_MAX_TOKENS", Whole(1, 10_000_000), 4096, None, True,
                "output tokens reserved for a request that does not say its maximum"),
    ]  # fmt: skip
    return (
        *server, *timeouts, *retries, *routing, *responses, *cache, *usage, *surfaces, *access
    )  # fmt: skip


ROWS: tuple[Setting, ...] = _rows()
ROWS_BY_NAME: dict[str, Setting] = {row.name: row for row in ROWS}
TABLES: dict[str, tuple[str, ...]] = {}
for _row in ROWS:
    TABLES[_row.table] = (*TABLES.get(_row.table, ()), _row.key)


@dataclass(frozen=True, slots=True)
class Resolved:
    values: dict[str, Any]
    sources: dict[str, str]


def resolve(
    rows: Iterable[Setting],
    *,
    file: Mapping[str, Any],
    file_label: str,
    env: Mapping[str, str],
    flags: Mapping[str, Any],
    problems: list[str],
) -> Resolved:
    """Defaults < file < environment < flags for every row. Every layer present is parsed and
    checked (each problem appended, naming the layer); the highest layer present wins, and
    `sources` says which: "default", the file's path, the variable's name, or the flag."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for row in rows:
        value, source = row.default, DEFAULT
        layers: list[tuple[object, str, str]] = []
        table = file.get(row.table)
        if isinstance(table, dict) and row.key in table:
            layers.append((table[row.key], row.toml, file_label))
        if env.get(row.env):
            layers.append((env[row.env], row.env, row.env))
        if flags.get(row.name) is not None:
            flag = row.flag or f"flag {row.name}"
            layers.append((flags[row.name], flag, flag))
        for raw, where, label in layers:
            try:
                value, source = row.kind.parse(raw), label
            except ValueError as e:
                problems.append(f"{where} {e}")
        values[row.name] = value
        sources[row.name] = source
    return Resolved(values, sources)
