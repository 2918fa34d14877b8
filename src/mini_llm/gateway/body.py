"""Reading a request body: size-limited, time-limited, decompressed, JSON-decoded, errors as
`GatewayError`s.

Hostile bodies are refused before they cost much: a Content-Length over the limit before
anything is read, a gzip or deflate body once it expands past the limit (it is decompressed
here, in bounded steps, not by aiohttp's parser; see `gateway.connections`), and JSON nested
deeper than `MAX_NESTING` before msgspec decodes it (msgspec recurses per level).
"""

from __future__ import annotations

import asyncio
import sys
import zlib
from itertools import accumulate
from typing import Any

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from ..errors import (
    InvalidRequestError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)

__all__ = ["ACCEPTED_ENCODINGS", "MAX_NESTING", "BodyReader", "decode_object", "nesting_exceeds"]

_decode = msgspec.json.decode

MAX_NESTING = 128
"""Deepest nesting of JSON arrays and objects accepted in a body, the body itself counting 1."""

# Content-Encoding → zlib wbits (gzip: header and trailer; deflate: chosen from its first byte)
ACCEPTED_ENCODINGS: dict[str, int] = {"gzip": 31, "x-gzip": 31, "deflate": 0, "identity": -1}
_ACCEPT_ENCODING = {"Accept-Encoding": "gzip, deflate"}


def decode_object(raw: bytes) -> dict[str, Any]:
    """A request body's bytes as a JSON object; 400 for anything else, nesting deeper than
    `MAX_NESTING` included."""
    if nesting_exceeds(raw, MAX_NESTING):
        raise InvalidRequestError(
            f"Request body is not valid JSON: arrays and objects nest deeper than "
            f"{MAX_NESTING} levels.",
            code="invalid_json",
        )
    try:
        body = _decode(raw)
    except msgspec.DecodeError as e:
        raise InvalidRequestError(
            f"Request body is not valid JSON: {e}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequestError(
            f"Request body must be a JSON object, not {type(body).__name__}.",
            code="invalid_json",
        )
    return body


class BodyReader:
    """Reads JSON-object bodies up to `limit` bytes, within `timeout` seconds."""

    __slots__ = ("limit", "timeout")

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout

    async def read_object(self, request: web.Request) -> dict[str, Any]:
        """The body as a JSON object: `decode_object(await read(request))`."""
        return decode_object(await self.read(request))

    async def read(self, request: web.Request) -> bytes:
        """The body's bytes, decompressed; 413 before reading anything when Content-Length
        is too big, or once a compressed body expands past the limit; 415 for a
        Content-Encoding other than gzip or deflate; 408 when the client has not sent it all
        within the timeout; 400 for a body that breaks off, or is empty."""
        length = request.content_length
        if length is not None and length > self.limit:
            raise self._too_large()
        encoding = request.headers.get("Content-Encoding")
        wbits = -1 if encoding is None else _wbits(encoding)
        try:
            content = request.content
            if content.is_eof():  # all there already (the usual case): no timer
                # a body of a known length (checked above) is taken as it is, without aiohttp's
                # read loop; empty when something read it before (a signature check): then
                # `read` has it, as it has a chunked body, which it bounds
                raw = (length is not None and content.read_nowait()) or await request.read()
            else:
                raw = await self._read_slow(request)
        except web.HTTPRequestEntityTooLarge:  # aiohttp stops at client_max_size (= limit)
            raise self._too_large() from None
        except RequestPayloadError as e:  # a chunked body that breaks off, or is malformed
            raise InvalidRequestError(f"Request body is malformed: {e}") from None
        if not raw:
            raise InvalidRequestError(
                "Request body is empty; expected a JSON object.", code="invalid_json"
            )
        # aiohttp has decoded it already when its parser was left to (total_compressed_bytes
        # is set then): only the gateway's own server leaves compressed bodies to this reader
        if wbits >= 0 and getattr(request.content, "total_compressed_bytes", None) is None:
            raw = self._decompress(raw, wbits, str(encoding).strip())
        return raw

    async def _read_slow(self, request: web.Request) -> bytes:
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            return await request.read()
        except asyncio.CancelledError:
            if not expired:
                raise
            if sys.version_info >= (3, 11):
                task.uncancel()
            raise RequestTimeoutError(
                f"The request body did not arrive within {self.timeout:g} s "
                "(MINI_LLM_BODY_TIMEOUT)."
            ) from None
        finally:
            handle.cancel()

    def _decompress(self, raw: bytes, wbits: int, encoding: str) -> bytes:
        """`raw` inflated, never past `limit` + 1 bytes (a gzip bomb costs that much at most);
        gzip members one after another are one body, as in `gzip.decompress`."""
        if wbits == 0:  # deflate: zlib-wrapped as the RFC says, or raw as some clients send it
            wbits = 15 if raw[0] & 0x0F == 8 else -15
        parts: list[bytes] = []
        size = 0
        try:
            while raw:
                inflater = zlib.decompressobj(wbits)
                part = inflater.decompress(raw, self.limit - size + 1)
                size += len(part)
                if size > self.limit:
                    raise self._too_large(decompressed=True)
                if not inflater.eof:
                    raise zlib.error("the compressed data ends early")
                parts.append(part)
                raw = inflater.unused_data
                if raw and wbits != 31:
                    raise zlib.error("data follows the end of the compressed stream")
        except zlib.error as e:
            raise InvalidRequestError(
                f"Request body is not valid {encoding} data ({e}).",
                code="invalid_content_encoding",
            ) from None
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _too_large(self, decompressed: bool = False) -> PayloadTooLargeError:
        what = "Request body, decompressed," if decompressed else "Request body"
        return PayloadTooLargeError(
            f"{what} is larger than the gateway's limit of {self.limit} bytes "
            "(MINI_LLM_MAX_BODY_BYTES)."
        )


def _wbits(encoding: str) -> int:
    wbits = ACCEPTED_ENCODINGS.get(encoding.strip().lower())
    if wbits is None:
        raise UnsupportedMediaTypeError(
            f"Content-Encoding {encoding.strip()[:40]!r} is not supported; send the body "
            "uncompressed, or as gzip or deflate.",
            headers=_ACCEPT_ENCODING,
        )
    return wbits


# Nesting is measured on the body's brackets alone, with bytes methods (C loops): escapes, then
# strings, then everything but brackets taken out; then the innermost pairs are removed, a level
# per pass, and past a few levels the rest is measured by a running sum. A body with no more
# opening brackets than the bound (strings included) is not scanned at all: about 1 µs per 2 KB.
_NOT_OPENING = bytes(set(range(256)) - set(b"[{"))
_NOT_STRUCTURAL = bytes(set(range(256)) - set(b'"[]{}'))
_ONE_KIND = bytes.maketrans(b"[]{}", b"()()")
_SIGNS = bytes.maketrans(b"()", b"\x01\xff")
_PASSES = 8


def nesting_exceeds(raw: bytes, bound: int) -> bool:
    """Whether arrays and objects in the JSON text `raw` nest more than `bound` levels deep.

    Exact for valid JSON; for a malformed text it never says less than a parser could
    recurse before it finds the fault.
    """
    if len(raw.translate(None, _NOT_OPENING)) <= bound:
        return False
    if b"\\" in raw:  # escaped backslashes first, so that `\\"` leaves its quote
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # what lies between quote 2k and 2k+1 is inside a string (adjacent quotes go first:
    # removing two neighbours keeps the parity of every later one)
    compact = raw.translate(None, _NOT_STRUCTURAL).replace(b'""', b"")
    if b'"' in compact:
        compact = b"".join(compact.split(b'"')[::2])
    compact = compact.translate(_ONE_KIND)
    # a pass takes every innermost pair: one level off a balanced text, at most one otherwise
    for passes in range(min(bound, _PASSES) + 1):
        if not compact:
            return False
        inner = compact.replace(b"()", b"")
        if len(inner) == len(compact) or passes == _PASSES:
            levels = accumulate(memoryview(compact.translate(_SIGNS)).cast("b"))
            return passes + max(levels) > bound
        compact = inner
    return True
