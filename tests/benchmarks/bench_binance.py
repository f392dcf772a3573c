"""Binance stream benchmarks: what the exchange layer adds per event, and how long a paced
resubscription of 1000 streams takes against the simulator."""

from __future__ import annotations

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


def per_event(n: int = 100_000, rounds: int = 3) -> dict[str, float]:
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
