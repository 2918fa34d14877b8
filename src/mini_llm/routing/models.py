"""How a model name becomes (provider, upstream model): aliases, `provider/model`, detection.

Pure functions over data, shared by configuration checks at start-up and the router.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

__all__ = [
    "ALIAS_NAME",
    "CAPABILITIES",
    "DETECTION",
    "Resolution",
    "detect_provider",
    "model_capabilities",
    "resolve_name",
]

# A bare model name's provider, by prefix: first match wins.
DETECTION: tuple[tuple[str, str], ...] = (
    ("claude", "anthropic"),
    ("gpt", "openai"),
    ("chatgpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("text-embedding", "openai"),  # Gemini's text-embedding-004: name it gemini/...
    ("gemini-embedding", "gemini"),
    ("gemini", "gemini"),
)

# What a model does, by a word in its name (first match wins); any other model chats.
CAPABILITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("embed", ("embeddings",)),  # text-embedding-3-small, gemini-embedding-001, nomic-embed-text
)
CHAT_CAPABILITIES = ("chat",)

ALIAS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+/-]{0,127}")

Resolution = tuple[str, str]


def detect_provider(model: str) -> str | None:
    for prefix, provider in DETECTION:
        if model.startswith(prefix):
            return provider
    return None


def model_capabilities(model: str) -> tuple[str, ...]:
    """What a model can be asked (`chat`, `embeddings`), from its name."""
    name = model.rsplit("/", 1)[-1].lower()
    for word, capabilities in CAPABILITIES:
        if word in name:
            return capabilities
    return CHAT_CAPABILITIES


def resolve_name(
    name: str, aliases: Mapping[str, str], providers: Collection[str]
) -> Resolution | None:
    """`(provider, upstream_model)` for a name, or None when nothing matches.

    Aliases are followed (an alias may name another alias); then `provider/model` when the
    prefix is a known provider; then the detection table. A cycle of aliases resolves to None.
    """
    seen: set[str] = set()
    while name in aliases:
        if name in seen:
            return None
        seen.add(name)
        name = aliases[name]
    prefix, sep, rest = name.partition("/")
    if sep:
        if prefix in providers and rest:
            return prefix, rest
        return None
    provider = detect_provider(name)
    if provider is None:
        return None
    return provider, name
