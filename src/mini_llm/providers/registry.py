"""Wire formats by name, transports by URL scheme: built-ins register here the way plug-ins
would."""

from __future__ import annotations

from collections.abc import Mapping

from .anthropic import ANTHROPIC_WIRE
from .base import Transport, WireFormat
from .gemini import GEMINI_WIRE
from .mock import MockTransport
from .openai import OPENAI_WIRE
from .openai_responses import OPENAI_RESPONSES_WIRE

__all__ = ["register_transport", "register_wire", "transport_for", "wire_formats"]

_WIRES: dict[str, WireFormat] = {}
_TRANSPORTS: dict[str, Transport] = {}


def register_wire(wire: WireFormat) -> None:
    _WIRES[wire.name] = wire


def wire_formats() -> Mapping[str, WireFormat]:
    return _WIRES


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
register_transport("mock", MockTransport())
