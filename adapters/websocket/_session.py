"""An httpx-ws session that survives httpx-ws 0.9.0's faults.

* A stray or duplicate Pong made ``AsyncPingManager.ack`` raise ``KeyError`` and kill the
  session: the tolerant manager counts it and moves on (RFC 6455 allows unsolicited pongs).
* The stock read loop hands each message to the consumer through an unbuffered stream, so a
  slow consumer stops the loop and server pings go unanswered until the server drops the
  connection. This loop answers pings inline and puts messages into the adapter's bounded
  buffer, whose overflow policy decides (see ``_buffer``).
* It bounds a message's size while it is still arriving (httpx-ws's
  ``max_message_size_bytes`` is only a read chunk size, and nothing else bounds it).
* It catches the failure where the network stream raises, so the original exception (with
  ``ssl.SSLError.reason``, which trio's path loses) reaches the classifier.
* It checks the opening handshake per RFC 6455 (httpx-ws checks only the status) before the
  session starts: the constructor is the first place the response is seen.
* Every write (the host's sends, pings, answers to pings, the close frame) has a deadline,
  ``sink.write_timeout``: a peer that stopped reading fills the send buffer, and a write stuck
  on it would hold the write lock forever and starve the heartbeat behind it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import anyio
import httpcore
import wsproto.events
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, WebSocketNetworkError
from httpx_ws._ping import AsyncPingManager

from ._classify import MessageTooBig
from ._guards import SendBlocked, check_handshake

__all__ = ["RegulatorSession", "SessionSink", "TolerantPingManager"]


class SessionSink(Protocol):
    """Where a session's reader delivers (implemented by ResilientWebSocket)."""

    max_message_bytes: int
    write_timeout: float

    async def deliver(self, message: str | bytes) -> None: ...

    def reader_failed(self, session: RegulatorSession, exc: BaseException) -> None: ...

    def unsolicited_pong(self) -> None: ...

    def ping_answered(self) -> None: ...


class TolerantPingManager(AsyncPingManager):
    def __init__(self, on_unsolicited: Any) -> None:
        super().__init__()
        self._on_unsolicited = on_unsolicited

    def ack(self, ping_id: bytes | bytearray) -> None:
        event = self._pings.pop(bytes(ping_id), None)
        if event is None:
            self._on_unsolicited()
            return
        event.set()


class RegulatorSession(AsyncWebSocketSession):
    """Bound to one adapter through a per-adapter subclass that sets ``sink``."""

    sink: ClassVar[SessionSink]

    def __init__(self, stream: Any, **kwargs: Any) -> None:
        response = kwargs.get("response")
        if response is not None:  # raising here: httpx-ws has started nothing yet
            check_handshake(response.status_code, response.request.headers, response.headers)
        super().__init__(stream, **kwargs)
        self._ping_manager = TolerantPingManager(self.sink.unsolicited_pong)

    async def send(self, event: wsproto.events.Event) -> None:
        # httpx-ws's send does the same write without a deadline
        try:
            await self._write(event)
        except httpcore.WriteError as exc:
            raise WebSocketNetworkError() from exc  # the cause keeps the real reason

    async def _write(self, event: wsproto.events.Event) -> None:
        data = self.connection.send(event)
        limit = self.sink.write_timeout
        with anyio.move_on_after(limit) as scope:
            async with self._write_lock:
                await self.stream.write(data)
        if scope.cancelled_caught:
            # part of a frame may be out: the stream is unusable, the connection must go
            raise SendBlocked(
                f"send blocked: a {type(event).__name__} frame could not be written within"
                f" {limit:g} s (the peer stopped reading)"
            )

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        # httpx-ws closes shielded from cancellation; a peer that stopped reading would hold
        # that close (and the socket's exit) forever. Bounded, the transport closes the rest.
        with anyio.move_on_after(self.sink.write_timeout):
            await super().close(code, reason)

    async def _background_receive(self, max_bytes: int) -> None:
        sink = self.sink
        limit = sink.max_message_bytes
        parts: list[str | bytes] = []
        size = 0
        try:
            while not self._should_close.is_set():
                data = await self._read_stream(max_bytes)
                self.connection.receive_data(data)
                for event in self.connection.events():
                    if isinstance(event, wsproto.events.Ping):
                        await self._write(event.response())  # at once, whatever the consumer
                        sink.ping_answered()
                    elif isinstance(event, wsproto.events.Pong):
                        self._ping_manager.ack(event.payload)
                    elif isinstance(event, wsproto.events.CloseConnection):
                        self._should_close.set()
                        await self._write(event.response())  # complete the close handshake
                        raise WebSocketDisconnect(event.code, event.reason)
                    elif isinstance(event, wsproto.events.Message):
                        parts.append(event.data)
                        size += len(event.data)
                        if size > limit:
                            raise MessageTooBig(
                                f"message larger than max_message_bytes={limit}"
                                f" ({size} bytes received and still arriving)"
                            )
                        if event.message_finished:
                            message = parts[0] if len(parts) == 1 else parts[0][:0].join(parts)  # type: ignore[arg-type]
                            parts, size = [], 0
                            await sink.deliver(message)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # every way a connection dies: the adapter classifies it
            self._should_close.set()
            sink.reader_failed(self, exc)
