"""What the exchange keeps per stream connection, and what tests read of it."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import attrs
from wsproto.connection import Connection, ConnectionState

__all__ = ["ConnectionRecord", "StreamConn", "text_frame"]


@attrs.define(eq=False)
class ConnectionRecord:
    """What the exchange saw of one connection (read it from tests)."""

    number: int
    path: str
    opened: float  # time.monotonic()
    closed: float | None = None
    close_reason: str = ""
    incoming: list[float] = attrs.field(factory=list)  # every frame's arrival time
    requests: list[dict[str, Any]] = attrs.field(factory=list)
    streams: set[str] = attrs.field(factory=set)
    violations: int = 0
    #: when the server sent each ping (time.monotonic())
    pings: list[float] = attrs.field(factory=list)

    def max_incoming_per_second(self) -> int:
        """The most incoming frames seen in any one-second window."""
        times = self.incoming
        best = start = 0
        for end in range(len(times)):
            while times[end] - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best


class StreamConn:
    """One upgraded connection: its frames, its session, its incoming-message window."""

    def __init__(
        self, record: ConnectionRecord, writer: asyncio.StreamWriter, ws: Connection
    ) -> None:
        self.record = record
        self.writer = writer
        self.ws = ws
        self.streams = record.streams
        self.combined = True
        self.micro = False  # timeUnit=MICROSECOND
        self.window: deque[float] = deque()
        self.ping_payload: bytes | None = None
        self.ping_sent: float = 0.0
        self.closing = False
        self.text: list[str] = []
        self.text_size = 0  # characters in `text` (bounded by MAX_REQUEST_TEXT)
        self.pending: list[bytes] = []  # events of this market tick, written in one go

    def send(self, event: Any) -> None:
        if self.closing or self.ws.state is not ConnectionState.OPEN:
            return
        self.writer.write(self.ws.send(event))

    def write_frame(self, frame: bytes) -> None:
        """A whole text frame encoded once for every connection (``text_frame``), held until
        ``flush`` at the end of the tick: one TLS write per tick, not one per event."""
        self.pending.append(frame)

    def flush(self) -> None:
        frames, self.pending = self.pending, []
        if frames and not self.closing and self.ws.state is ConnectionState.OPEN:
            self.writer.write(b"".join(frames))


def text_frame(text: str) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 5.2): a server's frames are the same
    bytes for every connection, so a published event is encoded once, not per subscriber.
    Sending whole frames this way leaves wsproto's state as its own send would."""
    data = text.encode()
    n = len(data)
    if n < 126:
        return bytes((0x81, n)) + data
    if n < 1 << 16:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + data
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + data
