"""Built-in providers as data: one row each, no code.

An OpenAI-compatible provider is one `ProviderPreset` row: its wire format, default base URL,
the environment variables its keys are read from, whether it needs a key at all, and the
prefix its keys usually have (only used to warn about a key pasted into the wrong variable).
Custom providers from the config file become rows of the same shape at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PRESETS", "ProviderPreset", "env_prefix"]


@dataclass(frozen=True, slots=True)
class ProviderPreset:
    name: str
    wire: str
    base_url: str
    key_required: bool = True
    key_prefix: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def env_prefix(name: str) -> str:
    """`my-local` -> `MY_LOCAL`: the prefix of a provider's environment variables."""
    return "".join(c if c.isalnum() else "_" for c in name).upper()


PRESETS: dict[str, ProviderPreset] = {
    p.name: p
    for p in (
        ProviderPreset("openai", "openai-responses", "https://api.openai.com/v1", key_prefix="sk-"),
        ProviderPreset(
            "anthropic", "anthropic", "https://api.anthropic.com/v1", key_prefix="sk-ant-"
        ),
        ProviderPreset("gemini", "gemini", "https://generativelanguage.googleapis.com/v1beta"),
        ProviderPreset("groq", "openai", "https://api.groq.com/openai/v1", key_prefix="gsk_"),
        ProviderPreset("mistral", "openai", "https://api.mistral.ai/v1"),
        ProviderPreset("together", "openai", "https://api.together.xyz/v1"),
        ProviderPreset("deepseek", "openai", "https://api.deepseek.com/v1", key_prefix="sk-"),
        ProviderPreset("openrouter", "openai", "https://openrouter.ai/api/v1", key_prefix="sk-or-"),
        ProviderPreset("fireworks", "openai", "https://api.fireworks.ai/inference/v1"),
        ProviderPreset("xai", "openai", "https://api.x.ai/v1", key_prefix="xai-"),
        ProviderPreset("ollama", "openai", "http://127.0.0.1:11434/v1", key_required=False),
        ProviderPreset("vllm", "openai", "http://127.0.0.1:8000/v1", key_required=False),
        ProviderPreset("lmstudio", "openai", "http://127.0.0.1:1234/v1", key_required=False),
        ProviderPreset("mock", "openai", "mock://local", key_required=False),
    )
}
