"""Provider: one configured upstream at run time — its configuration, wire format, transport,
the headers built once for it, and its keys (plain keys, or credentials with several fields).

Most providers have one wire format for every model. A provider of a registered kind (Azure,
Bedrock, Vertex) has its wires built from its own settings, and may pick one per model
(`wire_for`: Vertex speaks Gemini to Google's models and Anthropic to Claude)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..providers.base import Transport, WireFormat
from ..providers.registry import provider_kinds, transport_for, wire_formats
from ..state import StateBackend
from .keys import KeyPool

if TYPE_CHECKING:
    from ..config import ProviderConfig

__all__ = ["Provider", "build_providers"]


class Provider:
    """One configured upstream, assembled once at start-up (and at each reload)."""

    __slots__ = ("config", "headers", "keys", "name", "transport", "wire", "wire_for")

    def __init__(
        self,
        config: ProviderConfig,
        wire: WireFormat,
        transport: Transport,
        state: StateBackend,
        wire_for: Callable[[str], WireFormat] | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self.wire = wire
        """The provider's wire (for a kind that picks one per model: the usual one)."""
        self.wire_for: Callable[[str], WireFormat] = wire_for or (lambda _model: wire)
        """The wire format a model of this provider is spoken to in."""
        self.transport = transport
        self.keys = KeyPool(config.credentials or config.keys, config.name, state)
        self.headers = wire.headers(dict(config.headers))


def build_providers(
    configs: Mapping[str, ProviderConfig], http: Transport, state: StateBackend
) -> dict[str, Provider]:
    """One `Provider` per configured provider; key health comes from `state`, so a provider
    rebuilt by a reload keeps the health of its keys."""
    wires = wire_formats()
    kinds = provider_kinds()
    providers: dict[str, Provider] = {}
    for name, config in configs.items():
        transport = transport_for(config.base_url, http)
        kind = kinds.get(config.wire)
        if kind is None:
            providers[name] = Provider(config, wires[config.wire], transport, state)
            continue
        wire_for = kind(dict(config.options))
        providers[name] = Provider(config, wire_for(""), transport, state, wire_for)
    return providers
