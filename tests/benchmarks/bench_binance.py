"""Binance stream benchmarks: what the exchange layer adds per event, and how long a paced
resubscription of 1000 streams takes against the simulator."""

from __future__ import annotations

import gc
import json
import statistics
import time
from typing import Any

import anyio
from _exchangebed import ExchangeBed
from _faultbed import Certs
from regulator.adapters.binance import AttemptBudget, BinanceStream
from regulator.adapters.binance._leg import Leg
from regulator.fsm import BinanceConfig, ConnectionConfig


def per_event(n: int = 100_000, rounds: int = 3) -> dict[str, Any]:
    """Microseconds per combined trade event through parse, identity, de-dup, gap check and
    the consumer buffer, beside json.loads alone (the part no client can skip)."""
    msgs = [
        json.dumps(
            {
                "stream": "ethusdt@trade",
                "data": {
                    "e": "trade",
                    "E": 1,
                    "s": "ETHUSDT",
                    "t": i,
                    "p": "3000.12",
                    "q": "0.0100",
                    "T": 1,
                    "m": True,
                    "M": True,
                },
            },
            separators=(",", ":"),
        )
        for i in range(n)
    ]

    async def through() -> float:
        stream = BinanceStream(["ethusdt@trade"], buffer_size=n + 1)
        leg = Leg(ws=None, pacer=None)  # type: ignore[arg-type]
        stream._primary = leg
        start = time.perf_counter()
        for m in msgs:
            await stream._on_raw(leg, m)
        return (time.perf_counter() - start) / n * 1e6

    stream_us, parse_us = [], []
    for _ in range(rounds):
        stream_us.append(anyio.run(through))
        start = time.perf_counter()
        for m in msgs:
            json.loads(m)
        parse_us.append((time.perf_counter() - start) / n * 1e6)
    from regulator.adapters.binance._decode import DECODER

    return {
        "stream_us": statistics.median(stream_us),
        "json_us": statistics.median(parse_us),
        "decoder": DECODER,
    }


def resubscription(batch: int) -> dict[str, Any]:
    """1000 streams: seconds to verified after the start and after a reset; requests; the most
    frames the exchange saw in one second."""
    certs = Certs()
    config = ConnectionConfig(initial_delay=0.05, max_delay=0.3, jitter=0.0, ping_interval=1.0)

    async def run(bed: ExchangeBed) -> tuple[float, float]:
        names = [f"sym{i}usdt@trade" for i in range(999)] + ["ethusdt@trade"]
        async with BinanceStream(
            names,
            base_url=bed.url,
            ssl_context=certs.client_context(),
            config=config,
            binance=BinanceConfig(streams_per_request=batch),
            attempt_budget=AttemptBudget(300, 300.0),
        ) as s:
            start = time.monotonic()
            while not s.get_connection_stats()["binance"]["verified"]:
                await anyio.sleep(0.01)
            first = time.monotonic() - start
            bed.reset()
            start = time.monotonic()
            while (
                s.get_connection_stats()["reconnect_statistics"]["successes"] < 2
                or not s.get_connection_stats()["binance"]["verified"]
            ):
                await anyio.sleep(0.01)
            return first, time.monotonic() - start

    with ExchangeBed(certs) as bed:
        first, again = anyio.run(run, bed)
        records = bed.exchange.connections
    return {
        "batch": batch,
        "requests": len(records[0].requests),
        "first_s": first,
        "after_reset_s": again,
        "max_per_s": max(r.max_incoming_per_second() for r in records),
        "violations": sum(r.violations for r in records),
    }


def _agg_messages(n: int) -> list[str]:
    def event(i: int) -> dict[str, Any]:
        data = {"e": "aggTrade", "E": 1, "s": "ETHUSDT", "a": i, "p": "3000.12", "q": "0.0100"}
        data.update({"f": i, "l": i, "T": 1, "m": True, "M": True})
        return {"stream": "ethusdt@aggTrade", "data": data}

    return [json.dumps(event(i), separators=(",", ":")) for i in range(n)]


def backfill_cost(n: int = 100_000, rounds: int = 5) -> dict[str, float]:
    """Microseconds per live aggTrade event through the stream with backfill on and off
    (no gap: the steady state), interleaved rounds; the ratio of medians."""
    msgs = _agg_messages(n)

    async def through(backfill: bool) -> float:
        stream = BinanceStream(
            ["ethusdt@aggTrade"], buffer_size=n + 1, backfill=backfill,
            rest_url="https://127.0.0.1:9",
        )  # fmt: skip
        leg = Leg(ws=None, pacer=None)  # type: ignore[arg-type]
        stream._primary = leg
        start = time.perf_counter()
        for m in msgs:
            await stream._on_raw(leg, m)
        assert stream.events_delivered == n
        return (time.perf_counter() - start) / n * 1e6

    on: list[float] = []
    off: list[float] = []
    for i in range(rounds):
        for backfill in (True, False) if i % 2 == 0 else (False, True):
            gc.collect()  # neither run pays for the other's garbage
            (on if backfill else off).append(anyio.run(through, backfill))
    return {
        "on_us": statistics.median(on),
        "off_us": statistics.median(off),
        "ratio": statistics.median(on) / statistics.median(off),
    }


def backfill_after_outage(outage: float = 10.0) -> dict[str, Any]:
    """The simulator down for ``outage`` seconds (every connection dropped, nothing
    listening), then back: seconds from the reconnect (the leg live again) until the last
    backfilled event reached the consumer; events backfilled; REST requests and the
    exchange's used weight against its limit; whether every aggregate id and closed candle
    arrived once, in order."""
    from regulator.fsm import StateChanged

    certs = Certs()
    config = ConnectionConfig(
        initial_delay=0.05, max_delay=0.3, jitter=0.0, ping_interval=1.0, pong_timeout=1.0
    )
    live_at: list[float] = []

    def on_action(leg: str, action: Any) -> None:
        if isinstance(action, StateChanged) and action.target == "live":
            live_at.append(time.monotonic())

    async def run(bed: ExchangeBed) -> dict[str, Any]:
        received: list[tuple[float, dict[str, Any]]] = []
        async with BinanceStream(
            ["ethusdt@aggTrade", "ethusdt@kline_1m"],
            base_url=bed.url,
            ssl_context=certs.client_context(),
            config=config,
            attempt_budget=AttemptBudget(300, 300.0),
            backfill=True,
            rest_url=bed.exchange.rest_url,
            on_action=on_action,
        ) as s:

            async def consume() -> None:
                async for event in s:
                    received.append((time.monotonic(), event))

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                while len(received) < 200:
                    await anyio.sleep(0.01)
                down = len(live_at)
                bed.exchange.restart(down=outage)
                while len(live_at) <= down:
                    await anyio.sleep(0.01)
                reconnected = live_at[down]
                stats = s.backfill_stats()
                assert stats is not None
                while not (stats["events_backfilled"] and not stats["holding"]):
                    await anyio.sleep(0.005)
                    stats = s.backfill_stats()
                    assert stats is not None
                await anyio.sleep(1.5)  # a candle after the refill
                tg.cancel_scope.cancel()
            gaps = s.gaps_detected
        filled = [t for t, e in received if e.get("backfill")]
        aggs = [e["data"]["a"] for _, e in received if e["stream"] == "ethusdt@aggTrade"]
        closed = [
            e["data"]["k"]["t"] for _, e in received
            if e["stream"] == "ethusdt@kline_1m" and e["data"]["k"]["x"]
        ]  # fmt: skip
        assert stats is not None
        rest = stats["rest"]
        return {
            "outage_s": outage,
            "to_consumer_s": max(filled) - reconnected,
            "backfilled": stats["backfilled"],
            "rest_requests": rest["requests"],
            "rest_weight": rest["weight_reserved"],
            "used_weight": max(w for _, _, _, w in bed.exchange.rest_requests),
            "weight_limit": bed.exchange.weight.limit,
            "gaps": gaps,
            "exactly_once": aggs == list(range(aggs[0], aggs[0] + len(aggs)))
            and closed == list(range(closed[0], closed[0] + 60_000 * len(closed), 60_000)),
        }

    with ExchangeBed(certs) as bed:
        return anyio.run(run, bed)
