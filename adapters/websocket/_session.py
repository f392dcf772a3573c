"""An httpx-ws session that survives httpx-ws 0.9.0's faults.

* A stray or duplicate Pong made ``AsyncPingManager.ack`` raise ``KeyError`` and kill the
  session: the tolerant manager counts it and moves on (RFC 6455 allows unsolicited pongs).
* The stock read loop hands each message to the consumer through an unbuffered stream, so a
  slow consumer stops the loop and server pings go unanswered until the server drops the
  connection. This loop answers pings inline and puts messages into the adapter's bounded
  buffer, whose overflow policy decides (see ``_buffer``).
* It decodes the server's frames itself (``_frames``: about 4x cheaper per message than
  wsproto's parser) and hands the messages of one read to the sink in one call.
* It bounds a message's size from the frame headers, before the payload is buffered
  (httpx-ws's ``max_message_size_bytes`` is only a read chunk size), and closes with 1009.
* It catches the failure where the network stream raises, so the original exception (with
  ``ssl.SSLError.reason``, which trio's path loses) reaches the classifier.
* It checks the opening handshake per RFC 6455 (httpx-ws checks only the status) before the
  session starts: the constructor is the first place the response is seen.
* Every write (the host's sends, pings, answers to pings, the close frame) has a deadline,
  ``sink.write_timeout``: a peer that stopped reading fills the send buffer, and a write stuck
  on it would hold the write lock forever and starve the heartbeat behind it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Protocol

import anyio
import anyio.abc
import httpcore
import wsproto.events
from anyio.lowlevel import checkpoint
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, WebSocketNetworkError
from httpx_ws._api import EndOfStream as HttpxWsEndOfStream
from httpx_ws._ping import AsyncPingManager

from ._classify import MessageTooBig
from ._frames import Close, FrameDecoder, FrameError, Ping, Pong
from ._guards import SendBlocked, check_handshake

__all__ = ["RegulatorSession", "SessionSink", "TolerantPingManager"]


class SessionSink(Protocol):
    """Where a session's reader delivers (implemented by ResilientWebSocket)."""

    max_message_bytes: int
    write_timeout: float

    async def deliver_many(self, messages: list[str | bytes]) -> None: ...

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
        # Server frames are decoded by ``_frames`` (wsproto's parser was 75 % of the receive
        # time); wsproto's connection still writes our frames and keeps the close handshake's
        # state, so it is told about a close frame (the only frame whose receipt it must know).
        sink = self.sink
        decoder = FrameDecoder(sink.max_message_bytes)
        deliver_many = sink.deliver_many
        batch: list[str | bytes] = []
        failure: FrameError | None = None
        pending, read = self._reader()
        try:
            while not self._should_close.is_set():
                if pending:
                    data, pending = pending, b""
                else:
                    data = await read(max_bytes)
                try:
                    events = decoder.feed(data)
                except FrameError as exc:
                    events, failure = exc.events, exc
                for event in events:
                    kind = type(event)
                    if kind is str or kind is bytes:
                        batch.append(event)  # type: ignore[arg-type]
                        continue
                    if batch:  # in order: the messages before a control frame go first
                        await deliver_many(batch)
                        batch = []
                    if isinstance(event, Ping):
                        await self._write(wsproto.events.Pong(event.payload))  # at once
                        sink.ping_answered()
                    elif isinstance(event, Pong):
                        self._ping_manager.ack(event.payload)
                    elif isinstance(event, Close):
                        self._should_close.set()
                        await self._answer_close(event)  # complete the close handshake
                        raise WebSocketDisconnect(event.code, event.reason)
                if batch:
                    await deliver_many(batch)
                    batch = []
                    # let a waiting consumer take them before this task sets up its next read
                    # (an SSL read attempt and a reader registration): measured, that is most
                    # of the latency this task adds at low rates; one loop turn per read else
                    await checkpoint()
                if failure is not None:
                    self._should_close.set()
                    # RFC 6455 section 7.1.7: fail the connection with the code that says why
                    await self._write(wsproto.events.CloseConnection(failure.code, failure.reason))
                    if failure.code == 1009:
                        raise MessageTooBig(failure.reason)
                    raise WebSocketDisconnect(failure.code, failure.reason)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # every way a connection dies: the adapter classifies it
            self._should_close.set()
            sink.reader_failed(self, exc)

    def _reader(self) -> tuple[bytes, Callable[[int], Awaitable[bytes]]]:
        """(bytes already read past the 101, the cheapest read the stream allows).

        httpcore's ``read`` opens a cancel scope (``fail_after(None)``) and an exception map
        per call, under an upgrade wrapper's own call: at low message rates, where each message
        is a read of its own, that was most of the reader's work. So the anyio or trio stream
        under httpcore's upgrade stream is read directly (the wrapper's leftover bytes first);
        its exceptions carry the same causes (``ssl.SSLError`` included), which is all the
        classifier looks at. Any other stream keeps httpx-ws's read.
        """
        stream: Any = self.stream
        network: Any = getattr(stream, "_stream", None)
        raw: Any = getattr(network, "_stream", None)
        if type(stream).__name__ == "AsyncHTTP11UpgradeStream":
            kind = type(network).__name__
            if kind == "AnyIOStream" and isinstance(raw, anyio.abc.ByteReceiveStream):
                receive = raw.receive

                async def read_anyio(max_bytes: int) -> bytes:
                    try:
                        return await receive(max_bytes)
                    except anyio.EndOfStream:
                        pass
                    # raised outside the handler, as httpcore's b"" led to: an EOF without
                    # close_notify stays a network failure (anyio keeps the SSLError as the
                    # context of its EndOfStream, and the classifier reads contexts)
                    raise HttpxWsEndOfStream()

                leading, stream._leading_data = stream._leading_data, b""
                return bytes(leading), read_anyio
            if kind == "TrioStream" and hasattr(raw, "receive_some"):
                receive_some = raw.receive_some

                async def read_trio(max_bytes: int) -> bytes:
                    data: bytes = await receive_some(max_bytes)
                    if not data:
                        raise HttpxWsEndOfStream()
                    return data

                leading, stream._leading_data = stream._leading_data, b""
                return bytes(leading), read_trio
        return b"", self._read_stream

    async def _answer_close(self, close: Close) -> None:
        # wsproto learns of the close from the frame itself (re-framed as the server sent it,
        # already validated), so its state moves to REMOTE_CLOSING and its answer is right.
        self.connection.receive_data(bytes([0x88, len(close.payload)]) + close.payload)
        for event in self.connection.events():
            if isinstance(event, wsproto.events.CloseConnection):
                await self._write(event.response())
