"""A raw encoder of WebSocket frames for the tests: whatever RFC 6455 section 5.2 can express,
valid or not (wsproto writes only valid frames, and text only from whole characters)."""

from __future__ import annotations

import struct


def raw_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length_form: int | None = None,
) -> bytes:
    """A frame byte by byte per RFC 6455 section 5.2; ``length_form`` 7, 16 or 64 forces an
    encoding of the length (a non-minimal one when the length is small)."""
    n = len(payload)
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    mask_bit = 0x80 if mask is not None else 0
    if form == 7:
        head += bytes([mask_bit | n])
    elif form == 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload
