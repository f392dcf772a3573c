"""The exchange simulator (``regulator.specs.exchange``) by the exchange's documentation,
through real sockets (TLS on 127.0.0.1), on asyncio and trio; and a real third-party client
(binance-connector) parsing its output."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import httpx
import pytest
from _faultbed import Certs
from httpx_ws import AsyncWebSocketSession, WebSocketUpgradeError, aconnect_ws
from regulator.adapters.binance import AttemptBudget, BinanceStream
from regulator.fsm import ConnectionConfig
from regulator.specs.exchange import Exchange, MarketConfig
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request

pytestmark = pytest.mark.anyio

# market time pinned to 2026-01-05 00:00 UTC (a Monday): candle bounds checked to the ms
MARKET = MarketConfig(
    symbols={"ethusdt": 3000.0, "btcusdt": 90000.0},
    trades_per_second=50.0,
    start_ms=1_767_571_200_000,
)


@pytest.fixture
def exchange(certs: Certs) -> Iterator[Exchange]:
    # the documentation's flat errors; the live service's wrapped ones are the default
    with Exchange(
        ssl_context=certs.server_context(), market=MARKET, wrapped_errors=False
    ) as running:
        yield running


async def ask(
    certs: Certs, exchange: Exchange, frames: list[str], path: str = "/ws"
) -> list[dict[str, Any]]:
    """Send ``frames`` on one connection; return the replies (not market events), in order."""
    replies: list[dict[str, Any]] = []
    ws: AsyncWebSocketSession  # aconnect_ws is generic in its session_class
    async with (
        httpx.AsyncClient(verify=certs.client_context()) as client,
        aconnect_ws(exchange.url + path, client, keepalive_ping_interval_seconds=None) as ws,
    ):
        for frame in frames:
            await ws.send_text(frame)
            with anyio.fail_after(5):
                while True:
                    message = json.loads(await ws.receive_text())
                    if isinstance(message, dict) and ("id" in message or "code" in message):
                        replies.append(message)
                        break
            await anyio.sleep(0.25)  # under 5 incoming frames a second
    return replies


async def test_request_ids_are_the_documented_ones(certs: Certs, exchange: Exchange) -> None:
    good = [2**63 - 1, "0c2b1a8e-6f0e-4b8e-9a55-3d3c2f0e4b1a", None]
    bad = [2**63, "x" * 37, "no spaces", True]
    frames = [json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": rid}) for rid in good + bad]
    replies = await ask(certs, exchange, frames)
    assert [r.get("result") for r in replies[:3]] == [[], [], []]
    assert [r["id"] for r in replies[:3]] == good
    for reply in replies[3:]:
        assert reply["code"] == 2 and reply["msg"].startswith("Invalid request: request ID")
        assert reply["id"] is None


async def test_errors_carry_the_documented_codes(certs: Certs, exchange: Exchange) -> None:
    frames = [
        '{"method": "SET_PROPERTY", "params": ["nothing", true], "id": 1}',
        '{"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 2}',
        '{"method": "DANCE", "id": 3}',
        '{"method": "SUBSCRIBE", "params": ["ethusdt@nonsense"], "id": 4}',
        '{"method": ',
    ]
    replies = await ask(certs, exchange, frames)
    expected = [(0, 1), (1, 2), (2, 3), (2, 4), (3, None)]
    assert [(r["code"], r.get("id")) for r in replies] == expected
    assert replies[0]["msg"] == "Unknown property"
    assert replies[1]["msg"] == "Invalid value type: expected Boolean"
    assert replies[2]["msg"] == (
        "Invalid request: unknown variant `DANCE`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`,"
        " `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY` at line 1 column 18"
    )
    assert replies[3]["msg"] == "Invalid request: invalid stream"
    assert replies[4]["msg"] == "Invalid JSON: EOF while parsing a value at line 1 column 11"


async def test_connection_attempts_per_window_then_429_then_418(certs: Certs) -> None:
    with Exchange(
        ssl_context=certs.server_context(),
        market=MARKET,
        max_attempts=3,
        attempt_window=60.0,
        ban_seconds=1.0,
    ) as exchange:
        statuses: list[int] = []
        retry_after: list[str | None] = []
        reasons: list[str] = []

        async def attempt(client: httpx.AsyncClient) -> None:
            try:
                async with aconnect_ws(exchange.url + "/ws/ethusdt@trade", client):
                    statuses.append(101)
            except WebSocketUpgradeError as exc:
                statuses.append(exc.response.status_code)
                retry_after.append(exc.response.headers.get("retry-after"))
                reasons.append(exc.response.reason_phrase)

        async with httpx.AsyncClient(verify=certs.client_context()) as client:
            for _ in range(5):
                await attempt(client)
            await anyio.sleep(1.1)  # the ban's Retry-After, waited out
            await attempt(client)
    # the 4th breaks the limit: 429 with the time until a slot frees; the 5th ignores it: 418;
    # once the ban is over the attempt is judged afresh: the window is still full, so 429
    # (not banned again for the 429 that led to the ban)
    assert statuses == [101, 101, 101, 429, 418, 429]
    assert retry_after[0] is not None and 55 <= int(retry_after[0]) <= 60
    assert retry_after[1] == "1"
    assert reasons[:2] == ["Too Many Requests", "I'm a Teapot"]


async def test_the_server_closes_tcp_after_the_close_handshake(
    certs: Certs, exchange: Exchange
) -> None:
    stream = await anyio.connect_tcp(
        "127.0.0.1",
        exchange.port,
        ssl_context=certs.client_context(),
        tls_standard_compatible=False,
    )
    ws = WSConnection(ConnectionType.CLIENT)
    events: list[Any] = []
    async with stream:
        await stream.send(ws.send(Request(host="127.0.0.1", target="/ws/ethusdt@trade")))
        with anyio.fail_after(5):
            while not any(isinstance(e, AcceptConnection) for e in events):
                ws.receive_data(await stream.receive())
                events += list(ws.events())
        await stream.send(ws.send(CloseConnection(code=1000)))
        closed = False
        with anyio.fail_after(5):  # we never close: only the server's TCP close ends this
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    closed = True
                    break
                ws.receive_data(data)
                events += list(ws.events())
    assert closed
    answers = [e for e in events if isinstance(e, CloseConnection)]
    assert answers and answers[0].code == 1000  # the close frame was answered first
    assert exchange.connections[0].close_reason == "client closed 1000"


async def test_every_documented_stream_type_through_the_real_client(
    certs: Certs, exchange: Exchange
) -> None:
    names = [
        "ethusdt@ticker",
        "ethusdt@miniTicker",
        "!miniTicker@arr",
        "ethusdt@bookTicker",
        "ethusdt@avgPrice",
        "ethusdt@depth5",
        "ethusdt@depth10@100ms",
        "ethusdt@depth20",
        "ethusdt@depth@100ms",
        "ethusdt@depth",
        "ethusdt@kline_1s",
        "ethusdt@kline_2h",
        "ethusdt@kline_1w",
        "ethusdt@kline_1M",
    ]
    config = ConnectionConfig(initial_delay=0.05, max_delay=0.3, ping_interval=5.0)
    events: dict[str, list[Any]] = {name: [] for name in names}
    async with BinanceStream(
        names,
        base_url=exchange.url,
        ssl_context=certs.client_context(),
        config=config,
        attempt_budget=AttemptBudget(300, 300.0),
    ) as stream:
        with anyio.move_on_after(10):
            async for event in stream:
                events[event["stream"]].append(event["data"])
                if all(len(v) >= 3 for v in events.values()):
                    break
        gaps = stream.gaps_detected
    assert {name: len(v) >= 3 for name, v in events.items()} == dict.fromkeys(names, True)
    assert gaps == 0  # diff depth continuous, every 1 s candle closed in order
    ticker = events["ethusdt@ticker"][-1]
    assert ticker["e"] == "24hrTicker" and set("pPwxcQbBaAohlvqOCFLn") <= set(ticker)
    assert events["ethusdt@miniTicker"][-1]["e"] == "24hrMiniTicker"
    arr = events["!miniTicker@arr"][-1]
    assert isinstance(arr, list) and {m["s"] for m in arr} == {"ETHUSDT", "BTCUSDT"}
    assert events["ethusdt@avgPrice"][-1]["i"] == "5m"
    for name, levels in (("ethusdt@depth5", 5), ("ethusdt@depth10@100ms", 10)):
        book = events[name][-1]
        assert set(book) == {"lastUpdateId", "bids", "asks"}
        assert len(book["bids"]) == len(book["asks"]) == levels
    for name in ("ethusdt@depth@100ms", "ethusdt@depth"):
        diffs = events[name]
        for prev, cur in itertools.pairwise(diffs):
            assert cur["U"] == prev["u"] + 1 and cur["U"] <= cur["u"]
    closed = [k["k"] for k in events["ethusdt@kline_1s"] if k["k"]["x"]]
    assert all(b["t"] - a["t"] == 1000 for a, b in itertools.pairwise(closed))
    month = events["ethusdt@kline_1M"][-1]["k"]
    assert (month["i"], month["t"], month["T"]) == ("1M", 1_767_225_600_000, 1_769_903_999_999)
    week = events["ethusdt@kline_1w"][-1]["k"]
    assert week["t"] == 1_767_571_200_000  # Monday 2026-01-05 00:00 UTC
    assert events["ethusdt@kline_2h"][-1]["k"]["i"] == "2h"


def test_binance_connector_parses_the_simulator(
    certs: Certs, exchange: Exchange, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The official (deprecated) binance-connector 3.13 streams from the simulator: its
    websocket-client connects over TLS, subscribes with its own ids, parses every event."""
    pytest.importorskip("binance.websocket.spot.websocket_stream")
    from binance.websocket.spot.websocket_stream import SpotWebsocketStreamClient

    ca = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(ca))
    monkeypatch.setenv("WEBSOCKET_CLIENT_CA_BUNDLE", str(ca))
    seen: dict[str, list[Any]] = {}
    errors: list[Any] = []
    done = threading.Event()
    wanted = {
        "ethusdt@kline_1m",
        "ethusdt@ticker",
        "ethusdt@miniTicker",
        "ethusdt@bookTicker",
        "ethusdt@depth5@1000ms",
        "ethusdt@depth@100ms",
        "ethusdt@aggTrade",
    }

    def on_message(_: Any, text: str) -> None:
        message = json.loads(text)
        if "stream" in message:
            seen.setdefault(message["stream"], []).append(message["data"])
        elif message.get("result", "") is not None:
            errors.append(message)  # a refused subscription
        if wanted <= set(seen):
            done.set()

    client = SpotWebsocketStreamClient(
        stream_url=exchange.url,
        on_message=on_message,
        on_error=lambda _, e: errors.append(e),
        is_combined=True,
    )
    subscriptions: list[Callable[[], object]] = [
        lambda: client.kline(symbol="ethusdt", interval="1m"),
        lambda: client.ticker(symbol="ethusdt"),
        lambda: client.mini_ticker(symbol="ethusdt"),
        lambda: client.book_ticker(symbol="ethusdt"),
        lambda: client.partial_book_depth(symbol="ethusdt", level=5, speed=1000),
        lambda: client.diff_book_depth(symbol="ethusdt", speed=100),
        lambda: client.agg_trade(symbol="ethusdt"),
    ]
    try:
        for subscribe in subscriptions:
            subscribe()
            time.sleep(0.35)  # the exchange allows 5 incoming messages a second
        assert done.wait(10), sorted(seen)
    finally:
        client.stop()
        client.socket_manager.ws.shutdown()  # stop() leaves websocket-client's socket open
    assert not errors
    assert seen["ethusdt@kline_1m"][-1]["k"]["i"] == "1m"
    assert exchange.connections[0].violations == 0


async def test_requests_without_id_too_many_params_and_bad_json_as_documented(
    certs: Certs, exchange: Exchange
) -> None:
    frames = [
        '{"method": "LIST_SUBSCRIPTIONS"}',
        '{"method": "LIST_SUBSCRIPTIONS", "params": ["x"], "id": 1}',
        '{"method": "GET_PROPERTY", "params": ["combined", true], "id": 2}',
        '{"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 3, "extra": 1}',
        '{"params": [], "id": 4}',
        "nonsense",
    ]
    replies = await ask(certs, exchange, frames)
    assert replies == [
        {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer", "id": None},
        {"code": 2, "msg": "Invalid request: too many parameters", "id": 1},
        {"code": 2, "msg": "Invalid request: too many parameters", "id": 2},
        {"code": 2, "msg": "Invalid request: too many parameters", "id": 3},
        {"code": 2, "msg": "Invalid request: missing field `method` at line 1 column 23", "id": 4},
        {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1", "id": None},
    ]


@pytest.mark.parametrize(
    "path", ["/ws/ETHUSDT@trade", "/ws/ethusdt@nonsense", "/stream?streams=ethusdt@trade/x@y"]
)
def test_invalid_or_upper_case_url_streams_are_refused(
    certs: Certs, exchange: Exchange, path: str
) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus) as caught:
        connect(exchange.url + path, ssl=certs.client_context(), open_timeout=5)
    response = caught.value.response
    assert (response.status_code, response.reason_phrase) == (400, "Bad Request")
    assert json.loads(response.body or b"") == {
        "code": 2, "msg": "Invalid request: invalid stream",
    }  # fmt: skip


async def test_the_first_ping_comes_one_interval_after_the_upgrade(certs: Certs) -> None:
    with Exchange(ssl_context=certs.server_context(), market=MARKET, ping_interval=1.5) as ex:
        async with (
            httpx.AsyncClient(verify=certs.client_context()) as client,
            # no stream: nothing but pings to read, which httpx-ws answers by itself
            aconnect_ws(ex.url + "/ws", client, keepalive_ping_interval_seconds=None),
        ):
            await anyio.sleep(3.7)  # pings due at 1.5 s and 3.0 s (the next at 4.5 s)
        record = ex.connections[0]
    assert len(record.pings) >= 2
    assert 1.4 <= record.pings[0] - record.opened <= 2.6  # not at once: one interval
    assert 1.4 <= record.pings[1] - record.pings[0] <= 2.6


def test_the_rolling_window_zone_reference_and_array_streams(certs: Certs) -> None:
    """The streams python-binance and the current docs name, in their documented shapes;
    ``timeUnit=MICROSECOND`` makes every time field microseconds; event times are the wall
    clock by default."""
    from websockets.sync.client import connect

    names = [
        "!miniTicker@arr@1000ms", "ethusdt@ticker_1h", "!ticker_4h@arr",
        "ethusdt@kline_1d@+08:00", "ethusdt@kline_1m@+08:00", "ethusdt@referencePrice",
        "ethusdt@trade",
    ]  # fmt: skip
    seen: dict[str, dict[str, list[Any]]] = {"ms": {}, "us": {}}
    market = attrs.evolve(MARKET, start_ms=None)  # market time: the wall clock
    with Exchange(ssl_context=certs.server_context(), market=market) as exchange:
        for unit, query in (("ms", ""), ("us", "&timeUnit=MICROSECOND")):
            url = f"{exchange.url}/stream?streams={'/'.join(names)}{query}"
            with connect(url, ssl=certs.client_context(), open_timeout=5) as ws:
                end = time.monotonic() + 3.5
                while time.monotonic() < end and len(seen[unit]) < len(names):
                    message = json.loads(ws.recv(timeout=5))
                    seen[unit].setdefault(message["stream"], []).append(message["data"])
    assert set(seen["ms"]) == set(names) == set(seen["us"])
    ms, us = seen["ms"], seen["us"]
    now_ms = time.time() * 1000
    assert abs(ms["ethusdt@trade"][0]["E"] - now_ms) < 5_000  # the wall clock
    assert abs(us["ethusdt@trade"][0]["T"] / 1000 - now_ms) < 5_000  # in microseconds
    assert {m["s"] for m in ms["!miniTicker@arr@1000ms"][0]} == {"ETHUSDT", "BTCUSDT"}
    hour = ms["ethusdt@ticker_1h"][0]
    assert hour["e"] == "1hTicker" and set("pPohlcwvqOCFLn") <= set(hour)
    assert hour["O"] % 60_000 == 0  # rolling windows open on a minute
    assert us["ethusdt@ticker_1h"][0]["O"] % 60_000_000 == 0
    assert [t["e"] for t in ms["!ticker_4h@arr"][0]] == ["4hTicker", "4hTicker"]
    day = ms["ethusdt@kline_1d@+08:00"][0]["k"]
    assert day["i"] == "1d" and day["t"] % 86_400_000 == 16 * 3_600_000  # 00:00 in UTC+8
    assert day["T"] - day["t"] == 86_400_000 - 1
    micro_day = us["ethusdt@kline_1d@+08:00"][0]["k"]
    assert micro_day["t"] == day["t"] * 1000 and micro_day["T"] == day["T"] * 1000 + 999
    assert ms["ethusdt@kline_1m@+08:00"][0]["k"]["t"] % 60_000 == 0
    ref = ms["ethusdt@referencePrice"][0]
    assert set(ref) == {"e", "s", "r", "t"} and ref["e"] == "referencePrice"
    assert float(ref["r"]) > 0


async def test_errors_are_wrapped_by_default_as_the_live_service_sends_them(
    certs: Certs,
) -> None:
    with Exchange(ssl_context=certs.server_context(), market=MARKET) as exchange:
        replies = await ask(certs, exchange, ['{"method": "SUBSCRIBE", "params": ["X"], "id": 7}'])
    assert replies == [{"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 7}]


async def test_a_request_past_64_kib_closes_the_connection_1009(
    certs: Certs, exchange: Exchange
) -> None:
    from httpx_ws import WebSocketDisconnect

    ws: AsyncWebSocketSession  # aconnect_ws is generic in its session_class
    async with (
        httpx.AsyncClient(verify=certs.client_context()) as client,
        aconnect_ws(exchange.url + "/ws", client, keepalive_ping_interval_seconds=None) as ws,
    ):
        await ws.send_text('{"method": "LIST_SUBSCRIPTIONS", "id": "' + "x" * 70_000 + '"}')
        with pytest.raises(WebSocketDisconnect) as caught, anyio.fail_after(5):
            await ws.receive_text()
    assert caught.value.code == 1009
    assert exchange.connections[0].close_reason == "request too big"


def test_block_trades_as_documented_in_the_url_by_subscribe_and_over_rest(
    certs: Certs,
) -> None:
    """``<symbol>@blockTrade``: the documented fields with their JSON types, ids +1 per symbol,
    ``T`` no later than ``E``; named in the URL or subscribed; ``/historicalBlockTrades``
    serves what the stream published; ``fromId`` is mandatory there."""
    from websockets.sync.client import connect

    documented = {"e": str, "E": int, "s": str, "t": int, "p": str, "q": str, "T": int, "m": bool}
    market = attrs.evolve(MARKET, block_trade_every=5)  # ~10 block trades/s at 50 trades/s
    seen: dict[str, list[dict[str, Any]]] = {}
    with Exchange(ssl_context=certs.server_context(), market=market) as exchange:
        url = f"{exchange.url}/stream?streams=ethusdt@blockTrade"
        with connect(url, ssl=certs.client_context(), open_timeout=5) as ws:
            ws.send('{"method": "SUBSCRIBE", "params": ["btcusdt@blockTrade"], "id": 1}')
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                message = json.loads(ws.recv(timeout=5))
                if "stream" in message:
                    seen.setdefault(message["stream"], []).append(message["data"])
                else:
                    assert message == {"result": None, "id": 1}
        with httpx.Client(base_url=exchange.rest_url, verify=certs.client_context()) as rest:
            first = seen["ethusdt@blockTrade"][0]["t"]
            served = rest.get(f"/api/v3/historicalBlockTrades?symbol=ETHUSDT&fromId={first}")
            missing = rest.get("/api/v3/historicalBlockTrades?symbol=ETHUSDT")
    assert set(seen) == {"ethusdt@blockTrade", "btcusdt@blockTrade"}
    for stream, symbol in (("ethusdt@blockTrade", "ETHUSDT"), ("btcusdt@blockTrade", "BTCUSDT")):
        blocks = seen[stream]
        assert len(blocks) >= 5
        for b in blocks:
            assert {k: type(v) for k, v in b.items()} == documented
            assert (b["e"], b["s"]) == ("blockTrade", symbol)
            assert b["T"] <= b["E"] and float(b["p"]) > 0 and float(b["q"]) > 0
        assert [b["t"] for b in blocks] == list(range(blocks[0]["t"], blocks[0]["t"] + len(blocks)))
    assert served.status_code == 200 and served.headers["x-mbx-used-weight-1m"] == "25"
    rows = {r["id"]: r for r in served.json()}
    for b in seen["ethusdt@blockTrade"]:
        assert rows[b["t"]] == {"id": b["t"], "price": b["p"], "qty": b["q"],
                                "quoteQty": rows[b["t"]]["quoteQty"], "time": b["T"],
                                "isBuyerMaker": b["m"]}  # fmt: skip
        assert abs(float(rows[b["t"]]["quoteQty"]) - float(b["p"]) * float(b["q"])) < 0.01
    assert missing.status_code == 400 and missing.json()["code"] == -1102


def test_server_shutdown_in_the_documented_raw_and_combined_shapes(certs: Certs) -> None:
    """A raw connection gets ``{"e": "serverShutdown", "E"}``; a combined one the same event
    wrapped under ``!serverShutdown`` (the shapes the streams documentation shows)."""
    from websockets.sync.client import connect

    got: dict[str, Any] = {}
    market = attrs.evolve(MARKET, start_ms=None)  # event times on the wall clock
    with Exchange(ssl_context=certs.server_context(), market=market) as exchange:
        raw_url = f"{exchange.url}/ws/ethusdt@trade"
        combined_url = f"{exchange.url}/stream?streams=ethusdt@trade"
        with (
            connect(raw_url, ssl=certs.client_context(), open_timeout=5) as raw,
            connect(combined_url, ssl=certs.client_context(), open_timeout=5) as combined,
        ):
            raw.recv(timeout=5)
            combined.recv(timeout=5)
            exchange.server_shutdown(grace=1.0)
            for name, ws in (("raw", raw), ("combined", combined)):
                while name not in got:
                    message = json.loads(ws.recv(timeout=5))
                    if "serverShutdown" in json.dumps(message):
                        got[name] = message
    raw_event = got["raw"]
    assert set(raw_event) == {"e", "E"} and raw_event["e"] == "serverShutdown"
    assert isinstance(raw_event["E"], int) and abs(raw_event["E"] - time.time() * 1000) < 5_000
    assert set(got["combined"]) == {"stream", "data"}
    assert got["combined"]["stream"] == "!serverShutdown"
    assert set(got["combined"]["data"]) == {"e", "E"}
