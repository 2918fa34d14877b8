"""Provider: one configured upstream at run time — its configuration, wire format, transport,
the headers built once for it, and its keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..providers.base import Transport, WireFormat
from ..providers.registry import transport_for, wire_formats
from ..state import StateBackend
from .keys import KeyPool

if TYPE_CHECKING:
    from ..config import ProviderConfig

__all__ = ["Provider", "build_providers"]


class Provider:
    """One configured upstream, assembled once at start-up (and at each reload)."""

    __slots__ = ("config", "headers", "keys", "name", "transport", "wire")

    def __init__(
        self, config: ProviderConfig, wire: WireFormat, transport: Transport, state: StateBackend
    ) -> None:
        self.name = config.name
        self.config = config
        self.wire = wire
        self.transport = transport
        self.keys = KeyPool(config.keys, config.name, state)
        self.headers = wire.headers(dict(config.headers))


def build_providers(
    configs: Mapping[str, ProviderConfig], http: Transport, state: StateBackend
) -> dict[str, Provider]:
    """One `Provider` per configured provider; key health comes from `state`, so a provider
    rebuilt by a reload keeps the health of its keys."""
    wires = wire_formats()
    return {
        name: Provider(config, wires[config.wire], transport_for(config.base_url, http), state)
        for name, config in configs.items()
    }
