"""The AWS event stream (`application/vnd.amazon.eventstream`): binary frames, checked.

A message is a 12-byte prelude (total length, headers length, both big-endian u32, and the
CRC32 of those 8 bytes), the headers, the payload, and the CRC32 of everything before it. A
header is a name (u8 length), a type byte and a value (strings and bytes with a u16 length).
`EventStreamParser` takes bytes as they arrive and returns whole messages, refusing a frame
whose prelude or message CRC is wrong or whose lengths cannot be (an `UpstreamError`: the
stream is corrupt, nothing after it can be trusted). `encode_message` builds frames (the mock
upstream sends real ones with it).
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import UpstreamError

__all__ = ["MAX_MESSAGE", "EventMessage", "EventStreamParser", "encode_message", "frame_length"]

MAX_MESSAGE = 16 * 1024 * 1024
"""The largest message accepted (AWS's own limit is 16 MiB)."""

_PRELUDE = struct.Struct(">III")
_MIN_MESSAGE = 16  # prelude and message CRC, no headers, no payload


@dataclass(frozen=True, slots=True)
class EventMessage:
    headers: dict[str, Any]
    payload: bytes


def frame_length(data: bytes | bytearray | memoryview, at: int = 0) -> int:
    """The length of the message starting at `at`, once its 4 length bytes are in (else 0)."""
    if len(data) - at < 4:
        return 0
    return int.from_bytes(data[at : at + 4], "big")


def _headers(raw: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    i = 0
    end = len(raw)
    try:
        while i < end:
            size = raw[i]
            name = raw[i + 1 : i + 1 + size].decode()
            i += 1 + size
            kind = raw[i]
            i += 1
            value: Any
            if kind in (0, 1):
                value = kind == 0
            elif kind == 2:
                value = struct.unpack_from(">b", raw, i)[0]
                i += 1
            elif kind == 3:
                value = struct.unpack_from(">h", raw, i)[0]
                i += 2
            elif kind == 4:
                value = struct.unpack_from(">i", raw, i)[0]
                i += 4
            elif kind in (5, 8):
                value = struct.unpack_from(">q", raw, i)[0]
                i += 8
            elif kind in (6, 7):
                length = struct.unpack_from(">H", raw, i)[0]
                data = raw[i + 2 : i + 2 + length]
                if len(data) != length:
                    raise ValueError("short header value")
                value = data.decode() if kind == 7 else data
                i += 2 + length
            elif kind == 9:
                value = uuid.UUID(bytes=raw[i : i + 16])
                i += 16
            else:
                raise ValueError(f"unknown header type {kind}")
            headers[name] = value
    except (IndexError, ValueError, struct.error, UnicodeDecodeError):
        raise UpstreamError("upstream sent a malformed event-stream header") from None
    if i != end:
        raise UpstreamError("upstream sent a malformed event-stream header")
    return headers


class EventStreamParser:
    """Whole, checked messages from an event stream's bytes as they arrive."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[EventMessage]:
        buffer = self._buffer
        buffer += data
        out: list[EventMessage] = []
        at = 0
        while len(buffer) - at >= 12:
            total, header_length, prelude_crc = _PRELUDE.unpack_from(buffer, at)
            if zlib.crc32(buffer[at : at + 8]) != prelude_crc:
                raise UpstreamError("upstream sent an event-stream frame with a bad prelude CRC")
            if total < _MIN_MESSAGE or total > MAX_MESSAGE or header_length > total - 16:
                raise UpstreamError("upstream sent an event-stream frame of impossible length")
            if len(buffer) - at < total:
                break
            end = at + total
            (message_crc,) = struct.unpack_from(">I", buffer, end - 4)
            if zlib.crc32(buffer[at : end - 4]) != message_crc:
                raise UpstreamError("upstream sent an event-stream frame with a bad message CRC")
            headers = _headers(bytes(buffer[at + 12 : at + 12 + header_length]))
            out.append(EventMessage(headers, bytes(buffer[at + 12 + header_length : end - 4])))
            at = end
        if at:
            del buffer[:at]
        return out


def _encode_header(name: str, value: str | bytes | bool | int) -> bytes:
    raw_name = name.encode()
    head = bytes([len(raw_name)]) + raw_name
    if isinstance(value, bool):
        return head + bytes([0 if value else 1])
    if isinstance(value, int):
        return head + b"\x04" + struct.pack(">i", value)
    if isinstance(value, str):
        data = value.encode()
        return head + b"\x07" + struct.pack(">H", len(data)) + data
    return head + b"\x06" + struct.pack(">H", len(value)) + value


def encode_message(headers: dict[str, str | bytes | bool | int], payload: bytes) -> bytes:
    """One event-stream message, with its prelude and CRCs."""
    raw_headers = b"".join(_encode_header(k, v) for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    lengths = struct.pack(">II", total, len(raw_headers))
    prelude = lengths + struct.pack(">I", zlib.crc32(lengths))
    body = prelude + raw_headers + payload
    return body + struct.pack(">I", zlib.crc32(body))
