"""An httpx-ws session that survives httpx-ws 0.9.0's faults.

* A stray or duplicate Pong made ``AsyncPingManager.ack`` raise ``KeyError`` and kill the
  session: the tolerant manager counts it and moves on (RFC 6455 allows unsolicited pongs).
* The stock read loop hands each message to the consumer through an unbuffered stream, so a
  slow consumer stops the loop and server pings go unanswered until the server drops the
  connection. This loop answers pings inline and puts messages into the adapter's bounded
  buffer, whose overflow policy decides (see ``_buffer``).
* It decodes the server's frames itself (``_frames``: about 17x cheaper per message than
  wsproto's parser) and hands the messages of one read to the sink in one call.
* A consumer waiting with nothing buffered reads and decodes the stream in its own task (no
  hop through the reader task); the reader task reads while the consumer is away. See "the
  read turn" below.
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
from ._frames import Close, Event, FrameDecoder, FrameError, Ping, Pong
from ._guards import SendBlocked, check_handshake

__all__ = ["RegulatorSession", "SessionSink", "TolerantPingManager"]

# who reads the stream now (see "the read turn" below)
_NOBODY, _READER, _CONSUMER = 0, 1, 2
# The reader task looks this often (at most) whether the consumer is away, not waiting in
# receive(), to take the stream over; a quarter of the pong timeout when that is shorter, so a
# pong is seen in time. Not much more often: measured on trio, a look every 50 ms (a timer, a
# cancel scope) delayed about one message per look, 2 % of them at 1,000 msg/s (p99 +30 %).
TAKEOVER_SECONDS = 0.5


class SessionSink(Protocol):
    """Where a session's reader delivers (implemented by ResilientWebSocket)."""

    max_message_bytes: int
    write_timeout: float

    async def deliver_many(self, messages: list[str | bytes]) -> None: ...

    def take_messages(self, events: list[Event], only_messages: bool) -> int:
        """Buffer the messages at the head of ``events`` that fit now, counted; how many.
        ``only_messages``: the decoder vouches that ``events`` holds no control event."""
        ...

    def wake_consumer(self) -> None: ...

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
        self._setup_turns()

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
        self._end_consumer_reads()  # a consumer's read must not outlive the stream
        with anyio.move_on_after(self.sink.write_timeout):
            await super().close(code, reason)

    # -- the read turn: who reads the stream ---------------------------------------------------
    # One task at a time reads and decodes: the consumer while it waits in ``receive()`` with
    # nothing buffered (no task hop between the socket and the message: at low rates that hop
    # was most of the latency), the reader task while the consumer is away (so pings are
    # answered, pongs seen and the overflow policy applied however slow the consumer is).
    # Everything a consumer's read decodes other than a message that fits in the buffer (a
    # control frame, an error, the messages after them or past the bound) is handed to the
    # reader task, in order, and nobody reads again until it is handled.

    def _setup_turns(self) -> None:
        self._owner = _NOBODY
        self._read: Callable[[int], Awaitable[bytes]] | None = None
        self._read_size = 65536
        self._decoder = FrameDecoder(self.sink.max_message_bytes)
        self._handed: list[Event] = []  # decoded by the consumer, for the reader task
        self._handed_failure: BaseException | None = None
        self._waiting_consumers = 0
        self._read_scope: anyio.CancelScope | None = None  # the reader task's read in progress
        self._reader_idle = False
        self._reader_wake = anyio.Event()
        # how long the consumer may be away before the reader task takes the stream over
        self._takeover = min(TAKEOVER_SECONDS, self.sink.write_timeout / 4)
        self._ended = False

    def consumer_may_read(self) -> bool:
        """True if the waiting consumer may read the stream itself now."""
        return (
            self._owner == _NOBODY
            and self._read is not None
            and not self._handed
            and self._handed_failure is None
            and not self._ended
            and not self._should_close.is_set()
        )

    async def consumer_read(self) -> None:
        """One read by the consumer's task, decoded; the messages go into the buffer.

        Cancel-safe: a cancellation can only land in the read itself, which loses no bytes
        (anyio's and trio's TLS streams keep unread data where it was); everything after it
        runs without an await, so the bytes read are decoded and placed, never dropped. No
        cancel scope of its own (one costs 3 to 8 us, per message at low rates): when the
        session ends, closing its stream ends the read with an error, which is dropped."""
        assert self._read is not None
        self._owner = _CONSUMER
        try:
            data = await self._read(self._read_size)
        except Exception as exc:  # the reader task reports it, as if it had read it
            if not self._ended:
                self._handed_failure = exc
                self._wake_reader()
            return
        except BaseException:  # cancelled: nothing was read; the reader may take over now
            self._wake_reader()
            raise
        finally:
            self._owner = _NOBODY
        controls = self._decoder.controls
        events, failure = self._decode(data)
        taken = self.sink.take_messages(events, self._decoder.controls == controls)
        if taken < len(events) or failure is not None:
            self._handed = events[taken:]
            self._handed_failure = failure
            self._wake_reader()

    async def consumer_wait(self, wait: Callable[[], Awaitable[None]]) -> None:
        """Wait (``wait``: for the buffer) while the reader task has the stream; its read in
        progress is cancelled (it loses nothing) and it hands the stream over when done."""
        self._waiting_consumers += 1
        scope = self._read_scope
        if scope is not None:
            scope.cancel()
        try:
            await wait()
        finally:
            self._waiting_consumers -= 1
            self._wake_reader()

    def _wake_reader(self) -> None:
        if self._reader_idle:
            self._reader_idle = False
            self._reader_wake.set()

    def _end_consumer_reads(self) -> None:
        self._ended = True  # no new read; one in progress ends as the stream closes
        self.sink.wake_consumer()

    def _decode(self, data: bytes) -> tuple[list[Event], FrameError | None]:
        try:
            return self._decoder.feed(data), None
        except FrameError as exc:
            return exc.events, exc

    async def _background_receive(self, max_bytes: int) -> None:
        # Server frames are decoded by ``_frames`` (wsproto's parser was 75 % of the receive
        # time); wsproto's connection still writes our frames and keeps the close handshake's
        # state, so it is told about a close frame (the only frame whose receipt it must know).
        sink = self.sink
        self._read_size = max_bytes
        leading, read = self._reader()
        try:
            if leading:
                await self._handle(*self._decode(leading))
            self._read = read
            while not self._should_close.is_set():
                if self._handed or self._handed_failure is not None:
                    events, self._handed = self._handed, []
                    failure, self._handed_failure = self._handed_failure, None
                    self._owner = _READER
                    await self._handle(events, failure)
                    self._owner = _NOBODY
                    continue
                if self._owner != _NOBODY or self._waiting_consumers:
                    # the consumer reads, or wants to: stand by until it leaves
                    if self._waiting_consumers:
                        sink.wake_consumer()
                    self._reader_wake = anyio.Event()
                    self._reader_idle = True
                    with anyio.move_on_after(self._takeover):
                        await self._reader_wake.wait()
                    self._reader_idle = False
                    continue
                self._owner = _READER
                with anyio.CancelScope() as scope:
                    self._read_scope = scope
                    try:
                        data = await read(max_bytes)
                    finally:
                        self._read_scope = None
                if scope.cancelled_caught:  # a consumer came back to read: let it
                    self._owner = _NOBODY
                    continue
                await self._handle(*self._decode(data))
                self._owner = _NOBODY
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:  # every way a connection dies: the adapter classifies it
            self._should_close.set()
            sink.reader_failed(self, exc)
        finally:
            self._owner = _NOBODY
            self._end_consumer_reads()

    async def _handle(self, events: list[Event], failure: BaseException | None) -> None:
        """Deliver and act on decoded events, in order; raises what ends the connection."""
        sink = self.sink
        batch: list[str | bytes] = []
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                batch.append(event)  # type: ignore[arg-type]
                continue
            if batch:  # in order: the messages before a control frame go first
                await sink.deliver_many(batch)
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
            await sink.deliver_many(batch)
            # let a waiting consumer take them before this task sets up its next read
            # (an SSL read attempt and a reader registration)
            await checkpoint()
        if isinstance(failure, FrameError):
            self._should_close.set()
            # RFC 6455 section 7.1.7: fail the connection with the code that says why
            await self._write(wsproto.events.CloseConnection(failure.code, failure.reason))
            if failure.code == 1009:
                raise MessageTooBig(failure.reason)
            raise WebSocketDisconnect(failure.code, failure.reason)
        if failure is not None:  # the consumer's read failed
            raise failure

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
