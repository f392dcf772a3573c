"""A host app on trio: the same ResilientWebSocket, no asyncio in the client.

A small `websockets` server (asyncio) runs in a thread, as an exchange would run elsewhere;
the client is pure trio. Run: python docs/examples/trio_client.py
"""

import asyncio
import contextlib
import json
import threading

import trio
from regulator.adapters.websocket import ResilientWebSocket
from regulator.fsm import ConnectionConfig
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class ExchangeThread:
    """The "exchange": a `websockets` server on an asyncio loop of its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _start(self) -> Server:
        return await serve(self._feed, "127.0.0.1", 0)

    async def _feed(self, connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client leaves when it has enough
            for n in range(1, 1_000_000):
                await connection.send(json.dumps({"n": n}))
                await asyncio.sleep(0.005)
                if n == 30:  # a planned restart notice: close 1012
                    await connection.close(1012, "service restart")
                    return

    def stop(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


async def main() -> None:
    exchange = ExchangeThread()
    port = exchange.port
    config = ConnectionConfig(initial_delay=0.1, ping_interval=1.0, pong_timeout=1.0)
    seen: list[int] = []
    async with ResilientWebSocket(f"ws://127.0.0.1:{port}/", config=config) as ws:
        async for raw in ws:
            seen.append(json.loads(raw)["n"])
            if len(seen) == 50:
                break
        stats = ws.get_connection_stats()
    exchange.stop()
    counted = stats["reconnect_statistics"]
    kinds = counted["failures_by_kind"]
    print(f"trio: {len(seen)} messages, reconnects={counted['successes'] - 1}, {kinds}")
    assert kinds == {"server_closed": 1}  # reconnected at once, not counted as a failure


trio.run(main)
