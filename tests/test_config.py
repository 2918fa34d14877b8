from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mini_llm.config import (
    ConfigError,
    Settings,
    exposure_warning,
    load_settings,
    mask_header,
    mask_key,
    plan_reload,
    reload_settings,
)

from .harness import clean_env


def settings(env: dict[str, str] | None = None, **kwargs: object) -> Settings:
    return load_settings(env=env or {}, **kwargs)  # type: ignore[arg-type]


def test_defaults() -> None:
    s = settings()
    assert (s.host, s.port, s.port_retries) == ("127.0.0.1", 3333, 10)
    assert s.max_body_bytes == 10 * 1024 * 1024
    assert s.aliases == {}
    assert s.providers["mock"].usable
    assert not s.providers["openai"].usable
    assert s.providers["openai"].base_url == "https://api.openai.com/v1"


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text('[server]\nhost = "0.0.0.0"\nport = 4000\nport_retries = 3\n')
    s = settings(config_path=str(config))
    assert (s.host, s.port, s.port_retries) == ("0.0.0.0", 4000, 3)
    s = settings({"MINI_LLM_PORT": "5000"}, config_path=str(config))
    assert (s.host, s.port) == ("0.0.0.0", 5000)
    s = settings({"MINI_LLM_PORT": "5000"}, config_path=str(config), flags={"port": 6000})
    assert s.port == 6000
    s = settings({"MINI_LLM_CONFIG": str(config)})
    assert s.port == 4000
    assert s.config_path == str(config)


def test_keys_from_env_and_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[providers.openai]\nkeys = ["sk-file-aaaa1", "sk-file-bbbb2"]\n')
    s = settings(config_path=str(config))
    assert s.providers["openai"].keys == ("sk-file-aaaa1", "sk-file-bbbb2")
    assert s.providers["openai"].explicit
    s = settings({"OPENAI_API_KEYS": " sk-env-1111a , sk-env-2222b ,"}, config_path=str(config))
    assert s.providers["openai"].keys == ("sk-env-1111a", "sk-env-2222b")
    assert s.providers["openai"].key_env == "OPENAI_API_KEYS"
    s = settings({"GROQ_API_KEY": "gsk_one1234"})
    assert s.providers["groq"].keys == ("gsk_one1234",)


def test_custom_provider_from_file(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[providers.my-vllm]\nbase_url = "http://127.0.0.1:9/v1/"\nmodels = ["llama"]\n'
        'headers = { "X-Team" = "r" }\n'
    )
    s = settings({"MY_VLLM_API_KEY": "secret-key-123456"}, config_path=str(config))
    p = s.providers["my-vllm"]
    assert p.base_url == "http://127.0.0.1:9/v1"
    assert p.keys == ("secret-key-123456",)
    assert p.models == ("llama",)
    assert ("X-Team", "r") in p.headers
    assert p.wire == "openai"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[providers.custom]\nmodels = ["x"]\n')
    env = {
        "MINI_LLM_PORT": "99999",
        "MINI_LLM_PORT_RETRIES": "many",
        "MINI_LLM_MODEL_ALIASES": '{"ok": "openai/gpt-4o", "bad name!": "mock/echo", '
        '"lost": "nowhere/model", "loop1": "loop2", "loop2": "loop1"}',
        "OPENAI_BASE_URL": "ftp://example.invalid",
        "MINI_LLM_TIMEOUT_CONNECT": "-1",
    }
    with pytest.raises(ConfigError) as info:
        settings(env, config_path=str(config))
    text = "\n".join(info.value.problems)
    assert "MINI_LLM_PORT must be between 0 and 65535" in text
    assert "MINI_LLM_PORT_RETRIES must be a whole number" in text
    assert "'bad name!': invalid name" in text
    assert "'lost'" in text
    assert "'loop1'" in text
    assert "OPENAI_BASE_URL must be an http:// or https:// URL" in text
    assert "MINI_LLM_TIMEOUT_CONNECT" in text
    assert "[providers.custom] needs a base_url" in text
    assert "'ok'" not in text
    assert len(info.value.problems) == 9


def test_bad_alias_json_and_bad_toml(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[server\n")
    with pytest.raises(ConfigError) as info:
        settings({"MINI_LLM_MODEL_ALIASES": "{not json"}, config_path=str(config))
    text = "\n".join(info.value.problems)
    assert "not valid TOML" in text
    assert "MINI_LLM_MODEL_ALIASES is not valid JSON" in text
    with pytest.raises(ConfigError, match="does not exist"):
        settings(config_path=str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="JSON object"):
        settings({"MINI_LLM_MODEL_ALIASES": '["a"]'})


def test_alias_to_alias_and_detection() -> None:
    s = settings({"MINI_LLM_MODEL_ALIASES": '{"a": "b", "b": "gpt-4o", "c": "mock/echo"}'})
    assert s.aliases == {"a": "b", "b": "gpt-4o", "c": "mock/echo"}


def test_key_format_warning_shows_only_last_four() -> None:
    key = "pasted-the-wrong-key-WXYZ"
    s = settings({"OPENAI_API_KEY": key})
    (warning,) = s.warnings
    assert "WXYZ" in warning
    assert key not in warning
    assert "pasted" not in warning
    assert settings({"OPENAI_API_KEY": "sk-proper-key-123"}).warnings == ()


def test_describe_masks_every_key() -> None:
    s = settings({"OPENAI_API_KEYS": "sk-secret-one-1111,sk-secret-two-2222"})
    described = repr(s.describe())
    assert "secret" not in described
    assert "1111" in described
    assert "2222" in described


def test_mask_key() -> None:
    assert mask_key("sk-abcdefghijkl1234") == "…1234"
    assert "short" not in mask_key("short")


def test_unknown_settings_are_problems(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[server]\nprot = 1\n[timeouts]\nfirst_bite = 2\n[providers.openai]\napi_kye = "x"\n'
        "[servers]\n"
    )
    with pytest.raises(ConfigError) as info:
        settings(config_path=str(config))
    text = "\n".join(info.value.problems)
    for wrong in ("'prot'", "'first_bite'", "'api_kye'", "'servers'"):
        assert wrong in text


def test_provider_header_values_are_secrets(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[providers.azure-ish]\nbase_url = "http://127.0.0.1:9/v1"\n'
        'headers = { "api-key" = "azure-secret-value-123" }\n'
    )
    s = settings(config_path=str(config))
    assert "azure-secret-value-123" in s.secrets()


def test_fingerprint_is_stable_short_and_hides_keys(tmp_path: Path) -> None:
    key = "sk-secret-fingerprint-1111"
    env = {"OPENAI_API_KEY": key, "MINI_LLM_MODEL_ALIASES": '{"fast": "openai/gpt-4o"}'}
    first = settings(env).fingerprint()
    assert first == settings(dict(env)).fingerprint()
    assert len(first) == 16
    int(first, 16)
    assert key[-4:] not in first

    other_key = settings({**env, "OPENAI_API_KEY": "sk-secret-fingerprint-2222"})
    other_alias = settings({**env, "MINI_LLM_MODEL_ALIASES": '{"fast": "openai/gpt-4.1"}'})
    other_timeout = settings({**env, "MINI_LLM_TIMEOUT_IDLE": "5"})
    prints = {first, *(s.fingerprint() for s in (other_key, other_alias, other_timeout))}
    assert len(prints) == 4

    config = tmp_path / "c.toml"
    config.write_text('[aliases]\nfast = "openai/gpt-4o"\n')
    same_from_a_file = settings({"OPENAI_API_KEY": key}, config_path=str(config))
    assert same_from_a_file.fingerprint() == first


def test_diff_names_the_settings_that_differ_never_their_values() -> None:
    key = "sk-secret-diff-aaaa1111"
    base = settings({"OPENAI_API_KEY": key})
    changed = settings(
        {
            "OPENAI_API_KEY": "sk-secret-diff-bbbb2222",
            "MINI_LLM_PORT": "4000",
            "MINI_LLM_MODEL_ALIASES": '{"fast": "mock/echo"}',
            "MINI_LLM_RETRY_ATTEMPTS": "5",
        }
    )
    names = base.diff(changed)
    assert names == ["aliases.fast", "port", "providers.openai.keys", "retries.attempts"]
    assert changed.diff(base) == names
    assert base.diff(settings({"OPENAI_API_KEY": key})) == []
    assert "aaaa" not in repr(names)


def test_plan_reload_keeps_what_needs_a_restart() -> None:
    running = settings({"MINI_LLM_PORT": "4000"})
    loaded = settings(
        {"MINI_LLM_PORT": "5000", "MINI_LLM_POOL_SIZE": "8", "MINI_LLM_TIMEOUT_IDLE": "9"}
    )
    plan = plan_reload(running, loaded)
    assert plan.needs_restart == ["pool_size", "port"]
    assert plan.changed == ["timeouts.idle"]
    assert (plan.settings.port, plan.settings.pool_size) == (4000, 0)
    assert plan.settings.timeouts.idle == 9
    assert plan.settings.source_of("port") == "MINI_LLM_PORT"
    assert plan.settings.source_of("pool_size") == "default"
    assert plan.settings.diff(running) == ["timeouts.idle"]


def test_reload_settings_reads_the_same_way_again(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[aliases]\nfast = "mock/echo"\n')
    first = settings({"MINI_LLM_TIMEOUT_IDLE": "7"}, config_path=str(config), flags={"port": 9})
    config.write_text('[aliases]\nfast = "mock/echo"\nslow = "mock/echo"\n')
    again = reload_settings(first)
    assert set(again.aliases) == {"fast", "slow"}
    assert (again.timeouts.idle, again.port) == (7, 9)
    config.write_text("[aliases]\nfast = 1\n")
    with pytest.raises(ConfigError, match="alias 'fast'"):
        reload_settings(first)
    with pytest.raises(ConfigError, match="nothing to re-read"):
        reload_settings(Settings())


def test_header_values_that_look_secret_are_masked(tmp_path: Path) -> None:
    assert mask_header("X-Team", "research") == "research"
    assert mask_header("api-key", "short-123456") == "…3456"
    assert mask_header("Authorization", "Bearer abcdefgh1234") == "…1234"
    assert mask_header("X-Signature", "a-long-opaque-value-5678") == "…5678"
    config = tmp_path / "c.toml"
    config.write_text(
        '[providers.azure-ish]\nbase_url = "http://127.0.0.1:9/v1"\n'
        'headers = { "api-key" = "azure-secret-value-123", "X-Team" = "r" }\n'
    )
    described = settings(config_path=str(config)).describe()
    assert described["providers"]["azure-ish"]["headers"] == {"api-key": "…-123", "X-Team": "r"}
    assert "azure-secret" not in repr(described)


def test_exposure_warning_only_for_addresses_others_reach() -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2", "[::1]"):
        assert exposure_warning(host) is None
    for host in ("0.0.0.0", "::", "192.168.1.5", "gateway.example"):
        warning = exposure_warning(host)
        assert warning is not None
        assert "no authentication" in warning
        assert host in warning


def config_check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mini_llm", "config", *args],
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=20,
    )


def test_config_check_shows_where_each_value_came_from(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text(
        '[server]\nport = 4000\n[aliases]\nfast = "openai/gpt-4o-mini"\n'
        '[providers.my-vllm]\nbase_url = "http://127.0.0.1:9/v1"\n'
        'headers = { "X-Team" = "research", "Authorization" = "Bearer secret-header-9876" }\n'
    )
    env = {"OPENAI_API_KEYS": "sk-very-secret-0001,sk-very-secret-0002"}
    result = config_check("check", "--config", str(config), MINI_LLM_TIMEOUT_IDLE="5", **env)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
    assert rows["port"] == ["4000", str(config), "restart"]
    assert rows["host"] == ["127.0.0.1", "default", "restart"]
    assert rows["timeouts.idle"] == ["5.0", "MINI_LLM_TIMEOUT_IDLE", "live"]
    assert rows["aliases.fast"] == ["openai/gpt-4o-mini", str(config), "live"]
    assert rows["providers.openai.keys"] == ['["…0001",', '"…0002"]', "OPENAI_API_KEYS", "live"]
    assert '"Authorization": "…9876"' in result.stdout
    assert '"X-Team": "research"' in result.stdout
    assert "secret" not in result.stdout + result.stderr
    same = settings({**env, "MINI_LLM_TIMEOUT_IDLE": "5"}, config_path=str(config))
    assert result.stdout.startswith(f"configuration: {config} (fingerprint {same.fingerprint()})")
    fingerprint = settings(env, config_path=str(config)).fingerprint()

    shown = json.loads(config_check("check", "--json", "--config", str(config), **env).stdout)
    assert shown["fingerprint"] == fingerprint
    assert shown["settings"]["port"] == {"value": 4000, "from": str(config), "reloadable": False}
    assert shown["providers"]["my-vllm"]["headers"]["Authorization"] == "…9876"


def test_config_check_checks_every_layer(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text("[server]\nport = 99999\n")
    result = config_check("check", "--config", str(config), MINI_LLM_PORT="4000")
    assert result.returncode == 2
    assert "[server] port must be between 0 and 65535, got 99999" in result.stderr


def test_config_without_a_subcommand_is_a_usage_error() -> None:
    result = config_check()
    assert result.returncode == 2
    assert result.stderr.startswith("usage: mini-llm config")
    assert "mini-llm: config: a subcommand is needed (check)" in result.stderr
