"""Built-in providers as data: one row each, no code.

An OpenAI-compatible provider is one `ProviderPreset` row: its wire format, default base URL,
the environment variables its keys are read from, whether it needs a key at all, and the
prefix its keys usually have (only used to warn about a key pasted into the wrong variable).
Custom providers from the config file become rows of the same shape at start-up.

The clouds (`azure`, `bedrock`, `vertex`) are rows too: their `wire` names a provider kind
(`registry.register_kind`), whose settings and usual environment variables `config_clouds.py`
reads; their base URL follows from those settings.
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
        # OpenAI-compatible servers
        ProviderPreset("cerebras", "openai", "https://api.cerebras.ai/v1", key_prefix="csk-"),
        ProviderPreset("sambanova", "openai", "https://api.sambanova.ai/v1"),
        ProviderPreset("perplexity", "openai", "https://api.perplexity.ai", key_prefix="pplx-"),
        ProviderPreset(
            "nvidia", "openai", "https://integrate.api.nvidia.com/v1", key_prefix="nvapi-"
        ),
        ProviderPreset(
            "huggingface", "openai", "https://router.huggingface.co/v1", key_prefix="hf_"
        ),
        ProviderPreset("novita", "openai", "https://api.novita.ai/openai"),
        ProviderPreset("moonshot", "openai", "https://api.moonshot.ai/v1", key_prefix="sk-"),
        ProviderPreset(
            "dashscope", "openai", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
        ),
        ProviderPreset("zhipu", "openai", "https://open.bigmodel.cn/api/paas/v4"),
        ProviderPreset("cohere", "openai", "https://api.cohere.ai/compatibility/v1"),
        ProviderPreset("github", "openai", "https://models.github.ai/inference"),
        ProviderPreset("llamacpp", "openai", "http://127.0.0.1:8080/v1", key_required=False),
        ProviderPreset("tgi", "openai", "http://127.0.0.1:3000/v1", key_required=False),
        # Anthropic-compatible endpoints (the wire appends /messages)
        ProviderPreset("deepseek-anthropic", "anthropic", "https://api.deepseek.com/anthropic/v1"),
        ProviderPreset("moonshot-anthropic", "anthropic", "https://api.moonshot.ai/anthropic/v1"),
        ProviderPreset("zhipu-anthropic", "anthropic", "https://open.bigmodel.cn/api/anthropic/v1"),
        # clouds: a kind each, configured by config_clouds
        ProviderPreset("azure", "azure", ""),
        ProviderPreset("bedrock", "bedrock", ""),
        ProviderPreset("vertex", "vertex", ""),
    )
}
