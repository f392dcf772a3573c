"""A sans-I/O decoder of the frames a WebSocket server sends to a client (RFC 6455 section 5).

Why it exists
-------------
wsproto's parser cost 8.2 us of our 9.9 us per message (measured, docs/performance.md): it
copies every payload through a ``bytearray`` buffer, runs a generator per frame and builds an
event object per frame. Server-to-client frames are simple (never masked, no extension is
negotiated), so this module decodes them directly; wsproto stays for what it does well on the
other direction (masking our frames, the close handshake's state).

How it works
------------
Bytes in, events out, no I/O, no clock (the style of h11 and wsproto). :meth:`FrameDecoder.feed`
takes whatever the transport read (any cut: half a header, many frames, the middle of a
payload) and returns the events those bytes completed, in order:

* a complete message, as a plain ``str`` (text) or ``bytes`` (binary): no wrapper object on
  the hot path, the caller tells them apart by type;
* :class:`Ping`, :class:`Pong` (payloads) and :class:`Close` (code, reason and the raw payload).

The loop's fast path is one unfragmented frame whose header and payload are both in hand: read
two header bytes, slice the payload, decode it (text) and append it. Everything else (a frame
cut by a read, fragments, control frames) goes through the general path, which keeps the
state between calls: an incomplete header waits in ``_head`` (at most 13 bytes); a frame whose
payload is incomplete collects its parts in a list with a count of the bytes still missing, so a
large frame arriving over many reads is joined once, not copied per read.

What it refuses (each raises :class:`FrameError` with the close code to send): an unknown
opcode, a reserved bit (no extension is ever negotiated), a masked frame, a fragmented or
over-125-byte control frame, a length not in its shortest form or with the top bit set, a
continuation with nothing to continue or a new message inside a fragmented one (1002); text
that is not UTF-8, checked incrementally frame by frame so an error is found where it arrives,
and a close reason that is not UTF-8 (1007); a close payload of one byte or a code no endpoint
may send (1002); a message that would grow past ``max_message_bytes``, refused from the frame
header, before its payload is buffered (1009); a message in more than ``max_fragments``
frames (1009: empty continuations cost nothing in bytes but a list entry each, so the count is
bounded too; empty fragments are not kept at all). Events completed before the violation are in
:attr:`FrameError.events`; after a violation or a close frame the decoder takes no more input.
"""

from __future__ import annotations

import codecs
from typing import Final

__all__ = ["MAX_FRAGMENTS", "Close", "Event", "FrameDecoder", "FrameError", "Ping", "Pong"]

#: Frames one message may arrive in (a server that fragments at all uses a few).
MAX_FRAGMENTS: Final = 4096

# close codes RFC 6455 section 7.4.1 defines (1004 reserved; 1005, 1006, 1015 never sent)
_DEFINED_CODES: Final = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
# registered with IANA after the RFC and sent by real servers (restart, try again later);
# 1014 (bad gateway) is refused, as wsproto refuses it: the reference this decoder is held to
_REGISTERED_CODES: Final = frozenset({1012, 1013})

_PROTOCOL_ERROR: Final = 1002
_INVALID_DATA: Final = 1007
_TOO_BIG: Final = 1009


class Ping:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __repr__(self) -> str:
        return f"Ping({self.payload!r})"


class Pong:
    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __repr__(self) -> str:
        return f"Pong({self.payload!r})"


class Close:
    """A close frame: ``code`` 1005 when it carried none; ``payload`` as it arrived."""

    __slots__ = ("code", "payload", "reason")

    def __init__(self, code: int, reason: str, payload: bytes) -> None:
        self.code = code
        self.reason = reason
        self.payload = payload

    def __repr__(self) -> str:
        return f"Close({self.code}, {self.reason!r})"


Event = str | bytes | Ping | Pong | Close


class FrameError(Exception):
    """The server broke RFC 6455 (or the size bound): close the connection with ``code``."""

    def __init__(self, code: int, reason: str, events: list[Event]) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.events = events  # completed before the violation, in order


def _close_event(payload: bytes) -> Close:
    if not payload:
        return Close(1005, "", payload)
    if len(payload) == 1:
        raise _Violation(_PROTOCOL_ERROR, "close frame with a 1-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not (3000 <= code <= 4999 or code in _DEFINED_CODES or code in _REGISTERED_CODES):
        raise _Violation(_PROTOCOL_ERROR, f"close frame with code {code}, which no peer may send")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Violation(_INVALID_DATA, f"close reason is not UTF-8 ({exc.reason})") from None
    return Close(code, reason, payload)


class _Violation(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FrameDecoder:
    """Decodes one connection's server frames; see the module's docstring."""

    def __init__(self, max_message_bytes: int, max_fragments: int = MAX_FRAGMENTS) -> None:
        self.max_message_bytes = max_message_bytes
        self.max_fragments = max_fragments
        self._count = 0  # frames of the fragmented message in progress
        self._head = b""  # an incomplete frame header
        # the frame whose payload is still arriving
        self._missing = 0  # payload bytes still to come; 0: no frame in progress
        self._parts: list[bytes] = []
        self._frame_opcode = 0
        self._frame_fin = False
        # the fragmented message in progress (opcode 0: none)
        self._opcode = 0
        self._fragments: list[bytes] = []
        self._text: list[str] = []
        self._utf8: codecs.IncrementalDecoder | None = None
        self._size = 0
        self.done = False  # a close frame or a violation ended the input
        # control events (ping, pong, close) returned so far: a caller whose count did not
        # move across a ``feed`` knows every event of it is a message, without looking at each
        self.controls = 0

    def feed(self, data: bytes) -> list[Event]:
        """The events ``data`` completes; raises :class:`FrameError` on a violation."""
        out: list[Event] = []
        if self.done:
            return out
        try:
            self._feed(data, out)
        except _Violation as exc:
            self.done = True
            raise FrameError(exc.code, exc.reason, out) from None
        return out

    def _feed(self, data: bytes, out: list[Event]) -> None:
        if self._missing:  # finish the frame whose payload was cut by the last read
            missing = self._missing
            if len(data) < missing:
                self._parts.append(data)
                self._missing = missing - len(data)
                return
            self._parts.append(data[:missing])
            data = data[missing:]
            self._missing = 0
            payload = b"".join(self._parts)
            self._parts = []
            self._frame(self._frame_opcode, self._frame_fin, payload, out)
            if self.done:
                return
        if self._head:
            data = self._head + data
            self._head = b""
        end = len(data)
        pos = 0
        limit = self.max_message_bytes
        while pos < end:
            if end - pos < 2:
                self._head = data[pos:]
                return
            first = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length < 126:
                pass
            elif length & 0x80:  # the mask bit: a server never masks (section 5.1)
                self._check_header(first, length & 0x7F)
                raise _Violation(_PROTOCOL_ERROR, "the server sent a masked frame")
            elif first & 0x08:  # a control frame's payload is at most 125 bytes
                self._check_header(first, length)
                raise _Violation(_PROTOCOL_ERROR, "control frame with a payload over 125 bytes")
            elif length == 126:
                if end - start < 2:
                    self._head = data[pos:]
                    return
                length = data[start] << 8 | data[start + 1]
                start += 2
                if length < 126:
                    self._check_header(first, 0)
                    raise _Violation(_PROTOCOL_ERROR, "payload length not in its shortest form")
            else:
                if end - start < 8:
                    self._head = data[pos:]
                    return
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
                if length < 0x10000 or length >> 63:
                    self._check_header(first, 0)
                    raise _Violation(_PROTOCOL_ERROR, "payload length not in its shortest form")
            stop = start + length
            if (first == 0x81 or first == 0x82) and not self._opcode:
                # the fast path: a whole unfragmented text or binary message
                if length > limit:
                    raise _Violation(_TOO_BIG, self._too_big(length))
                if stop > end:
                    self._wait(first, data[start:], stop - end)
                    return
                if first == 0x81:
                    try:
                        out.append(data[start:stop].decode("utf-8"))
                    except UnicodeDecodeError as exc:
                        raise _Violation(
                            _INVALID_DATA, f"text is not UTF-8 ({exc.reason})"
                        ) from None
                else:
                    out.append(data[start:stop])
                pos = stop
                continue
            self._check_header(first, length)
            if not first & 0x08:  # data: bound the message before its payload is kept
                size = self._size + length
                if size > limit:
                    raise _Violation(_TOO_BIG, self._too_big(size))
            if stop > end:
                self._wait(first, data[start:], stop - end)
                return
            self._frame(first & 0x0F, bool(first & 0x80), data[start:stop], out)
            if self.done:
                return
            pos = stop

    def _too_big(self, size: int) -> str:
        return (
            f"message larger than max_message_bytes={self.max_message_bytes}"
            f" ({size} bytes announced by the frame headers)"
        )

    def _wait(self, first: int, part: bytes, missing: int) -> None:
        self._frame_opcode = first & 0x0F
        self._frame_fin = bool(first & 0x80)
        self._parts = [part] if part else []
        self._missing = missing

    def _check_header(self, first: int, length: int) -> None:
        """Header rules (the mask and length forms are checked by the caller)."""
        opcode = first & 0x0F
        if opcode not in (0, 1, 2, 8, 9, 10):
            raise _Violation(_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if first & 0x70:
            raise _Violation(_PROTOCOL_ERROR, "reserved bit set (no extension was negotiated)")
        if opcode & 0x08:
            if not first & 0x80:
                raise _Violation(_PROTOCOL_ERROR, "fragmented control frame")
        elif opcode == 0:
            if not self._opcode:
                raise _Violation(_PROTOCOL_ERROR, "continuation frame with no message to continue")
        elif self._opcode:
            raise _Violation(_PROTOCOL_ERROR, "new message inside a fragmented message")

    def _frame(self, opcode: int, fin: bool, payload: bytes, out: list[Event]) -> None:
        """One complete frame whose header passed :meth:`_check_header`."""
        if opcode == 9:
            out.append(Ping(payload))
            self.controls += 1
        elif opcode == 10:
            out.append(Pong(payload))
            self.controls += 1
        elif opcode == 8:
            out.append(_close_event(payload))
            self.controls += 1
            self.done = True
        else:
            if opcode:  # the first fragment (or a whole message from the general path)
                self._opcode = opcode
                if opcode == 1:
                    self._utf8 = codecs.getincrementaldecoder("utf-8")()
            self._count += 1
            if self._count > self.max_fragments:
                raise _Violation(
                    _TOO_BIG, f"message in more than max_fragments={self.max_fragments} frames"
                )
            size = self._size + len(payload)
            if size > self.max_message_bytes:  # the header was checked; this is a backstop
                raise _Violation(_TOO_BIG, self._too_big(size))
            self._size = size
            utf8 = self._utf8
            if utf8 is not None:
                try:
                    text = utf8.decode(payload, fin)
                except UnicodeDecodeError as exc:
                    raise _Violation(_INVALID_DATA, f"text is not UTF-8 ({exc.reason})") from None
                if text:
                    self._text.append(text)
            elif payload:
                self._fragments.append(payload)
            if fin:
                if utf8 is not None:
                    out.append("".join(self._text))
                else:
                    out.append(b"".join(self._fragments))
                self._opcode = 0
                self._utf8 = None
                self._text = []
                self._fragments = []
                self._size = 0
                self._count = 0
