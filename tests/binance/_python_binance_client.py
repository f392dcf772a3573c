"""python-binance against the simulator, run in python-binance's own environment
(``.venv-pb``, ``make pb-venv``): it installs a top-level ``binance`` package, as
binance-connector does, so the two cannot share one.

Usage: ``python _python_binance_client.py <rest_url> <stream_url> <ca.pem>``; prints one JSON
line of what the client read. Only the base URLs and the CA trust differ from production use:
``AsyncClient.API_URL`` (set before ``create()``, which pings REST first), aiohttp's ``ssl``
through ``requests_params``, ``BinanceSocketManager.STREAM_URL`` and websockets' ``ssl``
through ``ws_kwargs``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException


async def first(socket: Any) -> Any:
    async with socket as s:
        return await asyncio.wait_for(s.recv(), 10)


async def main(rest_url: str, stream_url: str, ca: str) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=ca)
    AsyncClient.API_URL = rest_url + "/api"
    client = await AsyncClient.create(requests_params={"ssl": context})
    try:
        report: dict[str, Any] = {
            "ping": await client.ping(),
            "offset_ms": client.timestamp_offset,
        }
        info = await client.get_symbol_info("ETHUSDT")
        report["symbol"] = info["symbol"]
        await asyncio.sleep(2.5)  # some 1 s candles
        report["klines"] = len(await client.get_klines(symbol="ETHUSDT", interval="1s", limit=5))
        historical = await client.get_historical_klines("ETHUSDT", "1s", "1 minute ago UTC")
        report["historical_klines"] = len(historical)
        book = await client.get_order_book(symbol="ETHUSDT", limit=10)
        report["depth_levels"] = len(book["bids"])
        report["ticker_symbol"] = (await client.get_ticker(symbol="ETHUSDT"))["symbol"]
        await client.get_recent_trades(symbol="ETHUSDT", limit=5)
        await client.get_aggregate_trades(symbol="ETHUSDT", limit=5)
        await client.get_avg_price(symbol="ETHUSDT")
        await client.get_orderbook_tickers()
        await client.get_all_tickers()
        try:
            await client.get_order_book(symbol="NOPEUSDT")
        except BinanceAPIException as exc:
            report["error"] = [exc.code, exc.message]
        manager = BinanceSocketManager(client)
        manager.STREAM_URL = stream_url + "/"
        manager.ws_kwargs = {"ssl": context}
        report["sockets"] = {
            "trade": await first(manager.trade_socket("ETHUSDT")),
            "kline": await first(manager.kline_socket("ETHUSDT", interval="1m")),
            "depth": await first(manager.depth_socket("ETHUSDT", depth="5")),
            "miniticker": await first(manager.miniticker_socket()),
            "multiplex": await first(
                manager.multiplex_socket(["ethusdt@aggTrade", "btcusdt@bookTicker"])
            ),
        }
        return report
    finally:
        await client.close_connection()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:4]))))
