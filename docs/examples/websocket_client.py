"""A host app on asyncio: a resilient subscription that survives a server restart.

Starts a local WebSocket server (ws://, from the `websockets` package, dev extra) that streams
numbered messages and answers SUBSCRIBE, kills it once mid-stream, and shows the client
reconnect, resubscribe in `on_connect`, and carry on.
Run: python docs/examples/websocket_client.py   (for trio: anyio.run(main, backend="trio"))
"""

import asyncio
import json
import logging

import anyio
from regulator.adapters.websocket import LoggingNotifier, ResilientWebSocket
from regulator.fsm import ConnectionConfig
from websockets.asyncio.server import ServerConnection, serve

logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")


async def feed(connection: ServerConnection) -> None:  # the "exchange"
    async def stream() -> None:
        n = 0
        while True:
            n += 1
            await connection.send(json.dumps({"n": n}))
            await asyncio.sleep(0.01)

    task = asyncio.get_running_loop().create_task(stream())
    try:
        async for raw in connection:
            request = json.loads(raw)
            await connection.send(json.dumps({"result": None, "id": request["id"]}))
    finally:
        task.cancel()


async def resubscribe(ws: ResilientWebSocket) -> None:  # R1.4: after every (re)connect
    await ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": 1}))


async def main() -> None:
    server = await serve(feed, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = ConnectionConfig(initial_delay=0.1, max_delay=1.0, ping_interval=1.0, pong_timeout=1.0)
    seen = 0
    async with ResilientWebSocket(
        f"ws://127.0.0.1:{port}/stream",
        config=config,
        on_connect=resubscribe,
        notifiers=[LoggingNotifier()],
    ) as ws:
        async for _message in ws:
            seen += 1
            if seen == 20:  # the server goes away and comes back on the same port
                server.close()
                await server.wait_closed()
                server = await serve(feed, "127.0.0.1", port)
            if seen == 60:
                break
        stats = ws.get_connection_stats()
    server.close()
    await server.wait_closed()
    reconnects = stats["reconnect_statistics"]
    print(
        f"messages={stats['messages_received']} attempts={reconnects['total_attempts']}"
        f" failures={reconnects['failures_by_kind']} state={ws.state}"
    )
    assert reconnects["successes"] == 2


anyio.run(main)
