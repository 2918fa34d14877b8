"""Costs equal hand-computed figures for cached and uncached requests of each provider, read
through each provider's own usage format; overrides; unknown prices are None, never 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from mini_llm.canonical import Usage
from mini_llm.config import ConfigError, load_settings
from mini_llm.providers.anthropic_answer import canonical_usage as anthropic_usage
from mini_llm.providers.gemini_answer import gemini_usage
from mini_llm.usage.prices import PriceTable, load_builtin

TABLE = PriceTable()


def cost(label: str, usage: Usage) -> float | None:
    return TABLE.cost(label, usage)


def test_the_table_names_its_source_and_date() -> None:
    data = load_builtin()
    assert data["source"] and data["date"] and data["unit"] == "USD per million tokens"
    assert all("input" in p and "output" in p for p in data["models"].values())


def test_openai_cached_tokens_are_part_of_prompt_tokens() -> None:
    uncached = Usage.from_canonical({"prompt_tokens": 1000, "completion_tokens": 500})
    assert cost("openai/gpt-4o", uncached) == pytest.approx((1000 * 2.50 + 500 * 10.0) / 1e6)
    cached = Usage.from_canonical(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 500,
            "prompt_tokens_details": {"cached_tokens": 800},
            "completion_tokens_details": {"reasoning_tokens": 200},
        }
    )
    assert (cached.input_tokens, cached.cached_input_tokens) == (200, 800)
    # 200 fresh × 2.50 + 800 cached × 1.25 + 500 out (200 of it reasoning) × 10
    assert cost("openai/gpt-4o", cached) == pytest.approx(
        (200 * 2.50 + 800 * 1.25 + 500 * 10.0) / 1e6
    )
    # a dated snapshot is priced as its model
    assert cost("openai/gpt-4o-2024-08-06", cached) == cost("openai/gpt-4o", cached)


def test_anthropic_cache_reads_and_writes_are_apart_from_input() -> None:
    uncached = Usage.from_canonical(anthropic_usage({"input_tokens": 1000, "output_tokens": 100}))
    assert cost("anthropic/claude-sonnet-4-5", uncached) == pytest.approx(
        (1000 * 3.0 + 100 * 15.0) / 1e6
    )
    usage = Usage.from_canonical(
        anthropic_usage(
            {
                "input_tokens": 20,
                "cache_read_input_tokens": 3000,
                "cache_creation_input_tokens": 1000,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 600,
                    "ephemeral_1h_input_tokens": 400,
                },
                "output_tokens": 100,
            }
        )
    )
    assert usage == Usage(20, 100, 3000, 1000, 0, 400)
    # 20 × 3 + 3000 reads × 0.30 + 600 5-minute writes × 3.75 + 400 1-hour writes × 6 + 100 × 15
    expected = (20 * 3.0 + 3000 * 0.30 + 600 * 3.75 + 400 * 6.0 + 100 * 15.0) / 1e6
    assert cost("anthropic/claude-sonnet-4-5-20250929", usage) == pytest.approx(expected)
    haiku = (20 * 1.0 + 3000 * 0.10 + 600 * 1.25 + 400 * 2.0 + 100 * 5.0) / 1e6
    assert cost("anthropic/claude-haiku-4-5", usage) == pytest.approx(haiku)


def test_gemini_cached_content_and_thoughts() -> None:
    uncached = Usage.from_canonical(
        gemini_usage({"promptTokenCount": 1000, "candidatesTokenCount": 200})
    )
    assert cost("gemini/gemini-2.5-flash", uncached) == pytest.approx(
        (1000 * 0.30 + 200 * 2.50) / 1e6
    )
    usage = Usage.from_canonical(
        gemini_usage(
            {
                "promptTokenCount": 1000,
                "cachedContentTokenCount": 600,
                "candidatesTokenCount": 200,
                "thoughtsTokenCount": 50,
            }
        )
    )
    assert usage == Usage(400, 250, 600, 0, 50)
    # thoughts are output, billed at the output price
    assert cost("gemini/gemini-2.5-flash", usage) == pytest.approx(
        (400 * 0.30 + 600 * 0.03 + 250 * 2.50) / 1e6
    )


def test_unknown_models_have_no_price_never_zero() -> None:
    assert cost("my-vllm/llama-3.1-8b", Usage(10, 10)) is None
    assert "my-vllm/llama-3.1-8b" not in TABLE


def test_overrides_from_the_config(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text(
        '[prices."my-vllm/llama-3.1-8b"]\n'
        "input_per_mtok = 0.1\noutput_per_mtok = 0.2\nreasoning_per_mtok = 1.0\n"
        '[prices."openai/gpt-4o"]\ncached_input_per_mtok = 0.5\n'
    )
    settings = load_settings(env={}, config_path=str(config))
    table = PriceTable(settings.prices)
    usage = Usage(input_tokens=1000, output_tokens=300, reasoning_tokens=100)
    assert table.cost("my-vllm/llama-3.1-8b", usage) == pytest.approx(
        (1000 * 0.1 + 200 * 0.2 + 100 * 1.0) / 1e6
    )
    # absent fields fall back: cached reads at the input price
    assert table.cost("my-vllm/llama-3.1-8b", Usage(cached_input_tokens=1000)) == pytest.approx(
        1000 * 0.1 / 1e6
    )
    # an override changes one field and keeps the rest
    assert table.cost("openai/gpt-4o", Usage(0, 0, 1000)) == pytest.approx(1000 * 0.5 / 1e6)
    assert table.cost("openai/gpt-4o", Usage(1000, 0)) == pytest.approx(1000 * 2.5 / 1e6)
    assert settings.source_of("prices.my-vllm/llama-3.1-8b") == str(config)


def test_bad_price_overrides_are_all_reported(tmp_path: Path) -> None:
    config = tmp_path / "mini-llm.toml"
    config.write_text(
        '[prices."a/b"]\ninput_per_mtok = -1\nouput_per_mtok = 2\n[prices.nameonly]\n'
        "input_per_mtok = 1\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(env={}, config_path=str(config))
    text = str(raised.value)
    assert "input_per_mtok must be a number" in text
    assert "unknown key 'ouput_per_mtok'" in text
    assert "name a model as provider/model" in text
