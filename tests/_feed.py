"""A recorded combined-stream feed from the exchange simulator's own publishers, without a server.

``record(streams, trades)`` steps the simulator's market (``Symbol``, ``Streams``) offline for
``trades`` trades per symbol, with the 100 ms and 1000 ms streams at their market-time pace, and
returns each event as the exchange's combined endpoint sends it (``{"stream":..,"data":..}``,
compact JSON), in publish order. The differential decoder test and the end-to-end bench use it.
"""

from __future__ import annotations

import json
import random
from typing import Any

from regulator.specs.exchange._market import MarketConfig, Symbol
from regulator.specs.exchange._streams import Streams

__all__ = ["EVERY_TYPE", "record"]

#: One stream of every type the simulator publishes, for ``ethusdt`` (the ``!`` arrays too).
EVERY_TYPE = (
    "ethusdt@trade",
    "ethusdt@aggTrade",
    "ethusdt@bookTicker",
    "ethusdt@blockTrade",
    "ethusdt@depth",
    "ethusdt@depth@100ms",
    "ethusdt@depth5",
    "ethusdt@depth10@100ms",
    "ethusdt@depth20",
    "ethusdt@ticker",
    "ethusdt@miniTicker",
    "ethusdt@ticker_1h",
    "ethusdt@ticker_4h",
    "ethusdt@ticker_1d",
    "ethusdt@avgPrice",
    "ethusdt@referencePrice",
    "ethusdt@kline_1s",
    "ethusdt@kline_1m",
    "ethusdt@kline_1h@+08:00",
    "ethusdt@kline_1d",
    "!miniTicker@arr",
    "!ticker_1h@arr",
)


def record(
    streams: tuple[str, ...] | list[str],
    trades: int,
    *,
    symbols: dict[str, float] | None = None,
    trades_per_second: float = 50.0,
    seed: int = 7,
) -> list[str]:
    """The combined-form texts of ``trades`` market steps (one trade per symbol each)."""
    market = MarketConfig(
        symbols=symbols or {"ethusdt": 3000.0},
        trades_per_second=trades_per_second,
        seed=seed,
        start_ms=1_700_000_000_000,
        block_trade_every=50,
    )
    rng = random.Random(seed)
    syms = {name: Symbol(name, price, market, rng) for name, price in market.symbols.items()}
    out: list[str] = []

    def publish(stream: str, payload: Any) -> None:
        data = json.dumps(payload, separators=(",", ":"))
        out.append(f'{{"stream":"{stream}","data":{data}}}')

    feed = Streams(syms, publish)
    wanted = set(streams)
    step_ms = 1000.0 / trades_per_second
    now = float(market.start_ms or 0)
    next_book = now + 100
    tick = 0
    for _ in range(trades):
        now += step_ms
        for sym in syms.values():
            feed.trade(sym, int(now), wanted)
        while now >= next_book:
            tick += 1
            feed.books(int(next_book), wanted, 100)
            if tick % 10 == 0:
                feed.books(int(next_book), wanted, 1000)
                feed.every_second(int(next_book), wanted)
            next_book += 100
    return out


#: texts a decoder may take unlike json (big ints, NaN, surrogates, deep nesting, odd
#: whitespace): the decoders' differential tests put them among a feed
HOSTILE = [
    '{"stream":"ethusdt@trade","data":{"e":"trade","t":123456789012345678901234567890}}',
    '{"stream":"ethusdt@trade","data":{"e":"trade","t":1,"p":NaN,"q":Infinity}}',
    '{"stream":"ethusdt@trade","data":{"e":"trade","t":-Infinity}}',
    '{"stream":"ethusdt@trade","data":{"e":"trade","s":"\\ud800"}}',
    '{"stream":"ethusdt@trade","data":{"e":"trade","t":1e400}}',
    '{"stream":"ethusdt@trade","data":{"e":"trade","t":-0.0,"T":-0}}',
    '{"a":1,"a":2}',
    "[" * 5000 + "]" * 5000,
    "[" * 1000 + "]" * 1000,  # within orjson's nesting limit, past Python's recursion limit
    "[" * 400 + "]" * 400,  # json decodes it; a recursive check of the value would not
    '{"stream":' * 3000,
    "\ufeff{}",
    "{} x",
    "",
    " \t\n\r1 ",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    '"\\u0000\x7f"',
    '"\x01"',
    "1.0000000000000000000000001",
    "2.2250738585072011e-308",
]
