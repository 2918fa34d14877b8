"""The presets added for issue 16: rows only, each following the `<NAME>_API_KEY` /
`<NAME>_BASE_URL` rule, Anthropic-compatible ones passing /v1/messages through."""

from __future__ import annotations

import pytest

from mini_llm.config import load_settings
from mini_llm.providers.presets import PRESETS, env_prefix

OPENAI_FORMAT = {
    "cerebras": "https://api.cerebras.ai/v1",
    "sambanova": "https://api.sambanova.ai/v1",
    "perplexity": "https://api.perplexity.ai",
    "nvidia": "https://integrate.api.nvidia.com/v1",
    "huggingface": "https://router.huggingface.co/v1",
    "novita": "https://api.novita.ai/openai",
    "moonshot": "https://api.moonshot.ai/v1",
    "dashscope": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
    "zhipu": "https://open.bigmodel.cn/api/paas/v4",
    "cohere": "https://api.cohere.ai/compatibility/v1",
    "github": "https://models.github.ai/inference",
    "llamacpp": "http://127.0.0.1:8080/v1",
    "tgi": "http://127.0.0.1:3000/v1",
}
ANTHROPIC_FORMAT = {
    "deepseek-anthropic": "https://api.deepseek.com/anthropic/v1",
    "moonshot-anthropic": "https://api.moonshot.ai/anthropic/v1",
    "zhipu-anthropic": "https://open.bigmodel.cn/api/anthropic/v1",
}


@pytest.mark.parametrize(
    ("name", "wire", "url"),
    [(n, "openai", u) for n, u in OPENAI_FORMAT.items()]
    + [(n, "anthropic", u) for n, u in ANTHROPIC_FORMAT.items()],
)
def test_rows_and_the_environment_rule(name: str, wire: str, url: str) -> None:
    preset = PRESETS[name]
    assert (preset.wire, preset.base_url) == (wire, url)
    assert preset.key_required is (name not in ("llamacpp", "tgi"))
    prefix = env_prefix(name)
    env = {f"{prefix}_API_KEY": "key-for-" + name, f"{prefix}_BASE_URL": "http://127.0.0.1:9/v9"}
    provider = load_settings(env=env).providers[name]
    assert provider.keys == ("key-for-" + name,)
    assert provider.base_url == "http://127.0.0.1:9/v9"
    assert provider.usable and provider.explicit


def test_cloud_presets_wait_for_their_environment() -> None:
    providers = load_settings(env={}).providers
    for name in ("azure", "bedrock", "vertex"):
        assert not providers[name].usable
        assert not providers[name].explicit
