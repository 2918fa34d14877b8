"""Wire formats by name, provider kinds by name, transports by URL scheme: built-ins register
here the way plug-ins would.

A *kind* is for providers whose wire depends on their own settings (Azure's deployments and API
version, Bedrock's region, Vertex's project and token source): `build(options)` is called once
per configured provider and returns the wire for each of its models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .anthropic import ANTHROPIC_WIRE
from .azure import azure_wires
from .base import Transport, WireFormat
from .bedrock import bedrock_wires
from .gemini import GEMINI_WIRE
from .mock import MockTransport
from .openai import OPENAI_WIRE
from .openai_responses import OPENAI_RESPONSES_WIRE
from .vertex import vertex_wires

__all__ = [
    "ProviderKind",
    "provider_kinds",
    "register_kind",
    "register_transport",
    "register_wire",
    "transport_for",
    "wire_formats",
]

ProviderKind = Callable[[Mapping[str, Any]], Callable[[str], WireFormat]]
"""A provider's settings -> the wire format each of its models is spoken to in."""

_WIRES: dict[str, WireFormat] = {}
_KINDS: dict[str, ProviderKind] = {}
_TRANSPORTS: dict[str, Transport] = {}


def register_wire(wire: WireFormat) -> None:
    _WIRES[wire.name] = wire


def wire_formats() -> Mapping[str, WireFormat]:
    return _WIRES


def register_kind(name: str, build: ProviderKind) -> None:
    """Providers configured with `type = name` get their wires from `build(options)`."""
    _KINDS[name] = build


def provider_kinds() -> Mapping[str, ProviderKind]:
    return _KINDS


def register_transport(scheme: str, transport: Transport) -> None:
    """Requests to `scheme://` base URLs go through `transport` instead of HTTP."""
    _TRANSPORTS[scheme] = transport


def transport_for(base_url: str, http: Transport) -> Transport:
    """The transport for a base URL: a registered scheme's, else the pooled HTTP client."""
    scheme = base_url.partition(":")[0]
    return _TRANSPORTS.get(scheme, http)


register_wire(OPENAI_WIRE)
register_wire(OPENAI_RESPONSES_WIRE)
register_wire(ANTHROPIC_WIRE)
register_wire(GEMINI_WIRE)
register_kind("azure", azure_wires)
register_kind("bedrock", bedrock_wires)
register_kind("vertex", vertex_wires)
register_transport("mock", MockTransport())
