"""The official `openai` and `anthropic` clients, pointed at the gateway (optional extras)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .client import resolve_base_url
from .errors import MiniLLMError

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = ["anthropic_client", "openai_client"]

# The gateway holds the provider keys; the official clients insist on having one of their own.
_PLACEHOLDER_KEY = "mini-llm"


def openai_client(
    base_url: str | None = None, *, auto: bool = True, api_key: str | None = None, **kwargs: Any
) -> openai.OpenAI:
    """`openai.OpenAI` using the gateway (started on demand unless `auto=False`); `kwargs` go
    to the constructor."""
    try:
        import openai
    except ImportError:
        raise MiniLLMError(
            "the openai package is not installed: pip install 'mini-llm[openai]'"
        ) from None
    url = resolve_base_url(base_url, auto) + "/v1"
    return openai.OpenAI(base_url=url, api_key=api_key or _PLACEHOLDER_KEY, **kwargs)


def anthropic_client(
    base_url: str | None = None, *, auto: bool = True, api_key: str | None = None, **kwargs: Any
) -> anthropic.Anthropic:
    """`anthropic.Anthropic` using the gateway's `/v1/messages` (started on demand unless
    `auto=False`); `kwargs` go to the constructor."""
    try:
        import anthropic
    except ImportError:
        raise MiniLLMError(
            "the anthropic package is not installed: pip install 'mini-llm[anthropic]'"
        ) from None
    url = resolve_base_url(base_url, auto)
    return anthropic.Anthropic(base_url=url, api_key=api_key or _PLACEHOLDER_KEY, **kwargs)
