"""Wire formats and transports by name: built-ins register here the way plug-ins would."""

from __future__ import annotations

from collections.abc import Mapping

from ..config import ProviderConfig
from .anthropic import ANTHROPIC_WIRE
from .base import Provider, Transport, WireFormat
from .gemini import GEMINI_WIRE
from .mock import MockTransport
from .openai import OPENAI_WIRE

__all__ = ["build_providers", "register_wire", "wire_formats"]

_WIRES: dict[str, WireFormat] = {}


def register_wire(wire: WireFormat) -> None:
    _WIRES[wire.name] = wire


def wire_formats() -> Mapping[str, WireFormat]:
    return _WIRES


register_wire(OPENAI_WIRE)
register_wire(ANTHROPIC_WIRE)
register_wire(GEMINI_WIRE)


def build_providers(configs: Mapping[str, ProviderConfig], http: Transport) -> dict[str, Provider]:
    """One `Provider` per configured provider; `mock://` base URLs answer in process."""
    mock = MockTransport()
    providers: dict[str, Provider] = {}
    for name, config in configs.items():
        transport = mock if config.base_url.startswith("mock:") else http
        providers[name] = Provider(config, _WIRES[config.wire], transport)
    return providers
