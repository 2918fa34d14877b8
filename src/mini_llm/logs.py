"""Logging set-up, and redaction so that no key ever reaches a log line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable

__all__ = ["Redactor", "setup_logging"]

# Shapes of credentials that may appear in upstream bodies or headers we did not configure.
_GENERIC = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|gsk_[A-Za-z0-9]{8,}|xai-[A-Za-z0-9]{8,}|AIza[0-9A-Za-z_\-]{20,}"
    r"|mk-[A-Za-z0-9_\-]{16,}|ms-[A-Za-z0-9_\-]{16,}"  # this gateway's own keys and secrets
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,})"
)


class Redactor:
    """Masks every configured key, and anything shaped like a key, in text meant for logs."""

    def __init__(self, secrets: Iterable[str]) -> None:
        known = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, known))) if known else None
        self._known_bytes = tuple((k.encode(), ("…" + k[-4:]).encode()) for k in known)

    def scrub(self, data: bytes) -> bytes:
        """`data` with every configured secret masked: what an upstream sends on its way to
        a client (a proxy that echoes the key it got must not leak it). A substring test per
        secret, so it costs about a microsecond when nothing matches."""
        for secret, masked in self._known_bytes:
            if secret in data:
                data = data.replace(secret, masked)
        return data

    def __call__(self, text: str) -> str:
        if self._known is not None:
            text = self._known.sub(lambda m: "…" + m.group(0)[-4:], text)
        return _GENERIC.sub(lambda m: "…" + m.group(0)[-4:], text)


def setup_logging(level: str) -> None:
    root = logging.getLogger("mini_llm")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
