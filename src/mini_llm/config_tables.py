"""The configuration's tables of names: providers, aliases, fallbacks, deployments, per-model
settings. Each parser appends every problem it finds and records where each entry came from.

The scalar settings are rows of `settings_table.py`; `config.load_settings` puts both together.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config_clouds import CLOUD_KEYS, cloud_settings
from .providers.base import Credential
from .providers.presets import PRESETS, ProviderPreset, env_prefix
from .routing.models import ALIAS_NAME, resolve_name
from .routing.policies import Deployment, Overrides
from .settings_table import ROWS_BY_NAME, STRATEGIES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ProviderConfig",
    "check_names",
    "mask_key",
    "parse_aliases",
    "parse_deployments",
    "parse_fallbacks",
    "parse_overrides",
    "parse_providers",
    "read_toml",
    "table",
    "unknown_keys",
]

PROVIDER_KEYS = (
    "format",
    "base_url",
    "api_key",
    "keys",
    "key_required",
    "models",
    "headers",
    "timeouts",
    "retries",
    *CLOUD_KEYS,
)


def mask_key(key: str) -> str:
    """A key as it may be shown anywhere: at most its last 4 characters."""
    return "…" + key[-4:] if len(key) >= 12 else "…" * 3


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
    credentials: tuple[Credential, ...] = ()
    """Credentials with fields (a cloud's access key, secret and session token; a service
    account), when the provider's kind uses them; then `keys` only lists their secrets."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """The settings a provider kind builds its wire from (Azure's deployments, a region)."""

    @property
    def usable(self) -> bool:
        return bool(self.keys) or bool(self.credentials) or not self.key_required


def read_toml(path: str, problems: list[str]) -> dict[str, Any]:
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


def table(file: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = file.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"[{name}] must be a table")
        return {}
    return value


def unknown_keys(
    entries: Mapping[str, Any], known: tuple[str, ...], where: str, problems: list[str]
) -> None:
    for key in entries:
        if key not in known:
            problems.append(f"{where}: unknown setting {key!r} (known: {', '.join(known)})")


def _policy(value: Any, group: str, where: str, problems: list[str]) -> dict[str, Any]:
    """A partial `timeouts` or `retries` table, each value checked by its settings row."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where} must be a table")
        return {}
    known = tuple(name.partition(".")[2] for name in ROWS_BY_NAME if name.startswith(group))
    out: dict[str, Any] = {}
    for key, raw in value.items():
        row = ROWS_BY_NAME.get(f"{group}.{key}")
        if row is None:
            problems.append(f"{where}: unknown setting {key!r} (known: {', '.join(known)})")
            continue
        if isinstance(raw, (bool, str)):
            problems.append(f"{where} {key} must be a number, got {raw!r}")
            continue
        try:
            out[key] = row.kind.parse(raw)
        except ValueError as e:
            problems.append(f"{where} {key} {e}")
    return out


def parse_overrides(entry: Mapping[str, Any], where: str, problems: list[str]) -> Overrides:
    return Overrides(
        _policy(entry.get("timeouts"), "timeouts", f"{where} timeouts", problems),
        _policy(entry.get("retries"), "retries", f"{where} retries", problems),
    )


def parse_deployments(
    entries: Mapping[str, Any], default_strategy: str, problems: list[str]
) -> dict[str, Deployment]:
    deployments: dict[str, Deployment] = {}
    for name, entry in entries.items():
        where = f"[deployments.{name}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a table")
            continue
        unknown_keys(entry, ("strategy", "targets", "fallbacks"), where, problems)
        strategy = entry.get("strategy", default_strategy)
        if strategy not in STRATEGIES:
            problems.append(f"{where} strategy must be one of {', '.join(STRATEGIES)}")
            continue
        raw_targets = entry.get("targets")
        if not isinstance(raw_targets, list) or not raw_targets:
            problems.append(f"{where} needs targets = [...] (models, or {{model, weight}} tables)")
            continue
        targets: list[tuple[str, float]] = []
        for item in raw_targets:
            if isinstance(item, str):
                targets.append((item, 1.0))
            elif isinstance(item, dict) and isinstance(item.get("model"), str):
                weight = item.get("weight", 1)
                if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                    problems.append(f"{where} weight must be a number above 0, got {weight!r}")
                    continue
                targets.append((item["model"], float(weight)))
            else:
                problems.append(f"{where} targets: {item!r} is not a model or {{model, weight}}")
        fallbacks = entry.get("fallbacks", [])
        if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
            problems.append(f"{where} fallbacks must be a list of model names")
            fallbacks = []
        deployments[name] = Deployment(name, tuple(targets), strategy, tuple(fallbacks))
    return deployments


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


def parse_providers(
    file: Mapping[str, Any],
    env: Mapping[str, str],
    file_label: str,
    problems: list[str],
    warnings: list[str],
    sources: dict[str, str],
) -> dict[str, ProviderConfig]:
    """Presets and `[providers.*]` entries, with keys and base URLs from the environment."""
    from .providers.registry import provider_kinds, wire_formats  # the registry imports config

    formats = sorted(wire_formats())
    kinds = provider_kinds()
    rows: dict[str, ProviderPreset] = dict(PRESETS)
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in table(file, "providers", problems).items():
        if not isinstance(entry, dict):
            problems.append(f"[providers.{name}] must be a table")
            continue
        if not ALIAS_NAME.fullmatch(name) or "/" in name:
            problems.append(f"[providers.{name}]: invalid provider name")
            continue
        entries[name] = entry
        unknown_keys(entry, PROVIDER_KEYS, f"[providers.{name}]", problems)
        if name not in rows and "type" in entry:
            if entry["type"] not in kinds:
                problems.append(
                    f"[providers.{name}] type must be one of {', '.join(sorted(kinds))}, "
                    f"got {entry['type']!r}"
                )
                continue
            rows[name] = ProviderPreset(name, entry["type"], "")
        elif name in rows and "type" in entry and entry["type"] != rows[name].wire:
            problems.append(f"[providers.{name}] is built in: its type cannot change")
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
        if explicit:
            sources[f"providers.{name}"] = file_label
        base_url = preset.base_url
        builtin_only = base_url.startswith("mock:")
        if "base_url" in entry and not builtin_only:
            checked = _check_base_url(entry["base_url"], f"[providers.{name}] base_url", problems)
            base_url = checked or base_url
            sources[f"providers.{name}.base_url"] = file_label
        if env.get(f"{prefix}_BASE_URL") and not builtin_only:
            checked = _check_base_url(env[f"{prefix}_BASE_URL"], f"{prefix}_BASE_URL", problems)
            base_url = checked or base_url
            sources[f"providers.{name}.base_url"] = f"{prefix}_BASE_URL"
            explicit = True

        keys: list[str] = []
        key_env = f"{prefix}_API_KEY"
        for file_key in ("api_key", "keys"):
            if file_key in entry:
                keys += _str_list(entry[file_key], f"[providers.{name}] {file_key}", problems)
                sources[f"providers.{name}.keys"] = file_label
        if env.get(f"{prefix}_API_KEYS"):
            keys = _split_keys(env[f"{prefix}_API_KEYS"])
            key_env = f"{prefix}_API_KEYS"
            sources[f"providers.{name}.keys"] = key_env
        elif env.get(key_env):
            keys = _split_keys(env[key_env])
            sources[f"providers.{name}.keys"] = key_env
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
        key_required = entry.get("key_required", preset.key_required)
        if not isinstance(key_required, bool):
            problems.append(f"[providers.{name}] key_required must be true or false")
            key_required = preset.key_required
        credentials: tuple[Credential, ...] = ()
        options: dict[str, Any] = {}
        if preset.wire in kinds:
            given = base_url if "providers." + name + ".base_url" in sources else ""
            cloud = cloud_settings(preset.wire, name, prefix, entry, env, given, keys, problems)
            base_url, credentials, options = cloud.base_url, tuple(cloud.credentials), cloud.options
            keys = cloud.secrets
            explicit = explicit or cloud.explicit
        else:
            for key in CLOUD_KEYS:
                if key in entry and key != "type":
                    problems.append(
                        f"[providers.{name}] {key} needs a type (azure, bedrock, vertex)"
                    )
        result[name] = ProviderConfig(
            name=name,
            wire=preset.wire,
            base_url=base_url,
            keys=tuple(keys),
            key_env=key_env,
            key_required=key_required,
            models=tuple(models),
            headers=headers,
            overrides=parse_overrides(entry, f"[providers.{name}]", problems),
            explicit=explicit,
            credentials=credentials,
            options=options,
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


def _layered(
    file: Mapping[str, Any],
    name: str,
    env: Mapping[str, str],
    env_name: str,
    file_label: str,
    problems: list[str],
    sources: dict[str, str],
) -> dict[str, Any]:
    """A table of names from the file, entries of a JSON variable over it; sources per entry."""
    entries: dict[str, Any] = dict(table(file, name, problems))
    for key in entries:
        sources[f"{name}.{key}"] = file_label
    from_env = _json_env(env, env_name, problems)
    entries.update(from_env)
    for key in from_env:
        sources[f"{name}.{key}"] = env_name
    return entries


def parse_aliases(
    file: Mapping[str, Any],
    env: Mapping[str, str],
    file_label: str,
    problems: list[str],
    sources: dict[str, str],
) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """Aliases naming one model, and aliases naming an ordered fallback chain."""
    entries = _layered(
        file, "aliases", env, "MINI_LLM_MODEL_ALIASES", file_label, problems, sources
    )
    single: dict[str, str] = {}
    chains: dict[str, tuple[str, ...]] = {}
    for name, target in entries.items():
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


def parse_fallbacks(
    file: Mapping[str, Any],
    env: Mapping[str, str],
    file_label: str,
    problems: list[str],
    sources: dict[str, str],
) -> dict[str, tuple[str, ...]]:
    entries = _layered(file, "fallbacks", env, "MINI_LLM_FALLBACKS", file_label, problems, sources)
    for name, entry in table(file, "models", problems).items():
        if isinstance(entry, dict) and "fallbacks" in entry and name not in entries:
            entries[name] = entry["fallbacks"]
            sources[f"fallbacks.{name}"] = file_label
    result: dict[str, tuple[str, ...]] = {}
    for name, chain in entries.items():
        if isinstance(chain, str):
            chain = [chain]
        if not isinstance(chain, list) or not all(isinstance(c, str) and c for c in chain):
            problems.append(f"fallbacks for {name!r} must be a list of model names")
            continue
        result[name] = tuple(chain)
    return result


def check_names(
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
