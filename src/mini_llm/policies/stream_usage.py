"""Reading a pass-through stream's usage on its way to the client, for as little as it can.

A pass-through stream's bytes go to the client untouched; the policies still want its usage
and, when no usage came (the client went away first, or the upstream gave none), the length
of the answer text delivered, for an estimate. Two ways to read them:

- `FullTap`: every event through the format's own decoder, as the stream goes. Any format;
  needed when a policy wants the whole canonical answer (the response cache).
- `LazyTap`, for formats with a usage reader in `USAGE_READERS`: a read is searched (bytes,
  no parse) for a usage object, and only the event holding one is decoded. The reads are kept
  (a stream's own bytes, no copy) and decoded to count the delivered text only when the
  stream ends without usage; past `KEEP_BYTES` they are counted and let go, so memory stays
  bounded on a long stream.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from ..canonical import Usage
from ..errors import GatewayError
from ..formats import OPENAI

if TYPE_CHECKING:
    from ..canonical import CompletionBuilder
    from ..formats import Format
    from ..providers.base import Endpoint
    from .base import RequestInfo

__all__ = [
    "KEEP_BYTES",
    "USAGE_READERS",
    "WHOLE_USAGE_READERS",
    "FullTap",
    "LazyTap",
    "count_text",
    "make_tap",
]

KEEP_BYTES = 256 * 1024
_decode = msgspec.json.decode
_USAGE = b'"usage"'


def count_text(batch: list[dict[str, Any]], info: RequestInfo) -> None:
    """Usage when it comes, and the answer's characters so far (a cancelled stream's
    estimate), from canonical chunks; the text itself too, up to `info.keep_answer`
    characters, when `info.answer_text` is a list."""
    kept = info.answer_text
    for chunk in batch:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            info.usage = Usage.from_canonical(usage)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") if isinstance(choice, dict) else None
            if isinstance(delta, dict):
                for field in ("content", "reasoning_content"):
                    text = delta.get(field)
                    if isinstance(text, str):
                        if kept is not None and info.delivered < info.keep_answer:
                            kept.append(text)
                        info.delivered += len(text)


def _value_is_object(data: bytes, at: int) -> bool:
    """Whether the JSON key ending at `at` has an object for its value (`"usage": {`)."""
    rest = data[at : at + 24].lstrip()
    return rest[:1] == b":" and rest[1:].lstrip()[:1] == b"{"


def openai_chat_usage(data: bytes) -> dict[str, Any] | bool | None:
    """The last usage object in whole OpenAI chat stream events: a dict; None when the bytes
    carry none (`"usage": null` on every chunk included); False when an event that seems to
    carry one is not a single `data:` line of JSON (the caller then decodes it properly)."""
    found: dict[str, Any] | None = None
    at = data.find(_USAGE)
    while at != -1:
        end = at + len(_USAGE)
        if _value_is_object(data, end):
            start = max(data.rfind(b"\n", 0, at), data.rfind(b"\r", 0, at)) + 1
            stop = len(data)
            for mark in (b"\n", b"\r"):
                cut = data.find(mark, end)
                if cut != -1 and cut < stop:
                    stop = cut
            line = data[start:stop]
            if not line.startswith(b"data:"):
                return False
            try:
                chunk = _decode(line[5:])
            except msgspec.DecodeError:
                return False
            if not isinstance(chunk, dict):
                return False
            usage = chunk.get("usage")
            if isinstance(usage, dict):
                found = usage
            at = data.find(_USAGE, stop)
        else:
            at = data.find(_USAGE, end)
    return found


USAGE_READERS: dict[Format, Callable[[bytes], dict[str, Any] | bool | None]] = {
    OPENAI: openai_chat_usage,
}
"""Formats whose streams carry usage as canonical (OpenAI) usage objects, each with a reader
that finds it in whole events without parsing the rest."""


_Count = Annotated[int, msgspec.Meta(ge=0)]


class _PromptDetails(msgspec.Struct):
    cached_tokens: _Count = 0


class _OutputDetails(msgspec.Struct):
    reasoning_tokens: _Count = 0


class _Counts(msgspec.Struct):
    """Canonical usage as it nearly always comes: counts that are whole numbers, 0 or more."""

    prompt_tokens: _Count = 0
    completion_tokens: _Count = 0
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _OutputDetails | None = None
    cache_read_input_tokens: _Count = 0
    cache_creation_input_tokens: _Count = 0
    cache_creation_1h_input_tokens: _Count = 0

    def usage(self) -> Usage:
        """`Usage.from_canonical` of the same object."""
        details = self.prompt_tokens_details
        cached = (details.cached_tokens if details is not None else 0) or (
            self.cache_read_input_tokens
        )
        written = self.cache_creation_input_tokens
        out = self.completion_tokens_details
        return Usage(
            max(self.prompt_tokens - cached - written, 0),
            self.completion_tokens,
            cached,
            written,
            out.reasoning_tokens if out is not None else 0,
            min(self.cache_creation_1h_input_tokens, written),
        )


class _CountsOnly(msgspec.Struct):
    usage: _Counts | None = None


class _UsageOnly(msgspec.Struct):
    usage: Any = None


_counts_only = msgspec.json.Decoder(_CountsOnly).decode
_usage_only = msgspec.json.Decoder(_UsageOnly).decode


def canonical_whole_usage(data: bytes) -> Usage | None:
    """The usage of a whole answer in the canonical format, without decoding the rest: typed
    counts straight into `Usage`; any other shape (a count that is a float, a string, null)
    through `Usage.from_canonical`, which reads it the same way as before."""
    try:
        counts = _counts_only(data).usage
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError:
        return None
    else:
        return counts.usage() if counts is not None else None
    try:
        usage = _usage_only(data).usage
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return Usage.from_canonical(usage) if isinstance(usage, dict) else None


WHOLE_USAGE_READERS: dict[Format, Callable[[bytes], Usage | None]] = {
    OPENAI: canonical_whole_usage,
}
"""Formats whose whole answers carry canonical usage under `usage`: a pass-through answer's
usage is read from them without decoding the answer."""


class FullTap:
    """Every event decoded as it goes; the whole answer built when a `builder` is given."""

    __slots__ = ("_broken", "_builder", "_decoder", "_info")

    def __init__(
        self, endpoint: Endpoint, info: RequestInfo, builder: CompletionBuilder | None
    ) -> None:
        self._decoder = endpoint.decoder()
        self._info = info
        self._builder = builder
        self._broken = False

    def feed(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            batch = self._decoder.feed(data)
            count_text(batch, self._info)
            if self._builder is not None:
                self._builder.feed(batch)
        except GatewayError:
            self._broken = True  # the relay reports the stream's own errors

    def close(self, complete: bool) -> None:
        builder = self._builder
        if not complete or builder is None or self._broken:
            return
        try:
            batch = self._decoder.finish()
            while batch:
                builder.feed(batch)
                batch = self._decoder.finish()
        except GatewayError:
            return
        self._info.completion = builder.result()


class LazyTap:
    """Only the events that carry usage decoded; the text counted only when it is needed."""

    __slots__ = ("_endpoint", "_info", "_kept", "_kept_bytes", "_read", "_tally")

    def __init__(
        self,
        endpoint: Endpoint,
        info: RequestInfo,
        read: Callable[[bytes], dict[str, Any] | bool | None],
    ) -> None:
        self._endpoint = endpoint
        self._info = info
        self._read = read
        self._kept: list[bytes] = []
        self._kept_bytes = 0
        self._tally: FullTap | None = None

    def feed(self, data: bytes) -> None:
        usage = self._read(data)
        if usage is False:  # not the usual shape: the format's decoder reads this one
            self._count(data)
        elif usage is not None:
            self._info.usage = Usage.from_canonical(usage)
        if self._info.usage is not None:
            self._kept.clear()  # the text is not needed once usage came
            return
        self._kept.append(data)
        self._kept_bytes += len(data)
        if self._kept_bytes > KEEP_BYTES:
            self._flush()

    def _count(self, data: bytes) -> None:
        """Through the format's decoder (usage and text), in stream order."""
        self._flush()
        if self._tally is None:
            self._tally = FullTap(self._endpoint, self._info, None)
        self._tally.feed(data)

    def _flush(self) -> None:
        kept, self._kept, self._kept_bytes = self._kept, [], 0
        if not kept:
            return
        if self._tally is None:
            self._tally = FullTap(self._endpoint, self._info, None)
        usage = self._info.usage
        for data in kept:
            self._tally.feed(data)
        if usage is not None:  # the usage read first stands (the decoder saw the same)
            self._info.usage = usage

    def close(self, complete: bool) -> None:
        if self._info.usage is None:
            self._flush()


def make_tap(
    fmt: Format, endpoint: Endpoint, info: RequestInfo, builder: CompletionBuilder | None
) -> FullTap | LazyTap:
    """The cheapest tap that gives the policies what they asked for."""
    read = USAGE_READERS.get(fmt)
    if builder is None and read is not None and info.answer_text is None:
        return LazyTap(endpoint, info, read)
    return FullTap(endpoint, info, builder)
