"""The settings table: every row follows defaults < file < environment < flags, every layer is
checked, and the layer that won is recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mini_llm.config import ConfigError, Settings, load_settings
from mini_llm.settings_table import (
    ROWS,
    Choice,
    Flag,
    Names,
    Origins,
    Seconds,
    Setting,
    Switch,
    Text,
    Url,
    Whole,
)


def three_values(row: Setting) -> tuple[Any, Any, Any]:
    """Three valid values for the file, the environment and a flag, none the default."""
    kind = row.kind
    if isinstance(kind, Whole):
        candidates: list[Any] = [kind.lo + i for i in range(4)]
    elif isinstance(kind, Seconds):
        candidates = [1.5, 2.5, 3.5, 4.5]
    elif isinstance(kind, Choice):
        candidates = list(kind.options) * 4
    elif isinstance(kind, Flag):
        return True, False, True
    elif isinstance(kind, Switch):  # "redis" would need a Redis URL too
        return "memory", "on", "memory"
    elif isinstance(kind, Names):
        return ("a",), ("b", "c"), ("d",)
    elif isinstance(kind, Url):
        candidates = [f"{kind.schemes[0]}://{host}.example:1" for host in "abc"]
    elif isinstance(kind, Origins):
        return ("http://a.example",), ("https://b.example:8443",), ("http://c.example",)
    else:
        assert isinstance(kind, Text)
        candidates = ["a.example", "b.example", "c.example"]
    distinct = [c for c in candidates if c != row.default]
    if isinstance(kind, Choice):  # two options: the flag repeats the file's, the env differs
        return distinct[0], row.default, distinct[0]
    return distinct[0], distinct[1], distinct[2]


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def effective(settings: Settings, name: str) -> Any:
    value: Any = settings
    for part in name.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name)
def test_every_row_follows_the_precedence(row: Setting, tmp_path: Path) -> None:
    from_file, from_env, from_flag = three_values(row)
    config = tmp_path / "mini-llm.toml"
    literal = json.dumps(from_file)  # a TOML literal too, for these values
    config.write_text(f"[{row.table}]\n{row.key} = {literal}\n")

    s = load_settings(env={})
    assert effective(s, row.name) == row.default
    assert s.source_of(row.name) == "default"

    s = load_settings(env={}, config_path=str(config))
    assert effective(s, row.name) == from_file
    assert s.sources[row.name] == str(config)

    env = {row.env: _env_text(from_env)}
    s = load_settings(env=env, config_path=str(config))
    assert effective(s, row.name) == from_env
    assert s.sources[row.name] == row.env

    s = load_settings(env=env, config_path=str(config), flags={row.name: from_flag})
    assert effective(s, row.name) == from_flag
    assert s.sources[row.name] == (row.flag or f"flag {row.name}")


def test_body_timeout_and_shutdown_grace_take_flags() -> None:
    s = load_settings(
        env={"MINI_LLM_BODY_TIMEOUT": "5", "MINI_LLM_SHUTDOWN_GRACE": "6"},
        flags={"body_timeout": 7.0, "shutdown_grace": 8.0},
    )
    assert (s.body_timeout, s.shutdown_grace) == (7.0, 8.0)


def test_every_layer_is_checked_not_only_the_winner(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text("[server]\nport = 99999\n[timeouts]\nconnect = -1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(
            env={"MINI_LLM_PORT": "4000", "MINI_LLM_TIMEOUT_CONNECT": "abc"},
            config_path=str(config),
            flags={"port": 5000},
        )
    assert info.value.problems == [
        "[server] port must be between 0 and 65535, got 99999",
        "[timeouts] connect must be more than 0 seconds, got -1.0",
        "MINI_LLM_TIMEOUT_CONNECT must be a number of seconds, got 'abc'",
    ]


def test_a_bad_flag_is_named_as_a_flag() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, flags={"port": -1, "workers": 0, "colour": "blue"})
    assert "--port must be between 0 and 65535, got -1" in info.value.problems
    assert "--workers must be between 1 and 1024, got 0" in info.value.problems
    assert "unknown setting 'colour' given as a flag" in info.value.problems


def test_per_provider_policies_use_the_rows_bounds(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text(
        "[providers.openai]\ntimeouts = { connect = 0 }\nretries = { attempts = 500 }\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(env={}, config_path=str(config))
    assert info.value.problems == [
        "[providers.openai] timeouts connect must be more than 0 seconds, got 0.0",
        "[providers.openai] retries attempts must be between 1 and 100, got 500",
    ]


def test_port_chosen_by_the_user_is_explicit(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text("[server]\nport = 3333\n")
    default = load_settings(env={})
    assert not default.port_explicit
    assert default.bind_retries == 10
    for s in (
        load_settings(env={}, config_path=str(config)),
        load_settings(env={"MINI_LLM_PORT": "4000"}),
        load_settings(env={}, flags={"port": 4000}),
    ):
        assert s.port_explicit
        assert s.bind_retries == 0


def test_every_row_has_a_unique_variable_and_toml_key() -> None:
    assert len({row.env for row in ROWS}) == len(ROWS)
    assert len({row.toml for row in ROWS}) == len(ROWS)
    assert all(row.env.startswith("MINI_LLM_") for row in ROWS)
    not_at_run_time = {row.name for row in ROWS if not row.reloadable}
    assert {"host", "port", "workers", "pool_size"} <= not_at_run_time


def test_flags_read_true_and_false() -> None:
    assert load_settings(env={"MINI_LLM_WATCH_CONFIG": "yes"}).watch_config
    assert not load_settings(env={"MINI_LLM_WATCH_CONFIG": "0"}).watch_config
    with pytest.raises(ConfigError, match="MINI_LLM_WATCH_CONFIG must be true or false"):
        load_settings(env={"MINI_LLM_WATCH_CONFIG": "sometimes"})
