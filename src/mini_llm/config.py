"""Settings: one typed object built once at start-up and passed down.

Precedence, lowest first: defaults < `mini-llm.toml` (from `--config` or `MINI_LLM_CONFIG`) <
environment < command-line flags. Every problem found is collected and reported together in a
`ConfigError`; nothing below this module reads `os.environ`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .providers.presets import PRESETS, ProviderPreset, env_prefix
from .routing.models import ALIAS_NAME, resolve_name
from .routing.policies import (
    STRATEGIES,
    Deployment,
    Overrides,
    RetryPolicy,
    Timeouts,
    parse_deployments,
    parse_overrides,
    parse_retries,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ConfigError",
    "ProviderConfig",
    "RetryPolicy",
    "Settings",
    "Timeouts",
    "load_settings",
    "mask_key",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3333
DEFAULT_PORT_RETRIES = 10
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


class ConfigError(Exception):
    """Every configuration problem found, one per line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    wire: str
    base_url: str
    keys: tuple[str, ...] = ()
    key_env: str = ""
    key_required: bool = True
    models: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    overrides: Overrides = field(default_factory=lambda: Overrides({}, {}))
    explicit: bool = False
    """Set up by the user (keys, base URL or a config entry), not only a built-in preset."""

    @property
    def usable(self) -> bool:
        return bool(self.keys) or not self.key_required


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
    body_timeout: float = 30.0
    header_timeout: float = 10.0
    max_connections: int = 8192
    max_connections_per_client: int = 1024
    pool_size: int = 0
    pool_per_host: int = 1024
    aliases: Mapping[str, str] = field(default_factory=dict)
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Aliases that name an ordered list of models: each is tried when the one before fails."""
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    deployments: Mapping[str, Deployment] = field(default_factory=dict)
    model_overrides: Mapping[str, Overrides] = field(default_factory=dict)
    providers: Mapping[str, ProviderConfig] = field(default_factory=dict)
    config_path: str | None = None
    warnings: tuple[str, ...] = ()

    def secrets(self) -> list[str]:
        """Every configured key and extra header value (some providers take keys in their
        own headers), for redaction."""
        return [k for p in self.providers.values() for k in p.keys] + [
            value for p in self.providers.values() for _, value in p.headers if len(value) >= 8
        ]

    def _compared(self) -> dict[str, Any]:
        """What the gateway does, flattened one level (`server.log_level`, `providers.openai`):
        not where it listens (host, port), which file it came from, nor any key."""
        described = self.describe()
        server = described.pop("server")
        for name in ("host", "port", "port_retries"):
            server.pop(name)
        described.pop("config_path")
        providers = described.pop("providers")
        flat: dict[str, Any] = {f"server.{k}": v for k, v in server.items()}
        flat.update(described)
        for name, entry in providers.items():
            entry.pop("keys")
            flat[f"providers.{name}"] = entry
        return flat

    def fingerprint(self) -> str:
        """A short hex digest of what the gateway does (see `diff`); no secret goes into it."""
        data = json.dumps(self._compared(), sort_keys=True, default=str).encode()
        return hashlib.sha256(data).hexdigest()[:16]

    def diff(self, other: Settings) -> list[str]:
        """The names of the settings that differ from `other`'s (`aliases`, `server.log_level`,
        `providers.openai`...), sorted."""
        mine, theirs = self._compared(), other._compared()
        return sorted(k for k in {*mine, *theirs} if mine.get(k) != theirs.get(k))

    def describe(self) -> dict[str, Any]:
        """The effective configuration with every key masked (for `config check`)."""
        return {
            "config_path": self.config_path,
            "server": {
                "host": self.host,
                "port": self.port,
                "port_retries": self.port_retries,
                "max_body_bytes": self.max_body_bytes,
                "log_level": self.log_level,
                "pool_size": self.pool_size,
                "pool_per_host": self.pool_per_host,
                "header_timeout": self.header_timeout,
                "max_connections": self.max_connections,
                "max_connections_per_client": self.max_connections_per_client,
            },
            "timeouts": asdict(self.timeouts),
            "retries": asdict(self.retries),
            "strategy": self.strategy,
            "shutdown_grace": self.shutdown_grace,
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
                }
                for p in self.providers.values()
                if p.explicit or p.name == "mock"
            },
        }


def mask_key(key: str) -> str:
    """A key as it may be shown anywhere: at most its last 4 characters."""
    return "…" + key[-4:] if len(key) >= 12 else "…" * 3


def load_settings(
    *,
    env: Mapping[str, str] | None = None,
    config_path: str | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Build and validate the settings; raise `ConfigError` listing every problem found."""
    env = os.environ if env is None else env
    flags = flags or {}
    problems: list[str] = []
    warnings: list[str] = []

    path = config_path or env.get("MINI_LLM_CONFIG") or None
    file: dict[str, Any] = {}
    if path:
        file = _read_toml(path, problems)

    server = _table(file, "server", problems)
    timeouts_file = _table(file, "timeouts", problems)

    def pick(key: str, env_name: str, default: Any) -> tuple[Any, str]:
        if flags.get(key) is not None:
            return flags[key], f"--{key.replace('_', '-')}"
        if env_name in env and env[env_name] != "":
            return env[env_name], env_name
        if key in server:
            return server[key], f"[server] {key}"
        return default, key

    host, _ = pick("host", "MINI_LLM_HOST", DEFAULT_HOST)
    if not isinstance(host, str) or not host.strip():
        problems.append(f"host must be a non-empty string, got {host!r}")
        host = DEFAULT_HOST
    port = _int(*pick("port", "MINI_LLM_PORT", DEFAULT_PORT), 0, 65535, problems)
    port_retries = _int(
        *pick("port_retries", "MINI_LLM_PORT_RETRIES", DEFAULT_PORT_RETRIES), 0, 1000, problems
    )
    max_body = _int(
        *pick("max_body_bytes", "MINI_LLM_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        1024,
        2**31,
        problems,
    )
    pool_size = _int(*pick("pool_size", "MINI_LLM_POOL_SIZE", 0), 0, 100_000, problems)
    log_level, _ = pick("log_level", "MINI_LLM_LOG_LEVEL", "info")
    log_level = str(log_level).lower()
    if log_level not in ("debug", "info", "warning", "error"):
        problems.append(f"log_level must be debug, info, warning or error, got {log_level!r}")
        log_level = "info"

    defaults = Timeouts()
    timeout_values: dict[str, float] = {}
    for name in ("connect", "first_byte", "idle", "total"):
        env_name = f"MINI_LLM_TIMEOUT_{name.upper()}"
        raw: Any = getattr(defaults, name)
        source = f"[timeouts] {name}"
        if env.get(env_name):
            raw, source = env[env_name], env_name
        elif name in timeouts_file:
            raw = timeouts_file[name]
        timeout_values[name] = _positive_float(raw, source, problems)
    timeouts = Timeouts(**timeout_values)

    retries_table = dict(_table(file, "retries", problems))
    for name in ("attempts", "backoff", "backoff_max", "budget"):
        env_name = f"MINI_LLM_RETRY_{name.upper()}"
        if env.get(env_name):
            try:
                retries_table[name] = (int if name == "attempts" else float)(env[env_name])
            except ValueError:
                problems.append(f"{env_name} must be a number, got {env[env_name]!r}")
    retries = parse_retries(retries_table, problems)

    routing = _table(file, "routing", problems)
    strategy = env.get("MINI_LLM_STRATEGY") or routing.get("strategy", "round-robin")
    if strategy not in STRATEGIES:
        problems.append(
            f"routing strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
        )
        strategy = "round-robin"
    grace_raw: Any = env.get("MINI_LLM_SHUTDOWN_GRACE") or server.get("shutdown_grace", 30.0)
    shutdown_grace = _positive_float(grace_raw, "shutdown_grace", problems)
    body_raw: Any = env.get("MINI_LLM_BODY_TIMEOUT") or server.get("body_timeout", 30.0)
    body_timeout = _positive_float(body_raw, "body_timeout", problems)
    header_raw: Any = env.get("MINI_LLM_HEADER_TIMEOUT") or server.get("header_timeout", 10.0)
    header_timeout = _positive_float(header_raw, "header_timeout", problems)
    conns_raw: Any = env.get("MINI_LLM_MAX_CONNECTIONS") or server.get("max_connections", 8192)
    max_connections = _int(conns_raw, "max_connections", 0, 10_000_000, problems)
    per_client_raw: Any = env.get("MINI_LLM_MAX_CONNECTIONS_PER_CLIENT") or server.get(
        "max_connections_per_client", 1024
    )
    per_client = _int(per_client_raw, "max_connections_per_client", 0, 10_000_000, problems)
    per_host_raw: Any = env.get("MINI_LLM_POOL_PER_HOST") or server.get("pool_per_host", 1024)
    pool_per_host = _int(per_host_raw, "pool_per_host", 0, 100_000, problems)
    _unknown_keys(server, _SERVER_KEYS, "[server]", problems)
    _unknown_keys(timeouts_file, ("connect", "first_byte", "idle", "total"), "[timeouts]", problems)
    _unknown_keys(routing, ("strategy",), "[routing]", problems)
    _unknown_keys(file, _TOP_LEVEL, "the config file", problems)

    providers = _providers(file, env, problems, warnings)
    aliases, chains = _aliases(file, env, problems)
    fallbacks = _fallbacks(file, env, problems)
    deployments = parse_deployments(_table(file, "deployments", problems), strategy, problems)
    model_overrides = {
        name: parse_overrides(entry, f'[models."{name}"]', problems)
        for name, entry in _table(file, "models", problems).items()
        if isinstance(entry, dict)
    }
    _check_names(aliases, chains, fallbacks, deployments, model_overrides, providers, problems)

    if problems:
        raise ConfigError(problems)
    return Settings(
        host=host,
        port=port,
        port_retries=port_retries,
        max_body_bytes=max_body,
        log_level=log_level,
        timeouts=timeouts,
        retries=retries,
        strategy=strategy,
        shutdown_grace=shutdown_grace,
        body_timeout=body_timeout,
        header_timeout=header_timeout,
        max_connections=max_connections,
        max_connections_per_client=per_client,
        pool_size=pool_size,
        pool_per_host=pool_per_host,
        aliases=aliases,
        chains=chains,
        fallbacks=fallbacks,
        deployments=deployments,
        model_overrides=model_overrides,
        providers=providers,
        config_path=str(path) if path else None,
        warnings=tuple(warnings),
    )


_SERVER_KEYS = (
    "host",
    "port",
    "port_retries",
    "max_body_bytes",
    "pool_size",
    "log_level",
    "shutdown_grace",
    "body_timeout",
    "header_timeout",
    "max_connections",
    "max_connections_per_client",
    "pool_per_host",
)
_PROVIDER_KEYS = (
    "format",
    "base_url",
    "api_key",
    "keys",
    "key_required",
    "models",
    "headers",
    "timeouts",
    "retries",
)
_TOP_LEVEL = (
    "server",
    "timeouts",
    "retries",
    "routing",
    "aliases",
    "fallbacks",
    "deployments",
    "models",
    "providers",
)


def _unknown_keys(
    table: Mapping[str, Any], known: tuple[str, ...], where: str, problems: list[str]
) -> None:
    for key in table:
        if key not in known:
            problems.append(f"{where}: unknown setting {key!r} (known: {', '.join(known)})")


def _read_toml(path: str, problems: list[str]) -> dict[str, Any]:
    try:
        with Path(path).open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
            return data
    except FileNotFoundError:
        problems.append(f"config file {path} does not exist")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"config file {path} cannot be read: {e}")
    except tomllib.TOMLDecodeError as e:
        problems.append(f"config file {path} is not valid TOML: {e}")
    return {}


def _table(file: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = file.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"[{name}] must be a table")
        return {}
    return value


def _int(value: Any, source: str, lo: int, hi: int, problems: list[str]) -> int:
    try:
        if isinstance(value, (bool, float)):
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        problems.append(f"{source} must be a whole number, got {value!r}")
        return lo
    if not lo <= number <= hi:
        problems.append(f"{source} must be between {lo} and {hi}, got {number}")
        return lo
    return number


def _positive_float(value: Any, source: str, problems: list[str]) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        problems.append(f"{source} must be a number of seconds, got {value!r}")
        return 1.0
    if not number > 0:
        problems.append(f"{source} must be more than 0 seconds, got {number}")
        return 1.0
    return number


def _split_keys(raw: str) -> list[str]:
    return [k.strip() for k in raw.split(",") if k.strip()]


def _str_list(value: Any, source: str, problems: list[str]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    problems.append(f"{source} must be a string or a list of strings")
    return []


def _check_base_url(url: Any, source: str, problems: list[str]) -> str | None:
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) < 10:
        problems.append(f"{source} must be an http:// or https:// URL, got {url!r}")
        return None
    return url.rstrip("/")


def _providers(
    file: Mapping[str, Any], env: Mapping[str, str], problems: list[str], warnings: list[str]
) -> dict[str, ProviderConfig]:
    from .providers.registry import wire_formats  # the registry imports this module

    formats = sorted(wire_formats())
    table = _table(file, "providers", problems)
    rows: dict[str, ProviderPreset] = dict(PRESETS)
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in table.items():
        if not isinstance(entry, dict):
            problems.append(f"[providers.{name}] must be a table")
            continue
        if not ALIAS_NAME.fullmatch(name) or "/" in name:
            problems.append(f"[providers.{name}]: invalid provider name")
            continue
        entries[name] = entry
        _unknown_keys(entry, _PROVIDER_KEYS, f"[providers.{name}]", problems)
        if name not in rows:
            wire = entry.get("format", "openai")
            if wire not in formats:
                problems.append(
                    f"[providers.{name}] format must be one of {', '.join(formats)}, got {wire!r}"
                )
                continue
            if "base_url" not in entry:
                problems.append(f"[providers.{name}] needs a base_url")
                continue
            rows[name] = ProviderPreset(name, wire, "", key_required=False)

    result: dict[str, ProviderConfig] = {}
    for name, preset in rows.items():
        entry = entries.get(name, {})
        prefix = env_prefix(name)
        explicit = name in entries
        base_url = preset.base_url
        builtin_only = base_url.startswith("mock:")
        if "base_url" in entry and not builtin_only:
            checked = _check_base_url(entry["base_url"], f"[providers.{name}] base_url", problems)
            base_url = checked or base_url
        if env.get(f"{prefix}_BASE_URL") and not builtin_only:
            checked = _check_base_url(env[f"{prefix}_BASE_URL"], f"{prefix}_BASE_URL", problems)
            base_url = checked or base_url
            explicit = True

        keys: list[str] = []
        key_env = f"{prefix}_API_KEY"
        for file_key in ("api_key", "keys"):
            if file_key in entry:
                keys += _str_list(entry[file_key], f"[providers.{name}] {file_key}", problems)
        if env.get(f"{prefix}_API_KEYS"):
            keys = _split_keys(env[f"{prefix}_API_KEYS"])
            key_env = f"{prefix}_API_KEYS"
        elif env.get(key_env):
            keys = _split_keys(env[key_env])
        keys = list(dict.fromkeys(keys))
        if keys and not builtin_only:
            explicit = True
        if preset.key_prefix:
            for key in keys:
                if not key.startswith(preset.key_prefix):
                    warnings.append(
                        f"{name}: key {mask_key(key)} does not look like a {name} key "
                        f"(they usually start with {preset.key_prefix!r})"
                    )

        models = _str_list(entry.get("models", []), f"[providers.{name}] models", problems)
        headers_raw = entry.get("headers", {})
        headers: tuple[tuple[str, str], ...] = preset.headers
        if not isinstance(headers_raw, dict) or not all(
            isinstance(v, str) for v in headers_raw.values()
        ):
            problems.append(f"[providers.{name}] headers must be a table of strings")
        else:
            headers = headers + tuple(headers_raw.items())
        key_required = bool(entry.get("key_required", preset.key_required))
        overrides = parse_overrides(entry, f"[providers.{name}]", problems)

        result[name] = ProviderConfig(
            name=name,
            wire=preset.wire,
            base_url=base_url,
            keys=tuple(keys),
            key_env=key_env,
            key_required=key_required,
            models=tuple(models),
            headers=headers,
            overrides=overrides,
            explicit=explicit,
        )
    return result


def _json_env(env: Mapping[str, str], name: str, problems: list[str]) -> dict[str, Any]:
    raw = env.get(name)
    if not raw:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError as e:
        problems.append(f"{name} is not valid JSON: {e}")
        return {}
    if not isinstance(parsed, dict):
        problems.append(f"{name} must be a JSON object")
        return {}
    return parsed


def _aliases(
    file: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Aliases naming one model, and aliases naming an ordered fallback chain."""
    aliases: dict[str, Any] = dict(_table(file, "aliases", problems))
    aliases.update(_json_env(env, "MINI_LLM_MODEL_ALIASES", problems))
    single: dict[str, str] = {}
    chains: dict[str, tuple[str, ...]] = {}
    for name, target in aliases.items():
        if not isinstance(name, str) or not ALIAS_NAME.fullmatch(name):
            problems.append(
                f"alias {name!r}: invalid name (letters, digits and . _ : @ + / -, at most 128)"
            )
        elif isinstance(target, str) and target:
            single[name] = target
        elif isinstance(target, list) and target and all(isinstance(t, str) and t for t in target):
            chains[name] = tuple(target)
        else:
            problems.append(
                f"alias {name!r}: target must be a model name or a list of them, got {target!r}"
            )
    return single, chains


def _fallbacks(
    file: Mapping[str, Any], env: Mapping[str, str], problems: list[str]
) -> dict[str, tuple[str, ...]]:
    table: dict[str, Any] = dict(_table(file, "fallbacks", problems))
    table.update(_json_env(env, "MINI_LLM_FALLBACKS", problems))
    for name, entry in _table(file, "models", problems).items():
        if isinstance(entry, dict) and "fallbacks" in entry:
            table.setdefault(name, entry["fallbacks"])
    result: dict[str, tuple[str, ...]] = {}
    for name, chain in table.items():
        if isinstance(chain, str):
            chain = [chain]
        if not isinstance(chain, list) or not all(isinstance(c, str) and c for c in chain):
            problems.append(f"fallbacks for {name!r} must be a list of model names")
            continue
        result[name] = tuple(chain)
    return result


def _check_names(
    aliases: Mapping[str, str],
    chains: Mapping[str, tuple[str, ...]],
    fallbacks: Mapping[str, tuple[str, ...]],
    deployments: Mapping[str, Deployment],
    model_overrides: Mapping[str, Overrides],
    providers: Mapping[str, ProviderConfig],
    problems: list[str],
) -> None:
    """Every name the routing tables use must lead to a provider, without cycles."""
    hint = (
        f"use provider/model with one of: {', '.join(sorted(providers))}; "
        "or an alias, chain or deployment name"
    )

    def reaches(name: str, path: tuple[str, ...]) -> str | None:
        """None when `name` resolves; else what is wrong."""
        if name in path:
            return "a cycle: " + " -> ".join((*path, name))
        path = (*path, name)
        if name in deployments:
            for model, _ in deployments[name].targets:
                why = reaches(model, path)
                if why:
                    return why
            return None
        if name in chains:
            for model in chains[name]:
                why = reaches(model, path)
                if why:
                    return why
            return None
        if name in aliases:
            return reaches(aliases[name], path)
        resolved = resolve_name(name, {}, providers)
        if resolved is None or resolved[0] not in providers:
            return f"{name!r} is unknown ({hint})"
        return None

    for name in (*aliases, *chains):
        why = reaches(name, ())
        if why:
            problems.append(f"alias {name!r}: {why}")
    for name, deployment in deployments.items():
        why = reaches(name, ())
        if why:
            problems.append(f"[deployments.{name}]: {why}")
        for fallback in deployment.fallbacks:
            why = reaches(fallback, ())
            if why:
                problems.append(f"[deployments.{name}] fallback: {why}")
    for name, chain in fallbacks.items():
        for model in (name, *chain):
            why = reaches(model, ())
            if why:
                problems.append(f"fallbacks of {name!r}: {why}")
    for name in model_overrides:
        resolved = resolve_name(name, {}, providers)
        if resolved is None or resolved[0] not in providers:
            problems.append(f'[models."{name}"]: not a provider/model name ({hint})')
