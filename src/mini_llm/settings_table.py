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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .routing.policies import STRATEGIES

__all__ = [
    "DEFAULT",
    "ROWS",
    "ROWS_BY_NAME",
    "STRATEGIES",
    "Choice",
    "Flag",
    "Kind",
    "Seconds",
    "Setting",
    "Text",
    "Whole",
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
        Setting("workers", "server", "workers", "MINI_LLM_WORKERS", Whole(1, 1024), 1,
                "--workers", False, "worker processes sharing the port"),
        Setting("max_body_bytes", "server", "max_body_bytes", "MINI_LLM_MAX_BODY_BYTES",
                Whole(1024, 2**31), 10 * 1024 * 1024, None, False,
                "largest request body accepted"),
        Setting("body_timeout", "server", "body_timeout", "MINI_LLM_BODY_TIMEOUT", Seconds(),
                30.0, None, False, "seconds a client has to send its request body"),
        Setting("shutdown_grace", "server", "shutdown_grace", "MINI_LLM_SHUTDOWN_GRACE",
                Seconds(), 30.0, None, False, "seconds in-flight requests get after SIGTERM"),
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
    ]  # fmt: skip
    routing = [
        Setting("strategy", "routing", "strategy", "MINI_LLM_STRATEGY", Choice(STRATEGIES),
                "round-robin", None, True, "default balancing of deployments"),
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
        # the same rows as wt-usage's and wt-cache's (theirs win at merge)
        Setting("database_url", "usage", "database_url", "MINI_LLM_DATABASE_URL", Text(), "",
                None, False,
                "the SQL store: sqlite:///path or postgresql://… (default: a SQLite file, "
                "mini-llm.db in the data directory)"),
        Setting("data_dir", "usage", "data_dir", "MINI_LLM_DATA_DIR", Text(), "", None, False,
                "the data directory (default: $XDG_DATA_HOME/mini-llm or "
                "~/.local/share/mini-llm)"),
        Setting("redis_url", "state", "redis_url", "MINI_LLM_REDIS_URL", Text(), "", None,
                False, "Redis shared by every instance: counters, limits and reservations"),
    ]  # fmt: skip
    return (*server, *timeouts, *retries, *routing, *responses, *access)


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
