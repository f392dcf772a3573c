"""The stream side of the origin: the upgrade (limits, paths, stream names, ``timeUnit``),
then each connection's frames: control requests, the incoming-message limit, the keepalive
(the first ping one interval after the upgrade) and the close handshake.

A mixin of ``Exchange`` (``_server``), which holds the state named below.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import deque
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.utilities import generate_accept_token

from ._connection import ConnectionRecord, StreamConn
from ._http import asks_upgrade, respond
from ._limits import AttemptLimit, retry_after_header
from ._requests import Session, answer
from ._streams import valid_stream

__all__ = ["MAX_REQUEST_TEXT", "Sessions"]

#: The longest request text a stream connection takes (1024 stream names fit in 64 KiB).
MAX_REQUEST_TEXT = 65_536


class Sessions:
    """Upgrades and stream connections (state kept by ``Exchange``)."""

    attempt_limit: AttemptLimit
    refusals: deque[tuple[int, float | None]]
    attempts: list[tuple[float, str, int]]
    connections: list[ConnectionRecord]
    close_after_accept: tuple[int, str] | None
    max_streams: int
    max_incoming_per_second: int
    ping_interval: float
    pong_timeout: float
    max_connection_age: float
    wrapped_errors: bool
    _conns: set[StreamConn]
    _loop: asyncio.AbstractEventLoop

    def _respond(
        self,
        http: h11.Connection,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        headers: list[tuple[str, str]],
        *,
        close: bool = False,
    ) -> None:
        writer.write(respond(http, status, body, headers, close=close))

    def _close_many(self, conns: list[StreamConn], code: int, reason: str) -> None:
        for conn in conns:
            self._close(conn, code, reason)

    def _close(self, conn: StreamConn, code: int, reason: str) -> None:
        if conn.closing:
            return
        conn.send(CloseConnection(code=code, reason=reason))
        conn.closing = True
        conn.record.close_reason = conn.record.close_reason or f"{code} {reason}".strip()
        # the client's close frame completes the handshake and closes TCP (_on_frame); a
        # client that never answers is cut off
        self._loop.call_later(1.0, conn.writer.transport.abort)

    # -- the upgrade ---------------------------------------------------------------------
    async def _websocket(
        self,
        http: h11.Connection,
        request: h11.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        target = request.target.decode("latin-1")
        record = ConnectionRecord(
            number=len(self.connections) + 1, path=target, opened=time.monotonic()
        )
        limited: tuple[int, float | None] | None = self.attempt_limit.attempt(time.monotonic())
        if self.refusals:
            limited = self.refusals.popleft()
        if limited is not None:
            status, retry_after = limited
            self.attempts.append((time.monotonic(), target, status))
            headers = (
                [] if retry_after is None else [("retry-after", retry_after_header(retry_after))]
            )
            body = b'{"code":-1003,"msg":"Too many requests."}'
            self._respond(http, writer, status, body, headers, close=True)
            await writer.drain()
            return
        parts = urlsplit(target)
        # '+' stays '+' (``kline_1d@+08:00``): %-escapes decoded, not form encoding
        query: dict[str, list[str]] = {}
        for pair in parts.query.split("&"):
            name, _, value = pair.partition("=")
            query.setdefault(unquote(name), []).append(unquote(value))
        if parts.path.rstrip("/") == "/stream":
            combined = True
            initial = [n for n in query.get("streams", [""])[0].split("/") if n]
        elif parts.path == "/ws" or parts.path.startswith("/ws/"):
            combined = False
            initial = [n for n in parts.path[len("/ws") :].strip("/").split("/") if n]
        else:
            self.attempts.append((time.monotonic(), target, 404))
            self._respond(http, writer, 404, b"", [], close=True)
            await writer.drain()
            return
        unit = query.get("timeUnit", ["MILLISECOND"])[0].upper()
        if not all(valid_stream(n) for n in initial) or unit not in ("MILLISECOND", "MICROSECOND"):
            self.attempts.append((time.monotonic(), target, 400))
            body = b'{"code":2,"msg":"Invalid request: invalid stream"}'
            if unit not in ("MILLISECOND", "MICROSECOND"):
                body = b'{"code":2,"msg":"Invalid request: invalid timeUnit"}'
            self._respond(http, writer, 400, body, [], close=True)
            await writer.drain()
            return
        key = dict(request.headers).get(b"sec-websocket-key", b"")
        if not key or not asks_upgrade(request):
            self.attempts.append((time.monotonic(), target, 400))
            self._respond(http, writer, 400, b"", [], close=True)
            await writer.drain()
            return
        self.attempts.append((time.monotonic(), target, 101))
        writer.write(
            http.send(
                h11.InformationalResponse(
                    status_code=101,
                    headers=[
                        ("upgrade", "websocket"),
                        ("connection", "Upgrade"),
                        ("sec-websocket-accept", generate_accept_token(key).decode()),
                    ],
                    reason=b"Switching Protocols",
                )
            )
            or b""
        )
        trailing, _ = http.trailing_data
        conn = StreamConn(record, writer, Connection(ConnectionType.SERVER, trailing_data=trailing))
        conn.combined = combined
        conn.micro = unit == "MICROSECOND"
        conn.streams.update(initial[: self.max_streams])
        await self._serve(conn, reader)

    async def _serve(self, conn: StreamConn, reader: asyncio.StreamReader) -> None:
        record, writer = conn.record, conn.writer
        self._conns.add(conn)
        self.connections.append(record)
        pinger = self._loop.create_task(self._keepalive(conn))
        if self.close_after_accept is not None:
            self._close(conn, *self.close_after_accept)
        try:
            data = b"-"
            while True:
                for event in conn.ws.events():
                    self._on_frame(conn, event)
                if not data:
                    return
                await writer.drain()
                data = await reader.read(65536)
                conn.ws.receive_data(data or None)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception as exc:  # a protocol error from wsproto: drop like a server does
            record.close_reason = record.close_reason or f"error {type(exc).__name__}"
        finally:
            self._conns.discard(conn)
            pinger.cancel()
            record.closed = time.monotonic()
            record.close_reason = record.close_reason or "client went away"
            writer.transport.abort()

    async def _keepalive(self, conn: StreamConn) -> None:
        """A ping every ``ping_interval``, the first one interval after the upgrade."""
        opened = conn.ping_sent = self._loop.time()
        while not conn.closing:
            due = conn.ping_sent + (
                self.ping_interval if conn.ping_payload is None else self.pong_timeout
            )
            wake = min(due, opened + self.max_connection_age)
            # at most 1 s asleep: a pong that arrives meanwhile re-arms the ping in time
            await asyncio.sleep(min(1.0, max(0.0, wake - self._loop.time())))
            now = self._loop.time()
            if now - opened >= self.max_connection_age:
                self._close(conn, 1001, "connection lifetime expired")
                return
            if conn.ping_payload is not None and now - conn.ping_sent >= self.pong_timeout:
                conn.record.close_reason = "pong timeout"
                self._close(conn, 1008, "pong timeout")
                return
            if conn.ping_payload is None and now - conn.ping_sent >= self.ping_interval:
                conn.ping_payload = random.randbytes(8)
                conn.ping_sent = now
                conn.record.pings.append(time.monotonic())
                conn.send(Ping(payload=conn.ping_payload))

    def _count_incoming(self, conn: StreamConn) -> bool:
        now = time.monotonic()
        conn.record.incoming.append(now)
        window = conn.window
        window.append(now)
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) > self.max_incoming_per_second:
            conn.record.violations += 1
            conn.record.close_reason = "too many incoming messages"
            self._close(conn, 1008, "Too many requests")
            return False
        return True

    def _on_frame(self, conn: StreamConn, event: Any) -> None:
        if isinstance(event, CloseConnection):
            conn.record.close_reason = conn.record.close_reason or f"client closed {event.code}"
            if conn.ws.state is ConnectionState.REMOTE_CLOSING:  # the client started: answer
                conn.writer.write(conn.ws.send(event.response()))
            conn.closing = True
            conn.writer.close()  # both close frames sent: the server closes TCP (RFC 6455 7.1.1)
            return
        if isinstance(event, Ping | Pong | TextMessage | BytesMessage) and not getattr(
            event, "frame_finished", True
        ):
            if isinstance(event, TextMessage):
                self._gather(conn, event.data)
            return
        if not self._count_incoming(conn):
            return
        if isinstance(event, Ping):
            conn.send(event.response())
        elif isinstance(event, Pong):
            if conn.ping_payload is not None and bytes(event.payload) == conn.ping_payload:
                conn.ping_payload = None
        elif isinstance(event, TextMessage):
            if not self._gather(conn, event.data):
                return
            if event.message_finished:
                text, conn.text, conn.text_size = "".join(conn.text), [], 0
                self._on_request(conn, text)

    def _gather(self, conn: StreamConn, part: str) -> bool:
        """Keep a request's text, at most MAX_REQUEST_TEXT characters: a longer one closes
        the connection 1009 (no request of the protocol comes near it)."""
        conn.text.append(part)
        conn.text_size += len(part)
        if conn.text_size <= MAX_REQUEST_TEXT:
            return True
        conn.text, conn.text_size = [], 0
        conn.record.close_reason = "request too big"
        self._close(conn, 1009, "Message too big")
        return False

    def _on_request(self, conn: StreamConn, text: str) -> None:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            parsed = None
        conn.record.requests.append(parsed if isinstance(parsed, dict) else {"raw": text})
        session = Session(conn.streams, conn.combined, self.max_streams)
        body = answer(text, session)
        conn.combined = session.combined
        if self.wrapped_errors and "code" in body:
            body = {"error": {"code": body["code"], "msg": body["msg"]}, "id": body.get("id")}
        conn.send(TextMessage(data=json.dumps(body)))
