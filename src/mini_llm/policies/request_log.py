"""One log line per request at info level: what was asked, what served it, how it went."""

from __future__ import annotations

import logging
from typing import Any

from .base import RequestInfo

__all__ = ["RequestLog"]

log = logging.getLogger("mini_llm.requests")


class RequestLog:
    """`request <id> <endpoint> model=<asked> served=<provider/model> status=<n> <ms>ms
    attempts=<n>` (and the error code when there is one)."""

    wants_usage = False
    acts_before = False

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        return None

    def after(self, info: RequestInfo) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        target = info.target
        model = info.model
        if not (model.isprintable() and len(model) <= 256):
            model = repr(model[:256])  # client text: never a raw control character in a log
        log.info(
            "request %s %s model=%s served=%s status=%d %.1fms attempts=%d%s%s",
            info.request_id,
            info.endpoint,
            model or "-",
            target.label if target is not None else "-",
            info.status,
            info.latency * 1000,
            info.attempts,
            f" error={info.error_code}" if info.error_code else "",
            " cancelled" if info.stream_cancelled else "",
        )
