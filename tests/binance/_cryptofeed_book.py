"""cryptofeed's Binance L2 book against the simulator, in cryptofeed's own environment
(``.venv-cf``): an independent implementation of the exchange's order book procedure.

Usage: ``python _cryptofeed_book.py <rest_url> <stream_url>``; prints one JSON line: the
books its L2_BOOK callback gave, as ``[sequence_number, bids, asks]`` with prices and
quantities as strings (the last 20 callbacks). Only the base URLs and the CA trust (set by the
caller) differ from production use; no ``max_depth``: the whole book is kept.
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
from cryptofeed.defines import L2_BOOK
from cryptofeed.exchanges import Binance


def main(rest_url: str, stream_url: str) -> list[Any]:
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
    books: list[Any] = []

    async def book(b: Any, receipt: float) -> None:
        both = b.book.to_dict()
        books.append(
            [
                b.sequence_number,
                [[str(p), str(q)] for p, q in sorted(both["bid"].items(), reverse=True)],
                [[str(p), str(q)] for p, q in sorted(both["ask"].items())],
            ]
        )
        del books[:-20]

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = FeedHandler(config={"log": {"disabled": True}, "uvloop": False})
    handler.add_feed(Binance(symbols=["ETH-USDT"], channels=[L2_BOOK], callbacks={L2_BOOK: book}))
    handler.run(start_loop=False, install_signal_handlers=False)
    loop.call_later(4.0, loop.stop)
    loop.run_forever()
    return books


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
