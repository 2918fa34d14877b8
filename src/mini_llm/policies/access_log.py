"""The access log: one line per request with the ledger's fields, as text or as JSON.

Text keeps the request log's shape (`request <id> <endpoint> model=… served=… status=…
<ms>ms attempts=…`) followed by the usage; JSON is one object per line (logger
`mini_llm.requests`, written bare: no timestamp prefix around it). With `log_bodies`, the
request's body is added, truncated to `body_max_bytes` and passed through the redactor (keys
and key-shaped strings masked); bodies are never logged otherwise.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from ..usage.prices import PriceTable
from .base import RequestInfo
from .usage import settle

__all__ = ["AccessLog", "use_json_lines"]

log = logging.getLogger("mini_llm.requests")
_encode = msgspec.json.encode


def use_json_lines(on: bool) -> None:
    """JSON lines go out bare, each a whole line of JSON, to stderr (the gateway's log)."""
    handlers = [h for h in log.handlers if getattr(h, "mini_llm_access", False)]
    if on and not handlers:
        stream: logging.Handler = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(message)s"))
        stream.mini_llm_access = True  # type: ignore[attr-defined]
        log.addHandler(stream)
        log.propagate = False
    elif not on and handlers:
        for handler in handlers:
            log.removeHandler(handler)
        log.propagate = True


def _printable(model: str) -> str:
    if model.isprintable() and len(model) <= 256:
        return model
    return repr(model[:256])  # client text: never a raw control character in a log


class AccessLog:
    wants_usage = True

    def __init__(
        self,
        prices: PriceTable,
        *,
        json_lines: bool = False,
        log_bodies: bool = False,
        body_max_bytes: int = 4096,
        redact: Callable[[str], str] = lambda text: text,
    ) -> None:
        self.prices = prices
        self.json_lines = json_lines
        self.log_bodies = log_bodies
        self.body_max_bytes = body_max_bytes
        self.redact = redact

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        return None

    def after(self, info: RequestInfo) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        settle(info, self.prices)
        if self.json_lines:
            log.info("%s", self.json_line(info))
        else:
            log.info("%s", self.text_line(info))

    def _body(self, info: RequestInfo) -> str | None:
        if not self.log_bodies or info.call is None:
            return None
        data = _encode(info.call.body)[: self.body_max_bytes]
        return self.redact(data.decode("utf-8", "replace"))

    def fields(self, info: RequestInfo) -> dict[str, Any]:
        target = info.target
        usage = info.usage
        first = info.first_byte
        out: dict[str, Any] = {
            "time": round(time.time(), 6),
            "request_id": info.request_id,
            "key_id": info.key_id,
            "endpoint": info.endpoint,
            "dialect": info.dialect,
            "model": _printable(info.model),
            "provider": target.provider.name if target is not None else None,
            "served_model": target.model if target is not None else None,
            "status": info.status,
            "error_code": info.error_code,
            "attempts": info.attempts,
            "latency_ms": round(info.latency * 1000, 3),
            "ttft_ms": round((first - info.started) * 1000, 3) if first is not None else None,
            "overhead_ms": round(info.overhead * 1000, 3) if info.overhead is not None else None,
            "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
            "cached_input_tokens": usage.cached_input_tokens if usage else 0,
            "cache_write_tokens": usage.cache_write_tokens if usage else 0,
            "cache_write_1h_tokens": usage.cache_write_1h_tokens if usage else 0,
            "reasoning_tokens": usage.reasoning_tokens if usage else 0,
            "cost_usd": info.cost,
            "cache_hit": bool(info.cache_hit),
            "exact": usage.exact if usage is not None else info.status != 200,
            "cancelled": info.stream_cancelled,
        }
        body = self._body(info)
        if body is not None:
            out["request_body"] = body
        return out

    def json_line(self, info: RequestInfo) -> str:
        return _encode(self.fields(info)).decode()

    def text_line(self, info: RequestInfo) -> str:
        target = info.target
        usage = info.usage
        parts = [
            f"request {info.request_id} {info.endpoint} model={_printable(info.model) or '-'} "
            f"served={target.label if target is not None else '-'} status={info.status} "
            f"{info.latency * 1000:.1f}ms attempts={info.attempts}"
        ]
        if info.error_code:
            parts.append(f"error={info.error_code}")
        if info.stream_cancelled:
            parts.append("cancelled")
        if info.first_byte is not None:
            parts.append(f"ttft={(info.first_byte - info.started) * 1000:.1f}ms")
        if info.overhead is not None:
            parts.append(f"overhead={info.overhead * 1000:.2f}ms")
        if usage is not None:
            parts.append(
                f"tokens=in:{usage.input_tokens},out:{usage.output_tokens},"
                f"cached:{usage.cached_input_tokens},write:{usage.cache_write_tokens},"
                f"reasoning:{usage.reasoning_tokens}" + ("" if usage.exact else ",estimated")
            )
        if info.cost is not None:
            parts.append(f"cost=${info.cost:.6f}")
        if info.cache_hit:
            parts.append("cache=hit")
        body = self._body(info)
        if body is not None:
            parts.append(f"body={body}")
        return " ".join(parts)
