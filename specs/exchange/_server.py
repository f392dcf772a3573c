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

import h11
from wsproto.events import (
    TextMessage,
)

from .._loops import close_server, shut_down
from ._connection import ConnectionRecord, StreamConn, text_frame
from ._http import MAX_REQUEST_BYTES, answer_rest, is_upgrade, reason_phrase
from ._limits import AttemptLimit, WeightLimit
from ._market import MarketConfig, Symbol
from ._rest import Rest
from ._sessions import Sessions
from ._streams import Streams, micro

__all__ = ["Exchange"]


class Exchange(Sessions):
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
            self._accepted, self.host, self.port, ssl=self.ssl_context
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
        for writer in list(self._writers):
            writer.transport.abort()
        # then in the order `specs/_loops.py` explains: no socket left to a garbage collection
        await shut_down(*([self._server] if self._server is not None else []))

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
                await close_server(self._server)
                self._server = None
            for conn in list(self._conns):
                conn.record.close_reason = "server restart"
                conn.writer.transport.abort()
            await asyncio.sleep(down)
            self._server = await asyncio.start_server(
                self._accepted, self.host, self.port, ssl=self.ssl_context
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

    def book_at(self, symbol: str, update_id: int, levels: int = 20) -> dict[str, Any]:
        """The book of ``symbol`` (lower case) as of update ``update_id``, in the shape of a
        depth snapshot (``LookupError`` when that update is not in the history kept)."""

        def read() -> dict[str, Any]:
            bids, asks = self.symbols[symbol].book_at(update_id, levels)
            return {"lastUpdateId": update_id, "bids": bids, "asks": asks}

        result: dict[str, Any] = self.call(read)
        return result

    # -- HTTP ----------------------------------------------------------------------------
    def _accepted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None]:
        # held from the moment it is accepted: a handler task cancelled before it first runs
        # runs no `finally`, and stop() must still close its socket
        self._writers.add(writer)
        return self._accept(reader, writer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        request: h11.Request | None = None
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

    def _answer_rest(
        self, http: h11.Connection, request: h11.Request, writer: asyncio.StreamWriter
    ) -> None:
        target = request.target.decode("latin-1")
        unit = next((v for n, v in request.headers if n == b"x-mbx-time-unit"), b"")
        status, body, headers = answer_rest(self.rest, self.weight, request.method, target, unit)
        self.rest_requests.append((time.monotonic(), target, status, self.weight.used))
        self._respond(http, writer, status, body, headers)

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
