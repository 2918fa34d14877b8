from __future__ import annotations

from pathlib import Path

import pytest

from mini_llm.config import ConfigError, Settings, load_settings, mask_key


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
