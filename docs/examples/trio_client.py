"""A host app on trio: the same ResilientWebSocket, no asyncio in the client.

A small `websockets` server (asyncio) runs in a thread, as an exchange would run elsewhere;
the client is pure trio. Run: python docs/examples/trio_client.py
"""

import asyncio
import contextlib
import json
import threading

import trio
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from regulator.adapters.websocket import ResilientWebSocket
from regulator.fsm import ConnectionConfig


def start_server():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    loop.thread = thread  # type: ignore[attr-defined]

    async def feed(connection):
        with contextlib.suppress(ConnectionClosed):  # the client leaves when it has enough
            await stream(connection)

    async def stream(connection):
        for n in range(1, 1_000_000):
            await connection.send(json.dumps({"n": n}))
            await asyncio.sleep(0.005)
            if n == 30:  # a planned restart notice: close 1012
                await connection.close(1012, "service restart")
                return

    async def start():
        server = await serve(feed, "127.0.0.1", 0)
        return server

    server = asyncio.run_coroutine_threadsafe(start(), loop).result()
    return server, loop


def stop_server(server, loop) -> None:
    async def stop():
        server.close()
        await server.wait_closed()

    asyncio.run_coroutine_threadsafe(stop(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    loop.thread.join()
    loop.close()


async def main() -> None:
    server, loop = start_server()
    port = server.sockets[0].getsockname()[1]
    config = ConnectionConfig(initial_delay=0.1, ping_interval=1.0, pong_timeout=1.0)
    seen = []
    async with ResilientWebSocket(f"ws://127.0.0.1:{port}/", config=config) as ws:
        async for raw in ws:
            seen.append(json.loads(raw)["n"])
            if len(seen) == 50:
                break
        stats = ws.get_connection_stats()
    stop_server(server, loop)
    kinds = stats["reconnect_statistics"]["failures_by_kind"]
    print(f"trio: {len(seen)} messages, reconnects={stats['reconnect_statistics']['successes'] - 1}, {kinds}")
    assert kinds == {"server_closed": 1}  # reconnected at once, not counted as a failure


trio.run(main)
