"""Frames (PROTOCOL.md "Frames"): a 16-byte header, then the payload, padded to 8 bytes.

Mirrors gpu-backend/src/executor/frame.ts.

    header = read_header(stream.read(HEADER.size))  # BadFrame when it cannot be trusted
    frame = read_frame(stream)                        # the next whole frame, None at EOF
"""

import struct
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import BadFrame

MAGIC = 0x3150464C  # the bytes "LFP1" as a little-endian u32
VERSION = 1
HEADER = struct.Struct("<IHHII")  # magic, version, type, request id, payload length
MAX_PAYLOAD_BYTES = 64 << 20


@dataclass
class Header:
    type: int
    request_id: int
    payload_length: int


def pad8(n: int) -> int:
    return (n + 7) & ~7


def read_header(data: bytes) -> Header:
    """Checks a frame's first 16 bytes; BadFrame when the stream cannot be trusted."""
    if len(data) < HEADER.size:
        raise BadFrame(f"truncated frame: {len(data)} bytes, the header alone is 16")
    magic, version, type_, request_id, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadFrame(f"bad magic 0x{magic:08x}")
    if version != VERSION:
        raise BadFrame(f"unsupported protocol version {version}, this side speaks 1")
    if length > MAX_PAYLOAD_BYTES:
        raise BadFrame(f"payload length {length} over the limit of {MAX_PAYLOAD_BYTES}")
    return Header(type_, request_id, length)


def read_frame(stream: BinaryIO) -> bytes | None:
    """The next whole frame from a blocking binary stream, or None at a clean EOF (between
    frames). A bad header raises BadFrame at once; EOF inside a frame is BadFrame too."""
    head = stream.read(HEADER.size)
    if not head:
        return None
    header = read_header(head)  # BadFrame "truncated" when fewer than 16 bytes came
    payload = stream.read(header.payload_length) if header.payload_length else b""
    if len(payload) < header.payload_length:
        raise BadFrame(
            f"truncated frame: EOF after {len(payload)} of {header.payload_length} payload bytes"
        )
    return head + payload
