"""mini-llm: a small, fast LLM gateway and SDK.

    import mini_llm

    url = mini_llm.ensure_gateway()          # the shared gateway, started if needed
    client = mini_llm.Client(auto=True)
    print(client.chat("mock/echo", "Hello").text)

Names are imported on first use, so that `import mini_llm` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "GatewayConfigError",
    "GatewayManager",
    "GatewayStartError",
    "GatewayVersionError",
    "InternalServerError",
    "MiniLLMError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "__version__",
    "anthropic_client",
    "ensure_gateway",
    "openai_client",
]

_LAZY = {
    "ensure_gateway": ".sdk.manager",
    "GatewayManager": ".sdk.manager",
    "Client": ".sdk.client",
    "AsyncClient": ".sdk.client",
    "openai_client": ".sdk.official",
    "anthropic_client": ".sdk.official",
    **dict.fromkeys(
        (
            "APIConnectionError",
            "APIStatusError",
            "APITimeoutError",
            "AuthenticationError",
            "BadRequestError",
            "GatewayConfigError",
            "GatewayStartError",
            "GatewayVersionError",
            "InternalServerError",
            "MiniLLMError",
            "NotFoundError",
            "PermissionDeniedError",
            "RateLimitError",
        ),
        ".sdk.errors",
    ),
}

if TYPE_CHECKING:
    from .sdk.client import AsyncClient, Client
    from .sdk.errors import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        GatewayConfigError,
        GatewayStartError,
        GatewayVersionError,
        InternalServerError,
        MiniLLMError,
        NotFoundError,
        PermissionDeniedError,
        RateLimitError,
    )
    from .sdk.manager import GatewayManager, ensure_gateway
    from .sdk.official import anthropic_client, openai_client


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # the public API only: not this module's own imports (`importlib`, `Any`...)
    return sorted(__all__)
