"""Settings: one typed object built at start-up (and again at a hot reload) and passed down.

Precedence, lowest first: defaults < `mini-llm.toml` (from `--config` or `MINI_LLM_CONFIG`) <
environment < command-line flags. The scalar settings are the rows of `settings_table.py`,
resolved by one function; the tables of names are parsed by `config_tables.py`. Every layer is
checked, not only the one that wins, and every problem found is reported together in a
`ConfigError`; nothing below this module reads `os.environ`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from .cache.settings import CacheSettings
from .config_tables import (
    ProviderConfig,
    check_names,
    mask_key,
    parse_aliases,
    parse_deployments,
    parse_fallbacks,
    parse_overrides,
    parse_providers,
    read_toml,
    table,
    unknown_keys,
)
from .routing.policies import Deployment, Overrides, RetryPolicy, Timeouts
from .settings_table import DEFAULT, ROWS, ROWS_BY_NAME, TABLES, resolve
from .store.postgres import safe_url
from .usage.prices import parse_price_overrides

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ConfigError",
    "LoadArgs",
    "ProviderConfig",
    "ReloadPlan",
    "RetryPolicy",
    "Settings",
    "Timeouts",
    "exposure_warning",
    "load_settings",
    "mask_header",
    "mask_key",
    "plan_reload",
    "reload_settings",
]

DEFAULT_HOST: str = ROWS_BY_NAME["host"].default
DEFAULT_PORT: int = ROWS_BY_NAME["port"].default
DEFAULT_PORT_RETRIES: int = ROWS_BY_NAME["port_retries"].default
DEFAULT_MAX_BODY_BYTES: int = ROWS_BY_NAME["max_body_bytes"].default

_TOP_LEVEL = (
    *TABLES,
    "aliases",
    "fallbacks",
    "deployments",
    "models",
    "providers",
    "prices",
    "auth",
)
_AUTH_KEYS = ("master_key", "master_key_env", "signing_window")
_MODEL_LIMIT_KEYS = ("rpm", "tpm")
_MODEL_KEYS = ("timeouts", "retries", "fallbacks")
_SECRET_HEADER_WORDS = ("key", "auth", "token", "secret")


class ConfigError(Exception):
    """Every configuration problem found, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class LoadArgs:
    """What `load_settings` was given: a hot reload reads the configuration the same way."""

    env: Mapping[str, str] = field(repr=False)
    config_path: str | None
    flags: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Effective:
    """One effective value as `config check` shows it (secrets masked)."""

    name: str
    value: Any
    source: str
    reloadable: bool


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    port_retries: int = DEFAULT_PORT_RETRIES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_level: str = "info"
    timeouts: Timeouts = field(default_factory=Timeouts)
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    strategy: str = "round-robin"
    shutdown_grace: float = 30.0
    drain_delay: float = 0.0
    body_timeout: float = 30.0
    header_timeout: float = 10.0
    responses_ttl: float = 30 * 86400.0
    responses_store: str = "sql"
    responses_per_owner: int = 100_000
    max_connections: int = 8192
    max_connections_per_client: int = 1024
    pool_size: int = 0
    pool_per_host: int = 1024
    http_client: str = "builtin"
    aliases: Mapping[str, str] = field(default_factory=dict)
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Aliases that name an ordered list of models: each is tried when the one before fails."""
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    deployments: Mapping[str, Deployment] = field(default_factory=dict)
    model_overrides: Mapping[str, Overrides] = field(default_factory=dict)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    config_path: str | None = None
    warnings: tuple[str, ...] = ()
    workers: int = 1
    port_explicit: bool = False
    """The user chose the port (flag, environment or file): bind it or fail, never the next."""
    sources: Mapping[str, str] = field(default_factory=dict)
    """Where each value came from: "default", the file's path, a variable's name or a flag."""
    watch_config: bool = False
    """Reload when the config file changes (its size or modification time, checked each second)."""
    cors_origins: tuple[str, ...] = ()
    """Web origins allowed to call the gateway; empty: CORS is off."""
    cors_allow_credentials: bool = False
    origin: LoadArgs | None = field(default=None, repr=False, compare=False)
    redis_url: str = ""
    """Redis shared by every instance (counters, limits, the response cache); "" for memory."""
    cache: CacheSettings = field(default_factory=CacheSettings)
    usage: bool = True
    """Record every request in the usage ledger."""
    database_url: str = ""
    data_dir: str = ""
    home_data_dir: str = ""
    """The data directory the environment implies ($XDG_DATA_HOME/mini-llm, else
    $HOME/.local/share/mini-llm); empty when it names neither."""
    usage_queue: int = 100_000
    metrics: bool = True
    log_format: str = "text"
    log_bodies: bool = False
    body_max_bytes: int = 4096
    otlp_endpoint: str = ""
    prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """`[prices."provider/model"]` overrides, USD per million tokens by kind."""
    metrics_dir: str | None = field(default=None, compare=False)
    """Where `--workers` processes publish their metrics (made by the parent)."""
    master_key: str = field(default="", repr=False)
    """Turns auth on: every /v1 request needs it or a gateway key (never shown or logged)."""
    metrics_token: str = field(default="", repr=False)
    """With auth on, `/metrics` takes it (or the master key); never shown or logged."""
    signing_window: float = 300.0
    on_store_error: str = "open"
    default_max_tokens: int = 4096
    model_limits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    """`[limits."provider/model"]`: rpm and tpm every key shares."""

    def store_url(self) -> str | None:
        """The SQL store's URL: `database_url`, else a SQLite file in the data directory;
        None when neither is known."""
        if self.database_url:
            return self.database_url
        folder = self.data_dir or self.home_data_dir
        if not folder:
            return None
        return "sqlite:///" + os.path.abspath(os.path.join(folder, "mini-llm.db")).lstrip("/")

    @property
    def bind_retries(self) -> int:
        """How many ports after `port` may be tried: none when the user chose the port."""
        return 0 if self.port_explicit else self.port_retries

    def secrets(self) -> list[str]:
        """Every configured key and extra header value (some providers take keys in their
        own headers), for redaction."""
        redis_password = _url_password(self.redis_url)
        return (
            [self.master_key] * bool(self.master_key)
            + [self.metrics_token] * bool(self.metrics_token)
            + [k for p in self.providers.values() for k in p.keys]
            + [value for p in self.providers.values() for _, value in p.headers if len(value) >= 8]
            + ([redis_password] if len(redis_password) >= 4 else [])
        )

    def _flat(self, secret: Callable[..., str]) -> dict[str, Any]:
        """Every setting by its dotted name; `secret` shows a key or a header value."""
        flat: dict[str, Any] = {}
        for row in ROWS:
            value: Any = self
            for part in row.name.split("."):
                value = getattr(value, part)
            if row.secret and isinstance(value, str):
                value = _masked_url(value, secret)
            flat[row.name] = list(value) if isinstance(value, tuple) else value
        for name, target in self.aliases.items():
            flat[f"aliases.{name}"] = target
        for name, chain in self.chains.items():
            flat[f"aliases.{name}"] = list(chain)
        for name, chain in self.fallbacks.items():
            flat[f"fallbacks.{name}"] = list(chain)
        for d in self.deployments.values():
            flat[f"deployments.{d.name}"] = {
                "strategy": d.strategy,
                "targets": [{"model": m, "weight": w} for m, w in d.targets],
                "fallbacks": list(d.fallbacks),
            }
        for name, o in self.model_overrides.items():
            flat[f"models.{name}"] = {"timeouts": dict(o.timeouts), "retries": dict(o.retries)}
        for name, price in self.prices.items():
            flat[f"prices.{name}"] = dict(price)
        if self.database_url:  # never a password in a listing; its hash in the fingerprint
            password = urlsplit(self.database_url).password
            flat["database_url"] = safe_url(self.database_url)
            if password:
                flat["database_url.password"] = secret(password)
        for p in self.providers.values():
            at = f"providers.{p.name}."
            flat[at + "format"] = p.wire
            flat[at + "base_url"] = p.base_url
            flat[at + "keys"] = [secret(k) for k in p.keys]
            flat[at + "key_required"] = p.key_required
            flat[at + "models"] = list(p.models)
            flat[at + "headers"] = {n: secret(v, n) for n, v in p.headers}
            flat[at + "timeouts"] = dict(p.overrides.timeouts)
            flat[at + "retries"] = dict(p.overrides.retries)
        return flat

    def source_of(self, name: str) -> str:
        while name:
            if name in self.sources:
                return self.sources[name]
            name = name.rpartition(".")[0]
        return DEFAULT

    def effective(self) -> list[Effective]:
        """Each effective value with the layer it came from, secrets masked; providers only
        when set up (or `mock`)."""
        shown = []
        for name, value in self._flat(lambda v, header="key": mask_header(header, v)).items():
            parts = name.split(".")
            if parts[0] == "providers":
                p = self.providers[parts[1]]
                if not (p.explicit or p.name == "mock") or value in ([], {}):
                    continue
            row = ROWS_BY_NAME.get(name)
            reloadable = row.reloadable if row is not None else True
            shown.append(Effective(name, value, self.source_of(name), reloadable))
        return shown

    def _compared(self) -> dict[str, Any]:
        """What the gateway does: every setting but where it listens and how many processes
        (a restart passes its port; workers share one configuration)."""
        flat = self._flat(_hidden)
        for name in _PLACE:
            flat.pop(name, None)
        return flat

    def fingerprint(self) -> str:
        """A short hash of what the gateway does. Keys and header values enter only as
        salted hashes, and the result is truncated: no secret can be recovered from it, but
        a changed key changes it. Where it listens (host, port) does not count."""
        material = json.dumps(self._compared(), sort_keys=True, default=str)
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    def diff(self, other: Settings) -> list[str]:
        """The names of the settings whose effective values differ (never their values),
        where it listens included."""
        mine, theirs = self._flat(_hidden), other._flat(_hidden)
        return sorted(n for n in mine.keys() | theirs.keys() if mine.get(n) != theirs.get(n))

    def describe(self) -> dict[str, Any]:
        """The effective configuration with every key masked (for `config check --json`)."""
        return {
            "config_path": self.config_path,
            "fingerprint": self.fingerprint(),
            "server": {
                "host": self.host,
                "port": self.port,
                "port_explicit": self.port_explicit,
                "port_retries": self.port_retries,
                "workers": self.workers,
                "max_body_bytes": self.max_body_bytes,
                "log_level": self.log_level,
                "pool_size": self.pool_size,
                "pool_per_host": self.pool_per_host,
                "http_client": self.http_client,
                "header_timeout": self.header_timeout,
                "max_connections": self.max_connections,
                "max_connections_per_client": self.max_connections_per_client,
            },
            "timeouts": asdict(self.timeouts),
            "retries": asdict(self.retries),
            "strategy": self.strategy,
            "shutdown_grace": self.shutdown_grace,
            "drain_delay": self.drain_delay,
            "body_timeout": self.body_timeout,
            "aliases": {**self.aliases, **{k: list(v) for k, v in self.chains.items()}},
            "fallbacks": {k: list(v) for k, v in self.fallbacks.items()},
            "deployments": {
                d.name: {
                    "strategy": d.strategy,
                    "targets": [{"model": m, "weight": w} for m, w in d.targets],
                    "fallbacks": list(d.fallbacks),
                }
                for d in self.deployments.values()
            },
            "providers": {
                p.name: {
                    "format": p.wire,
                    "base_url": p.base_url,
                    "keys": [mask_key(k) for k in p.keys],
                    "key_env": p.key_env or None,
                    "models": list(p.models),
                    "headers": {n: mask_header(n, v) for n, v in p.headers},
                }
                for p in self.providers.values()
                if p.explicit or p.name == "mock"
            },
            "settings": {
                e.name: {"value": e.value, "from": e.source, "reloadable": e.reloadable}
                for e in self.effective()
            },
        }


def _url_password(url: str) -> str:
    """The password in `scheme://user:password@host…`, else ""."""
    authority = url.partition("://")[2].partition("/")[0]
    if "@" not in authority:
        return ""
    return authority.rpartition("@")[0].partition(":")[2]


def _masked_url(url: str, secret: Callable[..., str]) -> str:
    password = _url_password(url)
    return url.replace(":" + password + "@", ":" + secret(password) + "@", 1) if password else url


_PLACE = ("host", "port", "port_retries", "workers", "watch_config")


def _hidden(value: str, header: str = "key") -> str:
    return "sha256:" + hashlib.sha256(b"mini-llm secret\0" + value.encode()).hexdigest()


def mask_header(name: str, value: str) -> str:
    """A header value as it may be shown: masked when its name says it is a credential, or
    when it is long enough to be one."""
    lowered = name.lower()
    if len(value) >= 20 or any(word in lowered for word in _SECRET_HEADER_WORDS):
        return mask_key(value)
    return value


def exposure_warning(host: str) -> str | None:
    """The warning for an address other machines can reach (the gateway has no auth yet)."""
    bare = host.strip("[]")
    try:
        loopback = bare == "localhost" or ipaddress.ip_address(bare).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    return (
        f"WARNING: listening on {host}, which other machines may reach. The gateway has no "
        "authentication: anyone who reaches this port can spend your provider keys. "
        "Bind 127.0.0.1 unless a firewall or proxy in front of it decides who gets in."
    )


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Build and validate the settings; raise `ConfigError` listing every problem found."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    problems: list[str] = []
    warnings: list[str] = []

    path = config_path or env.get("MINI_LLM_CONFIG") or None
    file = read_toml(path, problems) if path else {}
    label = str(path) if path else "file"
    unknown_keys(file, _TOP_LEVEL, "the config file", problems)
    for name, keys in TABLES.items():
        entries = table(file, name, problems)
        if name == "limits":  # [limits."provider/model"] tables beside the scalar rows
            entries = {k: v for k, v in entries.items() if not isinstance(v, dict)}
        if name == "auth":  # the master key is not a row: it is never shown
            entries = {k: v for k, v in entries.items() if k not in _AUTH_KEYS}
        if name == "metrics":  # nor is the metrics token
            entries = {k: v for k, v in entries.items() if k != "token"}
        unknown_keys(entries, keys, f"[{name}]", problems)
    for name in flags:
        if name not in ROWS_BY_NAME:
            problems.append(f"unknown setting {name!r} given as a flag")
    resolved = resolve(ROWS, file=file, file_label=label, env=env, flags=flags, problems=problems)
    values, sources = resolved.values, resolved.sources
    if values["cors_allow_credentials"] and "*" in values["cors_origins"]:
        problems.append(
            "[server] cors_allow_credentials = true cannot go with cors_origins = ['*']: "
            "list the origins that may send credentials"
        )

    providers = parse_providers(file, env, label, problems, warnings, sources)
    aliases, chains = parse_aliases(file, env, label, problems, sources)
    fallbacks = parse_fallbacks(file, env, label, problems, sources)
    deployments = parse_deployments(
        table(file, "deployments", problems), values["strategy"], problems
    )
    model_overrides: dict[str, Overrides] = {}
    for name, entry in table(file, "models", problems).items():
        where = f'[models."{name}"]'
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a table")
            continue
        unknown_keys(entry, _MODEL_KEYS, where, problems)
        model_overrides[name] = parse_overrides(entry, where, problems)
    for kind, names in (("deployments", deployments), ("models", model_overrides)):
        sources.update({f"{kind}.{name}": label for name in names})
    check_names(aliases, chains, fallbacks, deployments, model_overrides, providers, problems)
    cache = CacheSettings(**{k: values[f"cache.{k}"] for k in CacheSettings.__dataclass_fields__})
    if values["redis_url"] and importlib.util.find_spec("redis") is None:
        problems.append(
            f"{ROWS_BY_NAME['redis_url'].env} needs redis-py: pip install 'mini-llm[redis]'"
        )
    if cache.enabled == "redis" and not values["redis_url"]:
        problems.append(
            f"{ROWS_BY_NAME['cache.enabled'].env}=redis needs a Redis: set "
            f"{ROWS_BY_NAME['redis_url'].env} (or [state] redis_url)"
        )
    prices = parse_price_overrides(table(file, "prices", problems), "[prices]", problems)
    sources.update({f"prices.{name}": label for name in prices})
    if sources["otlp_endpoint"] == DEFAULT and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        values["otlp_endpoint"] = env["OTEL_EXPORTER_OTLP_ENDPOINT"].strip()
        sources["otlp_endpoint"] = "OTEL_EXPORTER_OTLP_ENDPOINT"
    master_key = _master_key(table(file, "auth", problems), env, problems)
    metrics_token = _metrics_token(table(file, "metrics", problems), env, problems)
    model_limits = _model_limits(table(file, "limits", problems), problems)
    if env.get("XDG_DATA_HOME"):
        home_data_dir = os.path.join(env["XDG_DATA_HOME"], "mini-llm")
    elif env.get("HOME"):
        home_data_dir = os.path.join(env["HOME"], ".local", "share", "mini-llm")
    else:
        home_data_dir = ""

    if problems:
        raise ConfigError(problems)
    return Settings(
        host=values["host"],
        port=values["port"],
        port_retries=values["port_retries"],
        max_body_bytes=values["max_body_bytes"],
        log_level=values["log_level"],
        timeouts=Timeouts(*(values[f"timeouts.{k}"] for k in asdict(Timeouts()))),
        retries=RetryPolicy(*(values[f"retries.{k}"] for k in asdict(RetryPolicy()))),
        strategy=values["strategy"],
        shutdown_grace=values["shutdown_grace"],
        drain_delay=values["drain_delay"],
        body_timeout=values["body_timeout"],
        header_timeout=values["header_timeout"],
        responses_ttl=values["responses_ttl"],
        responses_store=values["responses_store"],
        responses_per_owner=values["responses_per_owner"],
        max_connections=values["max_connections"],
        max_connections_per_client=values["max_connections_per_client"],
        pool_size=values["pool_size"],
        pool_per_host=values["pool_per_host"],
        http_client=values["http_client"],
        aliases=aliases,
        chains=chains,
        fallbacks=fallbacks,
        deployments=deployments,
        model_overrides=model_overrides,
        providers=providers,
        config_path=str(path) if path else None,
        warnings=tuple(warnings),
        workers=values["workers"],
        watch_config=values["watch_config"],
        cors_origins=values["cors_origins"],
        cors_allow_credentials=values["cors_allow_credentials"],
        port_explicit=sources["port"] != DEFAULT,
        sources=sources,
        origin=LoadArgs(dict(env), config_path, flags),
        redis_url=values["redis_url"],
        cache=cache,
        usage=values["usage"],
        database_url=values["database_url"],
        data_dir=values["data_dir"],
        home_data_dir=home_data_dir,
        usage_queue=values["usage_queue"],
        metrics=values["metrics"],
        log_format=values["log_format"],
        log_bodies=values["log_bodies"],
        body_max_bytes=values["body_max_bytes"],
        otlp_endpoint=values["otlp_endpoint"],
        prices=prices,
        master_key=master_key,
        metrics_token=metrics_token,
        signing_window=values["signing_window"],
        on_store_error=values["on_store_error"],
        default_max_tokens=values["default_max_tokens"],
        model_limits=model_limits,
    )


def _master_key(auth: Mapping[str, Any], env: Mapping[str, str], problems: list[str]) -> str:
    """`MINI_LLM_MASTER_KEY`, else `[auth] master_key`, else the variable `[auth]
    master_key_env` names; "" (auth off) when none is set."""
    unknown_keys(auth, _AUTH_KEYS, "[auth]", problems)
    if env.get("MINI_LLM_MASTER_KEY"):
        return env["MINI_LLM_MASTER_KEY"].strip()
    given = auth.get("master_key")
    if given is not None and not isinstance(given, str):
        problems.append("[auth] master_key must be a string")
    elif given:
        return given.strip()
    var = auth.get("master_key_env")
    if var is None:
        return ""
    if not isinstance(var, str) or not var:
        problems.append("[auth] master_key_env must name an environment variable")
        return ""
    if not env.get(var):
        problems.append(f"[auth] master_key_env names {var}, which is not set")
        return ""
    return env[var].strip()


def _metrics_token(metrics: Mapping[str, Any], env: Mapping[str, str], problems: list[str]) -> str:
    """`MINI_LLM_METRICS_TOKEN`, else `[metrics] token`; "" when neither is set."""
    if env.get("MINI_LLM_METRICS_TOKEN"):
        return env["MINI_LLM_METRICS_TOKEN"].strip()
    given = metrics.get("token")
    if given is not None and not isinstance(given, str):
        problems.append("[metrics] token must be a string")
        return ""
    return (given or "").strip()


def _model_limits(limits: Mapping[str, Any], problems: list[str]) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for name, entry in limits.items():
        if not isinstance(entry, dict):
            continue
        where = f'[limits."{name}"]'
        unknown_keys(entry, _MODEL_LIMIT_KEYS, where, problems)
        parsed: dict[str, int] = {}
        for key in _MODEL_LIMIT_KEYS:
            value = entry.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{where} {key} must be a whole number of at least 1")
            else:
                parsed[key] = value
        found[name] = parsed
    return found


def reload_settings(current: Settings) -> Settings:
    """Read the configuration again the way `current` was read (same file, environment and
    flags); raise `ConfigError` listing every problem."""
    if current.origin is None:
        raise ConfigError(["these settings were not read by load_settings: nothing to re-read"])
    origin = current.origin
    return load_settings(env=origin.env, config_path=origin.config_path, flags=origin.flags)


_RESTART_ONLY = tuple(row.name for row in ROWS if not row.reloadable)


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    settings: Settings
    """What to switch to: the new values, but the running ones of settings needing a restart."""
    changed: list[str]
    """Settings that change now (names only)."""
    needs_restart: list[str]
    """Settings that differ but only take effect after a restart."""


def plan_reload(current: Settings, loaded: Settings) -> ReloadPlan:
    changed = current.diff(loaded)
    later = [name for name in changed if name in _RESTART_ONLY]
    kept: dict[str, Any] = {}
    for name in later:
        top, _, rest = name.partition(".")  # `cache.enabled` is `cache`'s field `enabled`
        if rest:
            base = kept.get(top, getattr(loaded, top))
            kept[top] = replace(base, **{rest: getattr(getattr(current, top), rest)})
        else:
            kept[name] = getattr(current, name)
    if "port" in later:
        kept["port_explicit"] = current.port_explicit
    sources = {**loaded.sources, **{n: current.source_of(n) for n in later}}
    settings = replace(loaded, **kept, sources=sources)
    return ReloadPlan(settings, [n for n in changed if n not in later], later)
