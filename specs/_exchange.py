"""A Binance-compatible market-data exchange on 127.0.0.1, for tests and demos (offline).

It speaks the spot stream protocol by the exchange's published rules, so a client that is
correct against it obeys them:

* endpoints ``/stream`` (combined: ``{"stream", "data"}``), ``/stream?streams=a/b`` and
  ``/ws/<stream>`` (raw payloads); lower-case symbols;
* ``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` /
  ``GET_PROPERTY`` requests with an ``id`` (an int64, a string of up to 36 letters, digits and
  ``-``, or null); replies ``{"result", "id"}`` or errors ``{"code", "msg", "id"}`` with the
  documented codes (0 unknown property, 1 invalid value type, 2 invalid request, 3 invalid
  JSON), or ``{"error": {"code", "msg"}, "id"}`` with ``wrapped_errors``; at most
  ``max_streams`` streams per connection;
* at most ``max_attempts`` connection attempts per ``attempt_window`` (300 per 5 minutes) per
  IP: one more is answered 429 with ``Retry-After``; an attempt while that Retry-After runs is
  answered 418 (banned, ``Retry-After: ban_seconds``), as are all attempts during the ban;
* the close handshake: a close frame is answered, then the server closes TCP; a close the
  server starts waits for the client's close frame (at most 1 s), then closes TCP;
* at most ``max_incoming_per_second`` incoming frames per second per connection (text, ping
  and pong frames all count): one more and the connection is closed (1008), as the exchange
  drops it;
* a ping every ``ping_interval``; no matching pong within ``pong_timeout`` closes the
  connection; a connection lives at most ``max_connection_age``;
* on command: a ``serverShutdown`` event then a close after a grace period, upgrades refused
  with 429 / 418 and ``Retry-After``, closes with any code, raw text (malformed messages).

The market is generated, not real: per symbol a seeded random walk whose volatility clusters
(GARCH(1,1) on per-trade log returns). Streams, with the exchange's update speeds:

* per trade: ``trade``, ``aggTrade``, ``bookTicker``;
* diff depth ``depth`` (every 1000 ms) and ``depth@100ms``: each event covers the updates
  ``U`` to ``u`` since the previous one (``U`` = previous ``u`` + 1);
* partial books ``depth5``, ``depth10``, ``depth20`` (1000 ms, or ``@100ms``):
  ``{"lastUpdateId", "bids", "asks"}``;
* ``ticker`` (24hrTicker), ``miniTicker`` (24hrMiniTicker), ``!miniTicker@arr`` (all
  symbols' mini tickers in one array) and ``avgPrice`` (5-minute average), every 1000 ms;
* ``kline_<interval>`` for every interval the exchange has (``1s`` ... ``1M``): an update every
  2000 ms of market time (``kline_1s``: each second), and each candle closed (``x`` true) when
  market time passes its end, trades or not (up to ``MAX_FILL`` empty candles per step).

Market time runs ``speed`` times faster than the wall clock (``speed=60``: a 1-minute kline
closes every second); the 100 ms / 1000 ms update speeds are wall-clock. Every connection sees
the same events with the same ids, as on the exchange.

It runs on its own asyncio loop in a thread, so clients on asyncio or trio (or in another
process) can use it; everything it records (attempts, connections, incoming frame times, rule
violations) is readable from the test.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

__all__ = ["ConnectionRecord", "Exchange", "MarketConfig"]

_INTERVALS_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": 0,  # calendar months: see _candle_bounds
}
_STREAM = re.compile(
    r"^(?:([a-z0-9]+)@(trade|aggTrade|bookTicker|ticker|miniTicker|avgPrice"
    r"|depth(?:5|10|20)?(?:@100ms|@1000ms)?|kline_(1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M))"
    r"|!miniTicker@arr)$"
)
_KLINE_UPDATE_MS = 2_000  # the exchange pushes a kline's state every 2 s (kline_1s: 1 s)
#: Empty candles published per stream per market step when market time jumps past several.
MAX_FILL = 50
_WEEK_ORIGIN_MS = 345_600_000  # 1970-01-05, a Monday: weekly candles open on Mondays
_ID_TEXT = re.compile(r"^[A-Za-z0-9-]{1,36}$")
_INT64 = (-(2**63), 2**63 - 1)


@attrs.frozen(kw_only=True)
class MarketConfig:
    """The generated market: per symbol a start price; one trade per symbol per tick."""

    symbols: dict[str, float] = attrs.field(factory=lambda: {"ethusdt": 3000.0})
    trades_per_second: float = 20.0
    speed: float = 1.0
    seed: int = 7
    #: market time of the first trade, ms since the epoch (2026-01-05 00:00 UTC)
    start_ms: int = 1_767_571_200_000
    #: per-trade volatility and the GARCH(1,1) persistence that clusters it
    volatility: float = 4e-4
    garch_alpha: float = 0.08
    garch_beta: float = 0.90


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

    def max_incoming_per_second(self) -> int:
        """The most incoming frames seen in any one-second window."""
        times = self.incoming
        best = start = 0
        for end in range(len(times)):
            while times[end] - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best


def _valid_id(rid: Any) -> bool:
    """The documented request ids: an int64, a string of up to 36 letters, digits and ``-``
    (a UUID fits), or null."""
    if rid is None:
        return True
    if isinstance(rid, int) and not isinstance(rid, bool):
        return _INT64[0] <= rid <= _INT64[1]
    return isinstance(rid, str) and _ID_TEXT.match(rid) is not None


def _candle_bounds(interval: str, ms: int, t: int) -> tuple[int, int]:
    """[start, next start) of the candle of ``interval`` holding market time ``t`` (ms)."""
    if interval == "1M":  # calendar months, UTC
        day = datetime.fromtimestamp(t / 1000, tz=UTC)
        month = datetime(day.year, day.month, 1, tzinfo=UTC)
        following = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=UTC)
        return int(month.timestamp() * 1000), int(following.timestamp() * 1000)
    origin = _WEEK_ORIGIN_MS if interval == "1w" else 0
    first = t - (t - origin) % ms
    return first, first + ms


class _Symbol:
    def __init__(self, name: str, price: float, cfg: MarketConfig, rng: random.Random) -> None:
        self.name = name
        self.upper = name.upper()
        self.price = price
        self.cfg = cfg
        self.rng = rng
        self.var = cfg.volatility**2
        self.last_return = 0.0
        self.trade_id = 1_000_000
        self.agg_id = 500_000
        self.update_id = 9_000_000
        # rolling statistics for ticker / miniTicker (since the start: the simulator's "24 h")
        self.open = price
        self.high = self.low = price
        self.volume = self.quote = 0.0
        self.count = 0
        self.first_id = self.trade_id + 1
        self.last_qty = 0.0
        self.last_trade_ms = 0
        self.recent: deque[tuple[int, float, float]] = deque()  # (ms, price, qty) for avgPrice
        #: diff depth: the last update id published, per update speed (ms)
        self.depth_sent: dict[int, int] = {}
        # interval -> the open candle: [start, o, h, l, c, volume, quote, trades, first, last]
        self.candles: dict[str, list[Any]] = {}
        self.kline_sent: dict[str, int] = {}

    def step(self) -> tuple[float, float, bool]:
        cfg = self.cfg
        omega = cfg.volatility**2 * (1 - cfg.garch_alpha - cfg.garch_beta)
        self.var = omega + cfg.garch_alpha * self.last_return**2 + cfg.garch_beta * self.var
        r = math.sqrt(self.var) * self.rng.gauss(0.0, 1.0)
        self.last_return = r
        self.price = max(0.01, self.price * math.exp(r))
        qty = round(self.rng.lognormvariate(-1.5, 1.0), 4) + 0.0001
        self.trade_id += 1
        self.agg_id += 1
        self.update_id += 1
        self.high = max(self.high, self.price)
        self.low = min(self.low, self.price)
        self.volume += qty
        self.quote += qty * self.price
        self.count += 1
        self.last_qty = qty
        return self.price, qty, self.rng.random() < 0.5

    def book(self, levels: int) -> tuple[list[list[str]], list[list[str]]]:
        """A synthetic book around the price: ``levels`` bids and asks, one tick apart."""
        tick = max(0.01, round(self.price * 1e-5, 2))
        seed = self.update_id
        bids = [
            [f"{self.price - tick * (i + 1):.2f}", f"{0.1 + (seed * 7 + i * 13) % 50 / 10:.4f}"]
            for i in range(levels)
        ]
        asks = [
            [f"{self.price + tick * (i + 1):.2f}", f"{0.1 + (seed * 11 + i * 17) % 50 / 10:.4f}"]
            for i in range(levels)
        ]
        return bids, asks


class _Conn:
    def __init__(self, record: ConnectionRecord, writer: asyncio.StreamWriter) -> None:
        self.record = record
        self.writer = writer
        self.ws = WSConnection(ConnectionType.SERVER)
        self.streams = record.streams
        self.combined = True
        self.window: deque[float] = deque()
        self.ping_payload: bytes | None = None
        self.ping_sent: float = 0.0
        self.closing = False
        self.text: list[str] = []

    def send(self, event: Any) -> None:
        if self.closing or self.ws.state is not ConnectionState.OPEN:
            return
        self.writer.write(self.ws.send(event))


class Exchange:
    """The simulator. Use as a context manager, or ``start()`` / ``stop()``.

    Args:
        ssl_context: a server context for ``wss://`` (None: plain ``ws://``).
        market: the generated market.
        max_incoming_per_second, max_streams, ping_interval, pong_timeout,
        max_connection_age: the exchange's rules (Binance: 5, 1024, 20 s, 60 s, 24 h).
        port: 0 picks a free one.
        max_attempts, attempt_window, ban_seconds: connection attempts allowed per window
            (Binance: 300 per 5 minutes per IP) and the ban (418) for ignoring a 429.
        wrapped_errors: send errors as ``{"error": {"code", "msg"}, "id"}`` (what the live
            service and the official SDK use) instead of the documentation's flat
            ``{"code", "msg", "id"}``.
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
        wrapped_errors: bool = False,
        max_attempts: int = 300,
        attempt_window: float = 300.0,
        ban_seconds: float = 120.0,
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
        self.max_attempts = max_attempts
        self.attempt_window = attempt_window
        self.ban_seconds = ban_seconds
        self._attempt_times: deque[float] = deque()
        self._limited_until = 0.0
        self._banned_until = 0.0
        self.host = host
        self.port = port
        rng = random.Random(self.market.seed)
        self.symbols = {
            name: _Symbol(name, price, self.market, rng)
            for name, price in self.market.symbols.items()
        }
        self.attempts: list[tuple[float, str, int]] = []  # (monotonic, path, status)
        self.connections: list[ConnectionRecord] = []
        self.refusals: deque[tuple[int, float | None]] = deque()
        self.trades_published = 0
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._t0 = 0.0

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
        self._tasks = [
            self._loop.create_task(self._run_market()),
            self._loop.create_task(self._run_periodic()),
        ]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.writer.transport.abort()
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
        """The base URL (``wss://127.0.0.1:<port>``); clients add ``/stream``."""
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}"

    def market_time_ms(self) -> int:
        elapsed = self._loop.time() - self._t0
        return self.market.start_ms + int(elapsed * self.market.speed * 1000)

    # -- commands (any thread) ---------------------------------------------------------------
    def refuse_upgrades(self, status: int, retry_after: float | None, count: int = 1) -> None:
        """Answer the next ``count`` upgrades with ``status`` (429, 418, ...) + Retry-After."""
        self.call(lambda: self.refusals.extend([(status, retry_after)] * count))

    def server_shutdown(self, grace: float = 5.0) -> None:
        """Send ``serverShutdown`` to every open connection; close them after ``grace`` s.
        A combined connection gets it wrapped as ``{"stream": "!serverShutdown", "data"}``."""

        def notify() -> None:
            event = json.dumps({"e": "serverShutdown", "E": self.market_time_ms()})
            combined = f'{{"stream":"!serverShutdown","data":{event}}}'
            doomed = list(self._conns)
            for conn in doomed:
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

    def _close_many(self, conns: list[_Conn], code: int, reason: str) -> None:
        for conn in conns:
            self._close(conn, code, reason)

    def _close(self, conn: _Conn, code: int, reason: str) -> None:
        if conn.closing:
            return
        conn.send(CloseConnection(code=code, reason=reason))
        conn.closing = True
        conn.record.close_reason = conn.record.close_reason or f"{code} {reason}".strip()
        # the client's close frame completes the handshake and closes TCP (_on_frame); a
        # client that never answers is cut off
        self._loop.call_later(1.0, conn.writer.transport.abort)

    # -- connections -----------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        record = ConnectionRecord(
            number=len(self.connections) + 1, path="", opened=time.monotonic()
        )
        conn = _Conn(record, writer)
        pinger: asyncio.Task[None] | None = None
        try:
            while True:
                data = await reader.read(65536)
                conn.ws.receive_data(data or None)
                for event in conn.ws.events():
                    if isinstance(event, Request):
                        if not self._upgrade(conn, event):
                            await writer.drain()
                            return
                        self._conns.add(conn)
                        self.connections.append(record)
                        pinger = self._loop.create_task(self._keepalive(conn))
                        if self.close_after_accept is not None:
                            self._close(conn, *self.close_after_accept)
                    else:
                        self._on_frame(conn, event)
                if not data:
                    return
                await writer.drain()
        except (OSError, ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # cancelled only by stop(): end quietly (asyncio logs a cancelled handler)
        except Exception as exc:  # a protocol error from wsproto: drop like a server does
            record.close_reason = record.close_reason or f"error {type(exc).__name__}"
        finally:
            self._conns.discard(conn)
            if pinger is not None:
                pinger.cancel()
            record.closed = time.monotonic()
            record.close_reason = record.close_reason or "client went away"
            writer.transport.abort()

    def _upgrade(self, conn: _Conn, request: Request) -> bool:
        target = request.target
        conn.record.path = target
        limited: tuple[int, float | None] | None = self._attempt_limit()
        if self.refusals:
            limited = self.refusals.popleft()
        if limited is not None:
            status, retry_after = limited
            self.attempts.append((time.monotonic(), target, status))
            body = b'{"code":-1003,"msg":"Too many requests."}'
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            if retry_after is not None:
                headers.append((b"retry-after", str(math.ceil(retry_after)).encode()))
            conn.writer.write(
                conn.ws.send(RejectConnection(status_code=status, headers=headers, has_body=True))
            )
            conn.writer.write(conn.ws.send(RejectData(data=body, body_finished=True)))
            return False
        parts = urlsplit(target)
        if parts.path.rstrip("/") == "/stream":
            conn.combined = True
            names = parse_qs(parts.query).get("streams", [""])[0]
            initial = [n for n in names.split("/") if n]
        elif parts.path.startswith("/ws"):
            conn.combined = False
            rest = parts.path[len("/ws") :].strip("/")
            initial = [n for n in rest.split("/") if n]
        else:
            self.attempts.append((time.monotonic(), target, 404))
            conn.writer.write(conn.ws.send(RejectConnection(status_code=404)))
            return False
        self.attempts.append((time.monotonic(), target, 101))
        conn.writer.write(conn.ws.send(AcceptConnection()))
        for name in initial[: self.max_streams]:
            if _STREAM.match(name):
                conn.streams.add(name)
        return True

    def _attempt_limit(self) -> tuple[int, float] | None:
        """(status, Retry-After) when this attempt breaks the per-IP limit, else None."""
        now = time.monotonic()
        window = self._attempt_times
        window.append(now)
        while window and window[0] <= now - self.attempt_window:
            window.popleft()
        if now < self._banned_until:
            return 418, self._banned_until - now
        if now < self._limited_until:  # a 429's Retry-After ignored: the IP is banned
            self._banned_until = now + self.ban_seconds
            return 418, self.ban_seconds
        if len(window) > self.max_attempts:
            retry = max(1.0, window[-self.max_attempts - 1] + self.attempt_window - now)
            self._limited_until = now + retry
            return 429, retry
        return None

    async def _keepalive(self, conn: _Conn) -> None:
        opened = self._loop.time()
        while not conn.closing:
            await asyncio.sleep(min(self.ping_interval, 1.0))
            now = self._loop.time()
            if now - opened >= self.max_connection_age:
                self._close(conn, 1001, "connection lifetime expired")
                return
            if conn.ping_payload is not None and now - conn.ping_sent > self.pong_timeout:
                conn.record.close_reason = "pong timeout"
                self._close(conn, 1008, "pong timeout")
                return
            if conn.ping_payload is None and now - conn.ping_sent >= self.ping_interval:
                conn.ping_payload = random.randbytes(8)
                conn.ping_sent = now
                conn.send(Ping(payload=conn.ping_payload))

    def _count_incoming(self, conn: _Conn) -> bool:
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

    def _on_frame(self, conn: _Conn, event: Any) -> None:
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

    # -- requests ------------------------------------------------------------------------
    def _reply(self, conn: _Conn, body: dict[str, Any]) -> None:
        if self.wrapped_errors and "code" in body:
            body = {"error": {"code": body["code"], "msg": body["msg"]}, "id": body.get("id")}
        conn.send(TextMessage(data=json.dumps(body)))

    def _on_request(self, conn: _Conn, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError as exc:
            self._reply(conn, {"code": 3, "msg": f"Invalid JSON: {exc}", "id": None})
            return
        conn.record.requests.append(request if isinstance(request, dict) else {"raw": request})
        if not isinstance(request, dict):
            self._reply(conn, {"code": 2, "msg": "Invalid request: expected an object", "id": None})
            return
        rid = request.get("id")
        if not _valid_id(rid):
            self._reply(
                conn,
                {
                    "code": 2,
                    "msg": "Invalid request: request ID must be an int64, a string of up to 36"
                    " letters, digits and '-', or null",
                    "id": None,
                },
            )
            return
        method = request.get("method")
        params = request.get("params", [])
        if method is None:
            self._reply(
                conn, {"code": 2, "msg": "Invalid request: missing field `method`", "id": rid}
            )
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                self._reply(
                    conn, {"code": 1, "msg": "Invalid value type: expected a list", "id": rid}
                )
                return
            bad = [p for p in params if not _STREAM.match(p)]
            if bad:
                self._reply(
                    conn,
                    {"code": 2, "msg": f"Invalid request: unknown stream {bad[0]!r}", "id": rid},
                )
                return
            if method == "SUBSCRIBE":
                if len(conn.streams | set(params)) > self.max_streams:
                    self._reply(
                        conn,
                        {
                            "code": 2,
                            "msg": f"Invalid request: more than {self.max_streams} streams",
                            "id": rid,
                        },
                    )
                    return
                conn.streams.update(params)
            else:
                conn.streams.difference_update(params)
            self._reply(conn, {"result": None, "id": rid})
        elif method == "LIST_SUBSCRIPTIONS":
            self._reply(conn, {"result": sorted(conn.streams), "id": rid})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or not isinstance(params[0], str):
                self._reply(
                    conn,
                    {
                        "code": 2,
                        "msg": "Invalid request: property name must be a string",
                        "id": rid,
                    },
                )
            elif params[0] != "combined":
                self._reply(conn, {"code": 0, "msg": "Unknown property", "id": rid})
            elif method == "GET_PROPERTY":
                self._reply(conn, {"result": conn.combined, "id": rid})
            elif len(params) != 2 or not isinstance(params[1], bool):
                self._reply(
                    conn, {"code": 1, "msg": "Invalid value type: expected Boolean", "id": rid}
                )
            else:
                conn.combined = params[1]
                self._reply(conn, {"result": None, "id": rid})
        else:
            self._reply(
                conn, {"code": 2, "msg": f"Invalid request: unknown method {method!r}", "id": rid}
            )

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
                self._trade(symbol, now_ms, wanted)
            for conn in list(self._conns):  # a client that stopped reading is dropped
                if conn.writer.transport.get_write_buffer_size() > 8 << 20:
                    conn.record.close_reason = "client too slow"
                    conn.writer.transport.abort()

    def _wanted_streams(self) -> set[str]:
        wanted: set[str] = set()
        for conn in self._conns:
            wanted |= conn.streams
        return wanted

    def _publish(self, stream: str, payload: Any) -> None:
        raw = json.dumps(payload, separators=(",", ":"))
        combined = f'{{"stream":"{stream}","data":{raw}}}'
        for conn in list(self._conns):
            if stream in conn.streams:
                conn.send(TextMessage(data=combined if conn.combined else raw))

    def _trade(self, sym: _Symbol, now_ms: int, wanted: set[str]) -> None:
        price, qty, maker = sym.step()
        self.trades_published += 1
        p, q, name, upper = f"{price:.2f}", f"{qty:.4f}", sym.name, sym.upper
        if f"{name}@trade" in wanted:
            self._publish(
                f"{name}@trade",
                {"e": "trade", "E": now_ms, "s": upper, "t": sym.trade_id, "p": p, "q": q,
                 "T": now_ms, "m": maker, "M": True},
            )  # fmt: skip
        if f"{name}@aggTrade" in wanted:
            self._publish(
                f"{name}@aggTrade",
                {"e": "aggTrade", "E": now_ms, "s": upper, "a": sym.agg_id, "p": p, "q": q,
                 "f": sym.trade_id, "l": sym.trade_id, "T": now_ms, "m": maker, "M": True},
            )  # fmt: skip
        spread = max(0.01, round(price * 1e-5, 2))
        bid, ask = f"{price - spread:.2f}", f"{price + spread:.2f}"
        if f"{name}@bookTicker" in wanted:
            self._publish(
                f"{name}@bookTicker",
                {"u": sym.update_id, "s": upper, "b": bid, "B": q, "a": ask, "A": q},
            )
        sym.last_trade_ms = now_ms
        sym.recent.append((now_ms, price, qty))
        while sym.recent and sym.recent[0][0] <= now_ms - 300_000:
            sym.recent.popleft()
        for interval, ms in _INTERVALS_MS.items():
            stream = f"{name}@kline_{interval}"
            if stream in wanted or interval in sym.candles:
                self._kline(sym, stream, interval, ms, now_ms, price, qty)

    def _kline(
        self, sym: _Symbol, stream: str, interval: str, ms: int, now_ms: int, price: float,
        qty: float,
    ) -> None:  # fmt: skip
        start, end = _candle_bounds(interval, ms, now_ms)
        candle = sym.candles.get(interval)
        if candle is not None and start > candle[0]:
            self._publish(stream, self._kline_payload(sym, interval, candle, now_ms, True))
            # the candles market time skipped without a trade close too, empty (as the
            # exchange publishes them), up to MAX_FILL per step
            close, nxt = candle[4], candle[10]
            for _ in range(MAX_FILL):
                if nxt >= start:
                    break
                first, after = _candle_bounds(interval, ms, nxt)
                empty = [first, close, close, close, close, 0.0, 0.0, 0, -1, -1, after]
                self._publish(stream, self._kline_payload(sym, interval, empty, now_ms, True))
                nxt = after
            candle = None
        if candle is None:
            tid = sym.trade_id
            candle = [start, price, price, price, price, 0.0, 0.0, 0, tid, tid, end]
            sym.candles[interval] = candle
            sym.kline_sent[interval] = now_ms
        candle[2] = max(candle[2], price)
        candle[3] = min(candle[3], price)
        candle[4] = price
        candle[5] += qty
        candle[6] += qty * price
        candle[7] += 1
        candle[9] = sym.trade_id
        every = 1_000 if interval == "1s" else _KLINE_UPDATE_MS
        if now_ms - sym.kline_sent[interval] >= every:
            sym.kline_sent[interval] = now_ms
            self._publish(stream, self._kline_payload(sym, interval, candle, now_ms, False))

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
            every_second = tick % 10 == 0
            for sym in self.symbols.values():
                self._books(sym, now_ms, wanted, 100, ("@100ms",))
                if every_second:
                    self._books(sym, now_ms, wanted, 1000, ("", "@1000ms"))
                    self._tickers(sym, now_ms, wanted)
            if every_second and "!miniTicker@arr" in wanted:
                self._publish(
                    "!miniTicker@arr", [self._mini(sym, now_ms) for sym in self.symbols.values()]
                )

    def _books(
        self, sym: _Symbol, now_ms: int, wanted: set[str], speed: int, suffixes: tuple[str, ...]
    ) -> None:
        """Diff depth (``U`` = previous ``u`` + 1, whoever listens) and partial books."""
        last = sym.depth_sent.get(speed, sym.update_id)
        sym.depth_sent[speed] = sym.update_id
        bids, asks = sym.book(20)
        for suffix in suffixes:
            stream = f"{sym.name}@depth{suffix}"
            if stream in wanted and sym.update_id > last:
                self._publish(
                    stream,
                    {"e": "depthUpdate", "E": now_ms, "s": sym.upper, "U": last + 1,
                     "u": sym.update_id, "b": bids[:3], "a": asks[:3]},
                )  # fmt: skip
            for levels in (5, 10, 20):
                partial = f"{sym.name}@depth{levels}{suffix}"
                if partial in wanted:
                    self._publish(
                        partial,
                        {"lastUpdateId": sym.update_id, "bids": bids[:levels],
                         "asks": asks[:levels]},
                    )  # fmt: skip

    @staticmethod
    def _mini(sym: _Symbol, now_ms: int) -> dict[str, Any]:
        return {
            "e": "24hrMiniTicker", "E": now_ms, "s": sym.upper, "c": f"{sym.price:.2f}",
            "o": f"{sym.open:.2f}", "h": f"{sym.high:.2f}", "l": f"{sym.low:.2f}",
            "v": f"{sym.volume:.4f}", "q": f"{sym.quote:.4f}",
        }  # fmt: skip

    def _tickers(self, sym: _Symbol, now_ms: int, wanted: set[str]) -> None:
        name = sym.name
        if f"{name}@miniTicker" in wanted:
            self._publish(f"{name}@miniTicker", self._mini(sym, now_ms))
        if f"{name}@ticker" in wanted:
            change = sym.price - sym.open
            weighted = sym.quote / sym.volume if sym.volume else sym.price
            bids, asks = sym.book(1)
            self._publish(
                f"{name}@ticker",
                {"e": "24hrTicker", "E": now_ms, "s": sym.upper, "p": f"{change:.2f}",
                 "P": f"{100 * change / sym.open:.3f}", "w": f"{weighted:.2f}",
                 "x": f"{sym.open:.2f}", "c": f"{sym.price:.2f}", "Q": f"{sym.last_qty:.4f}",
                 "b": bids[0][0], "B": bids[0][1], "a": asks[0][0], "A": asks[0][1],
                 "o": f"{sym.open:.2f}", "h": f"{sym.high:.2f}", "l": f"{sym.low:.2f}",
                 "v": f"{sym.volume:.4f}", "q": f"{sym.quote:.4f}",
                 "O": self.market.start_ms, "C": now_ms, "F": sym.first_id, "L": sym.trade_id,
                 "n": sym.count},
            )  # fmt: skip
        if f"{name}@avgPrice" in wanted and sym.recent:
            volume = sum(q for _, _, q in sym.recent)
            average = sum(p * q for _, p, q in sym.recent) / volume if volume else sym.price
            self._publish(
                f"{name}@avgPrice",
                {"e": "avgPrice", "E": now_ms, "s": sym.upper, "i": "5m",
                 "w": f"{average:.8f}", "T": sym.last_trade_ms},
            )  # fmt: skip

    @staticmethod
    def _kline_payload(
        sym: _Symbol, interval: str, c: list[Any], now_ms: int, closed: bool
    ) -> dict[str, Any]:
        return {
            "e": "kline",
            "E": now_ms,
            "s": sym.upper,
            "k": {
                "t": c[0], "T": c[10] - 1, "s": sym.upper, "i": interval, "f": c[8],
                "L": c[9], "o": f"{c[1]:.2f}", "c": f"{c[4]:.2f}", "h": f"{c[2]:.2f}",
                "l": f"{c[3]:.2f}", "v": f"{c[5]:.4f}", "n": c[7], "x": closed,
                "q": f"{c[6]:.4f}", "V": "0", "Q": "0", "B": "0",
            },
        }  # fmt: skip
