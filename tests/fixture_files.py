"""Reading the golden fixtures under tests/fixtures/<provider>/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mini_llm.sse import SSEEvent, SSEParser

FIXTURES = Path(__file__).parent / "fixtures"


def load_json(provider: str, name: str) -> Any:
    return json.loads((FIXTURES / provider / name).read_text())


def load_bytes(provider: str, name: str) -> bytes:
    return (FIXTURES / provider / name).read_bytes()


def load_events(provider: str, name: str) -> list[SSEEvent]:
    """A recorded stream's events, fed through the one SSE parser in small pieces."""
    data = load_bytes(provider, name)
    parser = SSEParser()
    events: list[SSEEvent] = []
    for i in range(0, len(data), 37):  # split mid-line, as the network does
        events += parser.feed(data[i : i + 37])
    return events + parser.flush()
