"""The exchange on 127.0.0.1: one TLS origin serving REST and the streams (HTTP/1.1, h11 for
the requests, wsproto for the frames), with the exchange's rules and commands for tests.

* ``GET /api/v3/...``: REST market data (``_rest``), request weight per IP (``weight_limit``
  per ``weight_window``; ``X-MBX-USED-WEIGHT-1M`` and ``X-MBX-USED-WEIGHT`` on every answer;
  429, then 418 with ``Retry-After``), keep-alive connections;
* ``/ws/<stream>``, ``/stream?streams=a/b`` (combined ``{"stream", "data"}``), optional
  ``timeUnit=MICROSECOND``: an invalid or upper-case name is answered 400 (the upgrade
  refused, the ``invalid stream`` error as body); control requests (``_requests``);
* at most ``max_attempts`` connection attempts per ``attempt_window`` (300 per 5 minutes) per
  IP: 429, then 418 (``_limits``; a ban ends when its Retry-After says);
* status lines carry their reason phrases (``HTTP/1.1 429 Too Many Requests``);
* the close handshake: a close frame is answered, then the server closes TCP; a close the
  server starts waits for the client's close frame (at most 1 s), then closes TCP;
* at most ``max_incoming_per_second`` incoming frames per second per connection (text, ping
  and pong frames all count): one more and the connection is closed (1008);
* a ping every ``ping_interval``, the first one interval after the upgrade; no matching pong
  within ``pong_timeout`` closes the connection; a connection lives at most
  ``max_connection_age``;
* on command: ``serverShutdown`` then a close after a grace period, upgrades refused with
  429 / 418 and ``Retry-After``, closes with any code, raw text (malformed messages).

It runs on its own asyncio loop in a thread, so clients on asyncio or trio (or in another
process) can use it; what it records (attempts, connections, incoming frame times, requests)
is readable from the test.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import unquote, urlsplit

import h11
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.utilities import generate_accept_token

from ._connection import ConnectionRecord, StreamConn, text_frame
from ._http import MAX_REQUEST_BYTES, answer_rest, asks_upgrade, is_upgrade, reason_phrase, respond
from ._limits import AttemptLimit, WeightLimit, retry_after_header
from ._market import MarketConfig, Symbol
from ._requests import Session, answer
from ._rest import Rest
from ._streams import Streams, micro, valid_stream

__all__ = ["Exchange"]


class Exchange:
    """The simulator. Use as a context manager, or ``start()`` / ``stop()``.

    Args:
        ssl_context: a server context for ``wss://`` / ``https://`` (None: plain).
        market: the generated market (default: on the wall clock).
        max_incoming_per_second, max_streams, ping_interval, pong_timeout,
        max_connection_age: the exchange's rules (Binance: 5, 1024, 20 s, 60 s, 24 h).
        port: 0 picks a free one.
        max_attempts, attempt_window, ban_seconds: connection attempts allowed per window
            (Binance: 300 per 5 minutes per IP) and the ban (418) for ignoring a 429.
        weight_limit, weight_window: REST request weight per window (6000 per minute).
        wrapped_errors: stream errors as ``{"error": {"code", "msg"}, "id"}``, what the live
            service sends (the default; seen from stream.binance.com, e.g.
            ``{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":2}``, and what
            binance-sdk-spot reads); False: the documentation's flat ``{"code", "msg", "id"}``.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        market: MarketConfig | None = None,
        max_incoming_per_second: int = 5,
        max_streams: int = 1024,
        ping_interval: float = 20.0,
        pong_timeout: float = 60.0,
        max_connection_age: float = 86_400.0,
        host: str = "127.0.0.1",
        port: int = 0,
        wrapped_errors: bool = True,
        max_attempts: int = 300,
        attempt_window: float = 300.0,
        ban_seconds: float = 120.0,
        weight_limit: int = 6000,
        weight_window: float = 60.0,
    ) -> None:
        self.ssl_context = ssl_context
        self.market = market or MarketConfig()
        self.max_incoming_per_second = max_incoming_per_second
        self.max_streams = max_streams
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_connection_age = max_connection_age
        self.wrapped_errors = wrapped_errors
        self.close_after_accept: tuple[int, str] | None = None
        self.attempt_limit = AttemptLimit(max_attempts, attempt_window, ban_seconds)
        self.weight = WeightLimit(weight_limit, weight_window, ban_seconds)
        self.host = host
        self.port = port
        rng = random.Random(self.market.seed)
        self.symbols = {
            name: Symbol(name, price, self.market, rng)
            for name, price in self.market.symbols.items()
        }
        self.streams = Streams(self.symbols, self._publish)
        self.rest = Rest(self.symbols, self.market_time_ms)
        self.attempts: list[tuple[float, str, int]] = []  # (monotonic, path, status)
        self.connections: list[ConnectionRecord] = []
        #: every REST request: (monotonic, path with query, status, weight used after it)
        self.rest_requests: list[tuple[float, str, int, int]] = []
        self.refusals: deque[tuple[int, float | None]] = deque()
        self.trades_published = 0
        self.events_published = 0  # events sent to at least one connection
        self._conns: set[StreamConn] = set()
        self._writers: set[asyncio.StreamWriter] = set()  # every open TCP connection
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._t0 = 0.0
        self._start_ms = 0

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Exchange:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self.call(self._start)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.call(self._stop)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._t0 = self._loop.time()
        start = self.market.start_ms
        self._start_ms = int(time.time() * 1000) if start is None else start
        self._tasks = [
            self._loop.create_task(self._run_market()),
            self._loop.create_task(self._run_periodic()),
        ]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def call(self, fn: Callable[[], Coroutine[Any, Any, Any]] | Callable[[], Any]) -> Any:
        """Run ``fn`` (sync or async) on the exchange's loop; return its result."""

        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    @property
    def url(self) -> str:
        """The streams' base URL (``wss://127.0.0.1:<port>``); clients add ``/stream``."""
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """REST's base URL on the same origin (``https://127.0.0.1:<port>``)."""
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    def market_time_ms(self) -> int:
        """Market time: the wall clock by default; ``speed`` times faster from ``start_ms``."""
        elapsed = self._loop.time() - self._t0
        return self._start_ms + int(elapsed * self.market.speed * 1000)

    # -- commands (any thread) ---------------------------------------------------------------
    def refuse_upgrades(self, status: int, retry_after: float | None, count: int = 1) -> None:
        """Answer the next ``count`` upgrades with ``status`` (429, 418, ...) + Retry-After."""
        self.call(lambda: self.refusals.extend([(status, retry_after)] * count))

    def server_shutdown(self, grace: float = 5.0) -> None:
        """Send ``serverShutdown`` to every open connection; close them after ``grace`` s.
        A combined connection gets it wrapped as ``{"stream": "!serverShutdown", "data"}``."""

        def notify() -> None:
            payload = {"e": "serverShutdown", "E": self.market_time_ms()}
            doomed = list(self._conns)
            for conn in doomed:
                event = json.dumps(micro(payload) if conn.micro else payload)
                combined = f'{{"stream":"!serverShutdown","data":{event}}}'
                conn.send(TextMessage(data=combined if conn.combined else event))
            self._loop.call_later(grace, self._close_many, doomed, 1001, "server shutdown")

        self.call(notify)

    def drop_after_accept(self, code: int | None = 1008, reason: str = "Too many requests") -> None:
        """Accept every upgrade and close the connection at once with ``code`` (as the
        exchange does to a client it limits); None accepts normally again."""
        value = None if code is None else (code, reason)
        self.call(lambda: setattr(self, "close_after_accept", value))

    def restart(self, down: float = 0.0) -> None:
        """A server restart: every connection dropped (no close frame), nothing listening
        for ``down`` seconds, then the same port again. Returns at once."""

        async def restart() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()
                self._server = None
            for conn in list(self._conns):
                conn.record.close_reason = "server restart"
                conn.writer.transport.abort()
            await asyncio.sleep(down)
            self._server = await asyncio.start_server(
                self._accept, self.host, self.port, ssl=self.ssl_context
            )

        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(restart()))

    def close_all(self, code: int = 1000, reason: str = "") -> None:
        self.call(lambda: self._close_many(list(self._conns), code, reason))

    def send_raw(self, text: str) -> None:
        """Send ``text`` as is to every connection (malformed input for clients)."""

        def send() -> None:
            for conn in list(self._conns):
                conn.send(TextMessage(data=text))

        self.call(send)

    def open_connections(self) -> int:
        return int(self.call(lambda: len(self._conns)))

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

    # -- HTTP ----------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        request: h11.Request | None = None
        self._writers.add(writer)
        try:
            while True:
                data = await reader.read(65536)
                http.receive_data(data)
                while True:
                    event = http.next_event()
                    if event is h11.NEED_DATA or event is h11.PAUSED:
                        break
                    if isinstance(event, h11.ConnectionClosed):
                        return
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.EndOfMessage) and request is not None:
                        if is_upgrade(request):
                            await self._websocket(http, request, reader, writer)
                            return
                        self._answer_rest(http, request, writer)
                        await writer.drain()
                        if http.our_state is h11.MUST_CLOSE:
                            return
                        http.start_next_cycle()
                        request = None
                if not data:
                    return
        except h11.RemoteProtocolError as exc:
            if http.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                body = b"Bad Request"
                writer.write(
                    http.send(
                        h11.Response(
                            status_code=exc.error_status_hint,
                            headers=[("content-length", str(len(body))), ("connection", "close")],
                            reason=reason_phrase(exc.error_status_hint),
                        )
                    )
                    or b""
                )
                writer.write(http.send(h11.Data(data=body)) or b"")
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # cancelled only by stop(): end quietly
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

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

    def _answer_rest(
        self, http: h11.Connection, request: h11.Request, writer: asyncio.StreamWriter
    ) -> None:
        target = request.target.decode("latin-1")
        status, body, headers = answer_rest(self.rest, self.weight, request.method, target)
        self.rest_requests.append((time.monotonic(), target, status, self.weight.used))
        self._respond(http, writer, status, body, headers)

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
                conn.text.append(event.data)
            return
        if not self._count_incoming(conn):
            return
        if isinstance(event, Ping):
            conn.send(event.response())
        elif isinstance(event, Pong):
            if conn.ping_payload is not None and bytes(event.payload) == conn.ping_payload:
                conn.ping_payload = None
        elif isinstance(event, TextMessage):
            conn.text.append(event.data)
            if event.message_finished:
                text, conn.text = "".join(conn.text), []
                self._on_request(conn, text)

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

    # -- the market ------------------------------------------------------------------------
    async def _run_market(self) -> None:
        period = 1.0 / self.market.trades_per_second
        next_at = self._loop.time()
        while True:
            next_at += period
            await asyncio.sleep(max(0.0, next_at - self._loop.time()))
            now_ms = self.market_time_ms()
            wanted = self._wanted_streams()
            for symbol in self.symbols.values():
                self.streams.trade(symbol, now_ms, wanted)
                self.trades_published += 1
            for conn in list(self._conns):  # a client that stopped reading is dropped
                conn.flush()
                if conn.writer.transport.get_write_buffer_size() > 8 << 20:
                    conn.record.close_reason = "client too slow"
                    conn.writer.transport.abort()

    async def _run_periodic(self) -> None:
        """The streams with a wall-clock update speed: every 100 ms, and every 1000 ms."""
        tick = 0
        next_at = self._loop.time()
        while True:
            next_at += 0.1
            await asyncio.sleep(max(0.0, next_at - self._loop.time()))
            tick += 1
            now_ms = self.market_time_ms()
            wanted = self._wanted_streams()
            self.streams.books(now_ms, wanted, 100)
            if tick % 10 == 0:
                self.streams.books(now_ms, wanted, 1000)
                self.streams.every_second(now_ms, wanted)
            for conn in self._conns:
                conn.flush()

    def _wanted_streams(self) -> set[str]:
        wanted: set[str] = set()
        for conn in self._conns:
            wanted |= conn.streams
        return wanted

    def _publish(self, stream: str, payload: Any) -> None:
        """Send one event to every connection on ``stream``: encoded once per form (raw or
        combined, milliseconds or microseconds), written as the same bytes to each."""
        frames: dict[tuple[bool, bool], bytes] = {}
        sent = False
        for conn in self._conns:
            if stream not in conn.streams:
                continue
            form = (conn.combined, conn.micro)
            frame = frames.get(form)
            if frame is None:
                raw = json.dumps(micro(payload) if conn.micro else payload, separators=(",", ":"))
                text = f'{{"stream":"{stream}","data":{raw}}}' if conn.combined else raw
                frame = frames[form] = text_frame(text)
            conn.write_frame(frame)
            sent = True
        self.events_published += sent
