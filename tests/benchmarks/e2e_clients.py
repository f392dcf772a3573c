"""The end-to-end bench's clients, one per process, each run by the Python of its own environment
(regulator's ``.venv``, or a peer's ``.venv-cf``, ``.venv-pb``, ``.venv-bs``): nothing here is
imported at module level but the standard library.

``python e2e_clients.py CLIENT BASE_URL CA_PEM EXPECTED STREAM...`` connects CLIENT to the
bench server (``e2e_server.py``) at ``wss://127.0.0.1:PORT`` (REST on the same port), takes the
streams' events as the client hands them to a host (parsed), and prints one JSON line:
``events`` (handed over), ``seconds`` and ``cpu_s`` (wall and process CPU time from the first
event to the last), ``rss_kib`` (the process's peak RSS). A client that stops receiving for
``IDLE`` seconds before EXPECTED events reports what it had (the driver flags the loss).
Only the endpoints and the CA trust differ from each client's production use.
"""

from __future__ import annotations

import json
import os
import resource
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any

IDLE = 10.0


class Meter:
    """Counts events; the clock and the CPU meter start at the first one."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.n = 0
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0

    def hit(self) -> bool:
        """One event handed over; True once all arrived."""
        n = self.n = self.n + 1
        if n == 1:
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        if n >= self.expected:
            self.t1, self.c1 = time.perf_counter(), time.process_time()
            return True
        return False

    def report(self) -> dict[str, Any]:
        if self.n < self.expected or not self.t1:
            self.t1, self.c1 = time.perf_counter(), time.process_time()
        return {
            "events": self.n,
            "seconds": self.t1 - self.t0,
            "cpu_s": self.c1 - self.c0,
            "rss_kib": _peak_rss_kib(),
        }


def _peak_rss_kib() -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over an exec (the driver's would count)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _context(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def _stream_url(base: str, streams: list[str]) -> str:
    return f"{base}/stream?streams={'/'.join(streams)}"


# -- regulator ----------------------------------------------------------------------------------
def binance_stream(
    base: str, ca: str, meter: Meter, streams: list[str], backend: str, raw: bool = False
) -> None:
    import logging

    import anyio
    from regulator.adapters.binance import AttemptBudget, BinanceStream
    from regulator.fsm import ConnectionConfig

    logging.getLogger("regulator").addHandler(logging.NullHandler())
    logging.getLogger("regulator").propagate = False
    stats: dict[str, Any] = {}

    async def run() -> None:
        config = ConnectionConfig(ping_interval=60.0, pong_timeout=10.0)
        async with BinanceStream(
            streams,
            base_url=base,
            ssl_context=_context(ca),
            config=config,
            attempt_budget=AttemptBudget(300, 300.0),
            raw=raw,
        ) as s:
            with anyio.move_on_after(120):
                async for _event in s:
                    if meter.hit():
                        break
            stats.update(s.get_connection_stats()["binance"])

    anyio.run(run, backend=backend)
    meter.extra = {  # type: ignore[attr-defined]
        "gaps": stats.get("gaps_detected"),
        "duplicates": stats.get("duplicates_dropped"),
        "malformed": stats.get("malformed"),
        "decoder": stats.get("decoder"),
    }


def resilient_json(base: str, ca: str, meter: Meter, streams: list[str]) -> None:
    import asyncio

    from regulator.adapters.websocket import ResilientWebSocket
    from regulator.fsm import ConnectionConfig

    async def run() -> None:
        config = ConnectionConfig(ping_interval=60.0, pong_timeout=10.0)
        url = _stream_url(base, streams)
        async with ResilientWebSocket(url, ssl_context=_context(ca), config=config) as ws:
            loads = json.loads
            async for raw in ws:
                loads(raw)
                if meter.hit():
                    break

    asyncio.run(run())


# -- plain clients ------------------------------------------------------------------------------
def websockets_json(base: str, ca: str, meter: Meter, streams: list[str]) -> None:
    import asyncio

    from websockets.asyncio.client import connect

    async def run() -> None:
        async with connect(
            _stream_url(base, streams), ssl=_context(ca), compression=None, max_size=1 << 20
        ) as ws:
            loads = json.loads
            while True:
                loads(await asyncio.wait_for(ws.recv(), IDLE))
                if meter.hit():
                    break

    asyncio.run(run())


def picows_orjson(base: str, ca: str, meter: Meter, streams: list[str]) -> None:
    import asyncio

    import orjson
    from picows import WSListener, WSMsgType, ws_connect

    loads = orjson.loads

    class Listener(WSListener):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                loads(frame.get_payload_as_memoryview())
                if meter.hit():
                    transport.disconnect()

    async def run() -> None:
        transport, _ = await ws_connect(
            Listener, _stream_url(base, streams), ssl_context=_context(ca)
        )
        await asyncio.wait_for(transport.wait_disconnected(), 120)

    asyncio.run(run())


# -- peers --------------------------------------------------------------------------------------
def cryptofeed(base: str, ca: str, meter: Meter, streams: list[str]) -> None:
    import asyncio

    from cryptofeed import FeedHandler
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
    from cryptofeed.defines import L2_BOOK, TICKER, TRADES
    from cryptofeed.exchanges import Binance

    rest = base.replace("wss://", "https://")
    Binance.websocket_endpoints = [WebsocketEndpoint(base)]
    Binance.rest_endpoints = [
        RestEndpoint(
            rest,
            routes=Routes(
                "/api/v3/exchangeInfo",
                l2book="/api/v3/depth?symbol={}&limit={}",
                authentication="/api/v3/userDataStream",
            ),
        )
    ]
    symbols = sorted({s.split("@")[0].upper() for s in streams})
    pairs = [f"{s[:-4]}-{s[-4:]}" for s in symbols]
    loop = asyncio.new_event_loop()

    async def hit(*_: Any) -> None:
        if meter.hit():
            loop.stop()

    try:  # cryptofeed's default: uvloop when it is installed
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        loop = asyncio.new_event_loop()
    except ImportError:
        pass
    asyncio.set_event_loop(loop)
    handler = FeedHandler(config={"log": {"disabled": True}, "uvloop": False})
    handler.add_feed(
        Binance(
            symbols=pairs,
            channels=[TRADES, TICKER, L2_BOOK],
            max_depth=10,
            callbacks={TRADES: hit, TICKER: hit, L2_BOOK: hit},
        )
    )
    handler.run(start_loop=False, install_signal_handlers=False)
    loop.call_later(120, loop.stop)
    loop.run_forever()


def python_binance(base: str, ca: str, meter: Meter, streams: list[str]) -> None:
    import asyncio

    from binance import AsyncClient, BinanceSocketManager

    async def run() -> None:
        context = _context(ca)
        AsyncClient.API_URL = base.replace("wss://", "https://") + "/api"
        client = await AsyncClient.create(requests_params={"ssl": context})
        try:
            manager = BinanceSocketManager(client, max_queue_size=1 << 20)
            manager.STREAM_URL = base + "/"
            manager.ws_kwargs = {"ssl": context}
            async with manager.multiplex_socket(streams) as socket:
                while True:
                    message = await asyncio.wait_for(socket.recv(), IDLE)
                    if message.get("e") == "error":
                        raise RuntimeError(str(message))
                    if meter.hit():
                        break
        finally:
            await client.close_connection()

    asyncio.run(run())


def binance_connector(base: str, ca: str, meter: Meter, streams: list[str]) -> None:
    import threading

    from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

    done = threading.Event()

    def on_message(_: Any, raw: str) -> None:
        message = json.loads(raw)
        if "stream" in message and meter.hit():
            done.set()

    client = SpotWebsocketStreamClient(stream_url=base, on_message=on_message, is_combined=True)
    try:
        client.subscribe(stream=streams)
        done.wait(120)
    finally:
        client.stop()


def binance_sdk_spot(base: str, ca: str, meter: Meter, streams: list[str]) -> None:
    import asyncio

    from binance_sdk_spot.spot import ConfigurationWebSocketStreams, Spot

    async def run() -> None:
        done = asyncio.Event()
        config = ConfigurationWebSocketStreams(stream_url=base, https_agent=_context(ca))
        connection = await Spot(config_ws_streams=config).websocket_streams.create_connection()

        def on(_message: Any) -> None:
            if meter.hit():
                done.set()

        try:
            for name in streams:
                symbol, kind = name.split("@", 1)
                if kind == "trade":
                    handle = await connection.trade(symbol=symbol)
                elif kind == "aggTrade":
                    handle = await connection.agg_trade(symbol=symbol)
                elif kind == "bookTicker":
                    handle = await connection.book_ticker(symbol=symbol)
                else:
                    handle = await connection.diff_book_depth(symbol=symbol, update_speed="100ms")
                handle.on("message", on)
            await asyncio.wait_for(done.wait(), 120)
        finally:
            await connection.close_connection(close_session=True)

    asyncio.run(run())


# Every client takes (base, ca, meter, streams).
CLIENTS: dict[str, Callable[[str, str, Meter, list[str]], None]] = {
    "BinanceStream asyncio": lambda b, c, m, s: binance_stream(b, c, m, s, "asyncio"),
    "BinanceStream trio": lambda b, c, m, s: binance_stream(b, c, m, s, "trio"),
    "BinanceStream asyncio (raw=True)": lambda b, c, m, s: binance_stream(
        b, c, m, s, "asyncio", raw=True
    ),
    "ResilientWebSocket + json.loads": resilient_json,
    "websockets + json.loads": websockets_json,
    "picows + orjson": picows_orjson,
    "cryptofeed": cryptofeed,
    "binance-sdk-spot": binance_sdk_spot,
    "python-binance": python_binance,
    "binance-connector": binance_connector,
}


def main(argv: list[str]) -> None:
    name, base, ca, expected, *streams = argv
    meter = Meter(int(expected))
    os.environ.setdefault("SSL_CERT_FILE", ca)
    CLIENTS[name](base, ca, meter, streams)
    report = meter.report()
    report.update(getattr(meter, "extra", {}))
    print(json.dumps(report), flush=True)
    os._exit(0)  # peers' threads and loops left behind do not hold the process


if __name__ == "__main__":
    main(sys.argv[1:])
