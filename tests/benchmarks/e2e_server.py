"""The end-to-end bench's server, in its own process so that it is not measured: a raw asyncio TLS
server that plays the exchange's combined endpoint with a recorded feed, and the few REST routes
the peers read before they stream.

``python e2e_server.py FEED CERT_PEM KEY_PEM`` prints its port and serves until killed. FEED
holds one combined-form text message per line. A WebSocket upgrade on any path gets the feed's
messages of the streams it asked for, pre-framed, in large writes cut at frame boundaries: at
once when the URL names its streams (``?streams=``), else once the client's SUBSCRIBE requests
have been answered and none came for 1 s (binance-sdk-spot sends one every 0.5 s). Requests
are answered as the exchange answers them (``{"result": null, "id": ...}``;
LIST_SUBSCRIPTIONS lists what was subscribed), pings with pongs, a close with a close. REST:
``/api/v3/exchangeInfo`` (the feed's symbols), ``/api/v3/depth`` (a snapshot just before the
feed's first depth update), anything else ``{}``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from typing import Any

from _wsserve import accept_upgrade, client_frames, frame, serve_tls

CHUNK = 256 * 1024


class Feed:
    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f.read().splitlines() if line]
        self.frames: list[tuple[str, bytes]] = []
        self.symbols: list[str] = []
        self.first_depth: dict[str, int] = {}
        for line in lines:
            message = json.loads(line)
            data = message["data"]
            self.frames.append((message["stream"], frame(line.encode())))
            symbol = data.get("s")
            if isinstance(symbol, str) and symbol not in self.symbols:
                self.symbols.append(symbol)
            if data.get("e") == "depthUpdate" and symbol not in self.first_depth:
                self.first_depth[symbol] = data["U"]
        self._chunks: dict[frozenset[str], list[bytes]] = {}

    def chunks(self, streams: frozenset[str]) -> list[bytes]:
        """The frames of ``streams``, in feed order, joined into writes of about CHUNK bytes."""
        known = self._chunks.get(streams)
        if known is not None:
            return known
        chunks: list[bytes] = []
        current: list[bytes] = []
        size = 0
        for stream, f in self.frames:
            if stream not in streams:
                continue
            current.append(f)
            size += len(f)
            if size >= CHUNK:
                chunks.append(b"".join(current))
                current, size = [], 0
        if current:
            chunks.append(b"".join(current))
        self._chunks[streams] = chunks
        return chunks

    def rest(self, target: str) -> Any:
        path, _, query = target.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        if path.endswith("/exchangeInfo"):
            return {
                "timezone": "UTC",
                "serverTime": 1_700_000_000_000,
                "rateLimits": [],
                "exchangeFilters": [],
                "symbols": [_symbol_info(s) for s in self.symbols],
            }
        if path.endswith("/depth"):
            symbol = params.get("symbol", "")
            first = self.first_depth.get(symbol, 1)
            bids = [[f"{1000 - i}.00", "1.000"] for i in range(10)]
            asks = [[f"{1001 + i}.00", "1.000"] for i in range(10)]
            return {"lastUpdateId": first - 1, "bids": bids, "asks": asks}
        if path.endswith("/time"):
            return {"serverTime": 1_700_000_000_000}
        return {}


def _symbol_info(symbol: str) -> dict[str, Any]:
    base, quote = symbol[:-4], symbol[-4:]
    return {
        "symbol": symbol,
        "status": "TRADING",
        "baseAsset": base,
        "quoteAsset": quote,
        "baseAssetPrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "permissions": ["SPOT"],
        "permissionSets": [["SPOT"]],
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01",
                "maxPrice": "1000000.00",
                "tickSize": "0.01",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.0001",
                "maxQty": "9000.0",
                "stepSize": "0.0001",
            },
        ],
    }


async def websocket(
    feed: Feed, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    subscribed: list[str] = []
    changed = asyncio.Event()
    if "streams=" in path:
        subscribed.extend(path.split("streams=", 1)[1].split("&", 1)[0].split("/"))
        changed.set()

    async def answer() -> None:
        async for opcode, body in client_frames(reader):
            if opcode == 0x8:
                writer.write(frame(b"\x03\xe8", 0x8))
                return
            if opcode == 0x9:
                writer.write(frame(body, 0xA))
                continue
            if opcode != 0x1:
                continue
            try:
                request = json.loads(body)
            except ValueError:
                continue
            method = request.get("method")
            result: Any = None
            if method == "LIST_SUBSCRIPTIONS":
                result = list(subscribed)
            elif method == "SUBSCRIBE":
                subscribed.extend(request.get("params") or [])
                changed.set()
            writer.write(frame(json.dumps({"result": result, "id": request.get("id")}).encode()))

    answering = asyncio.ensure_future(answer())
    waiting = asyncio.ensure_future(changed.wait())
    await asyncio.wait([answering, waiting], return_when=asyncio.FIRST_COMPLETED)
    if changed.is_set():
        if "streams=" not in path:  # a client that subscribes stream by stream: all of them
            while changed.is_set():
                changed.clear()
                await asyncio.sleep(1.0)
        for chunk in feed.chunks(frozenset(subscribed)):  # frames whole: replies never tear
            writer.write(chunk)
            await writer.drain()
    waiting.cancel()
    await answering


async def handle(feed: Feed, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:  # HTTP/1.1 keep-alive for REST; an upgrade takes the connection over
            request = await reader.readuntil(b"\r\n\r\n")
            lines = request.decode("latin-1").split("\r\n")
            target = lines[0].split()[1]
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)
            }
            if headers.get("upgrade", "").lower() == "websocket":
                accept_upgrade(writer, headers["sec-websocket-key"])
                await websocket(feed, target, reader, writer)
                return
            body = json.dumps(feed.rest(target)).encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError, KeyError, IndexError):
        pass
    finally:
        writer.close()


async def main() -> None:
    feed = Feed(sys.argv[1])
    await serve_tls(lambda r, w: handle(feed, r, w), sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    asyncio.run(main())
