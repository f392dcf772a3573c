"""cryptofeed's Binance feed against the simulator, run in cryptofeed's own environment
(``.venv-cf``, ``make cf-venv``: it pins its own aiohttp, websockets and uvloop).

Usage: ``python _cryptofeed_client.py <rest_url> <stream_url> <ca.pem>``; prints one JSON line
of what the feed delivered. Only the base URLs (the exchange class's endpoints, with
cryptofeed's own routes) and the CA trust (``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE``, set by
the caller, read by aiohttp, websockets and requests) differ from production use. The book
starts from the simulator's REST snapshot (``/api/v3/depth``), the symbols from its
``/api/v3/exchangeInfo``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from cryptofeed import FeedHandler
from cryptofeed.connection import (
    RestEndpoint,
    Routes,
    WebsocketEndpoint,
)
from cryptofeed.defines import CANDLES, L2_BOOK, TRADES
from cryptofeed.exchanges import Binance


def main(rest_url: str, stream_url: str) -> dict[str, Any]:
    Binance.websocket_endpoints = [WebsocketEndpoint(stream_url)]
    Binance.rest_endpoints = [
        RestEndpoint(
            rest_url,
            routes=Routes(
                "/api/v3/exchangeInfo",
                l2book="/api/v3/depth?symbol={}&limit={}",
                authentication="/api/v3/userDataStream",
            ),
        )
    ]
    seen: dict[str, Any] = {"trades": [], "books": [], "candles": []}

    async def trade(t: Any, receipt: float) -> None:
        seen["trades"].append([t.symbol, t.id, float(t.price)])

    async def book(b: Any, receipt: float) -> None:
        bids, asks = b.book.bids, b.book.asks
        seen["books"].append([b.symbol, len(bids), len(asks), float(bids.index(0)[0]),
                              float(asks.index(0)[0])])  # fmt: skip

    async def candle(c: Any, receipt: float) -> None:
        seen["candles"].append([c.symbol, c.interval, c.closed, float(c.close), c.trades])

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = FeedHandler(config={"log": {"disabled": True}, "uvloop": False})
    handler.add_feed(
        Binance(
            symbols=["ETH-USDT"],
            channels=[TRADES, L2_BOOK, CANDLES],
            candle_interval="1m",
            candle_closed_only=False,
            max_depth=10,
            callbacks={TRADES: trade, L2_BOOK: book, CANDLES: candle},
        )
    )
    handler.run(start_loop=False, install_signal_handlers=False)
    loop.call_later(6.0, loop.stop)
    loop.run_forever()
    return {
        "symbols": sorted(Binance.symbols()),
        "trades": len(seen["trades"]),
        "trade": seen["trades"][-1] if seen["trades"] else None,
        "books": len(seen["books"]),
        "book": seen["books"][-1] if seen["books"] else None,
        "candles": len(seen["candles"]),
        "candle": seen["candles"][-1] if seen["candles"] else None,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
