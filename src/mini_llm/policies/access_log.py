"""The access log: one line per request with the ledger's fields, as text or as JSON.

Text keeps the request log's shape (`request <id> <endpoint> model=… served=… status=…
<ms>ms attempts=…`) followed by the usage; JSON is one object per line (logger
`mini_llm.requests`, written bare: no timestamp prefix around it). With `log_bodies`, the
request's body and the answer's (a stream's: the text delivered) are added, each truncated to
`body_max_bytes` and passed through the redactor (keys and key-shaped strings masked); bodies
are never logged, nor kept, otherwise.

JSON lines are one msgspec encode of a Struct each and skip the `logging` machinery: when the
logger writes through the bare handler `use_json_lines` installs, the lines of one event loop
turn go to its stream in one write (a busy gateway ends many requests per turn).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import msgspec

from ..usage.prices import PriceTable
from .base import RequestInfo
from .usage import settle, token_counts

__all__ = ["AccessLog", "use_json_lines"]

log = logging.getLogger("mini_llm.requests")
_encode = msgspec.json.encode
_encode_into = msgspec.json.Encoder().encode_into
_UNSET = msgspec.UNSET


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


def _ms(seconds: float) -> float:
    """Milliseconds to the microsecond (the float nearest it: JSON shows at most 3 decimals);
    `round(x, 3)` costs 5 times more."""
    return int(seconds * 1e6 + 0.5) / 1000


class Line(msgspec.Struct):
    """One JSON line of the access log (the ledger's fields, bodies only with `log_bodies`)."""

    time: float
    request_id: str
    key_id: str | None
    endpoint: str
    dialect: str
    model: str
    provider: str | None
    served_model: str | None
    status: int
    error_code: str | None
    attempts: int
    latency_ms: float
    ttft_ms: float | None
    overhead_ms: float | None
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    cache_hit: bool
    exact: bool
    cancelled: bool
    request_body: str | msgspec.UnsetType = _UNSET
    response_body: str | msgspec.UnsetType = _UNSET


class _Lines:
    """JSON lines to a stream, those of one event loop turn encoded into one buffer and
    written at once (at once when no loop runs)."""

    __slots__ = ("_count", "_data", "_scheduled", "stream")

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._data = bytearray()
        self._count = 0
        self._scheduled = False

    def write(self, line: Line) -> None:
        data = self._data
        _encode_into(line, data, -1)
        data += b"\n"
        if self._scheduled:
            self._count += 1
            if self._count >= 256:
                self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        self._count = 1
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        data = self._data
        if not data:
            return
        self._data = bytearray()
        stream = self.stream
        try:
            binary = getattr(stream, "buffer", None)
            if binary is None:
                stream.write(data.decode())  # msgspec's JSON: UTF-8 through and through
                stream.flush()
            else:  # the bytes as they are, after whatever the text layer holds
                stream.flush()
                binary.write(data)
                binary.flush()
        except (OSError, ValueError):  # stderr closed: nothing else to tell it to
            pass


def _bare_stream() -> IO[str] | None:
    """The stream of the bare handler `use_json_lines` installed, when the logger writes
    through it alone."""
    if log.filters:
        return None
    handlers = log.handlers
    if len(handlers) != 1 or log.propagate:
        return None
    handler = handlers[0]
    if not getattr(handler, "mini_llm_access", False) or handler.filters:
        return None
    stream: IO[str] | None = getattr(handler, "stream", None)
    return stream


_SECRET_MARGIN = 512
"""Bytes read past the cut so that a key standing across it is still recognised."""


class AccessLog:
    wants_usage = True
    acts_before = False

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
        self._lines: _Lines | None = None
        self.keep_answer = body_max_bytes if log_bodies else 0
        """How much of each answer the pipeline keeps for the line (none without bodies)."""

    async def before(self, info: RequestInfo) -> dict[str, Any] | None:
        return None

    def after(self, info: RequestInfo) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        settle(info, self.prices)
        if not self.json_lines:
            log.info("%s", self.text_line(info))
            return
        stream = _bare_stream()
        if stream is None:
            log.info("%s", self.json_line(info))
            return
        lines = self._lines
        if lines is None or lines.stream is not stream:
            lines = self._lines = _Lines(stream)
        lines.write(self.line(info))

    def _text(self, data: bytes) -> str:
        """Redacted, then cut to `body_max_bytes`: a secret that the cut would halve is
        masked whole first (the margin covers the longest key)."""
        limit = self.body_max_bytes
        text = self.redact(data[: limit + _SECRET_MARGIN].decode("utf-8", "replace"))
        return text.encode()[:limit].decode("utf-8", "ignore")

    def _body(self, info: RequestInfo) -> str | None:
        if not self.log_bodies or info.call is None:
            return None
        return self._text(_encode(info.call.body))

    def _answer(self, info: RequestInfo) -> str | None:
        """The answer as the client got it: the body, or a stream's text delivered."""
        if not self.log_bodies:
            return None
        if info.answer_body is not None:
            return self._text(info.answer_body)
        if info.answer_text:
            return self._text("".join(info.answer_text).encode())
        return None

    def line(self, info: RequestInfo) -> Line:
        target = info.target
        usage = info.usage
        first = info.first_byte
        overhead = info.overhead
        started = info.started
        line = Line(
            time.time_ns() // 1000 / 1e6,
            info.request_id,
            info.key_id,
            info.endpoint,
            info.dialect,
            _printable(info.model),
            target.provider.name if target is not None else None,
            target.model if target is not None else None,
            info.status,
            info.error_code,
            info.attempts,
            _ms(time.monotonic() - started),
            _ms(first - started) if first is not None else None,
            _ms(overhead) if overhead is not None else None,
            *token_counts(usage),
            info.cost,
            bool(info.cache_hit),
            usage.exact if usage is not None else info.status != 200,
            info.stream_cancelled,
        )
        if self.log_bodies:
            body = self._body(info)
            if body is not None:
                line.request_body = body
            answer = self._answer(info)
            if answer is not None:
                line.response_body = answer
        return line

    def fields(self, info: RequestInfo) -> dict[str, Any]:
        fields = msgspec.structs.asdict(self.line(info))
        return {k: v for k, v in fields.items() if v is not _UNSET}

    def json_line(self, info: RequestInfo) -> str:
        return _encode(self.line(info)).decode()

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
        answer = self._answer(info)
        if answer is not None:
            parts.append(f"answer={answer}")
        return " ".join(parts)
