"""The fault bed: a real TLS WebSocket server and a fault-injecting TCP proxy on 127.0.0.1.

Both run on their own asyncio loop in a thread, so clients on asyncio or trio can use them.
The server streams numbered JSON messages (a global feed: ``{"seq": n}`` every ``interval``),
answers subscribe requests, and on command pings, sends stray pongs, closes with any code,
refuses upgrades with 429/418 + Retry-After, sends oversized messages, and restarts on the same
port. The proxy, between client and server, can flip a byte of the server-to-client TLS stream
(a genuine DECRYPTION_FAILED_OR_BAD_RECORD_MAC), reset connections, black-hole traffic both
ways (a half-open link), stall new handshakes, and refuse connections.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any, TypedDict

import trustme
from regulator.specs._loops import cancel_other_tasks, close_server
from regulator.specs.exchange import FaultProxy as Proxy
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


class ConnectionSettings(TypedDict, total=False):
    """Keyword arguments of ``ConnectionConfig`` (the fields the tests set), typed: the tests keep
    their fast settings in one of these and spread it, ``ConnectionConfig(**FAST)``."""

    max_retries: int | None
    initial_delay: float
    max_delay: float
    backoff_factor: float
    jitter: float
    ping_interval: float
    pong_timeout: float
    handshake_timeout: float
    alarm_failures: int
    alarm_window: float
    history_size: int
    stable_after: float
    pattern_min_hits: int
    buffer_bytes: int


class Certs:
    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


class FeedServer:
    """The TLS WebSocket server (websockets), streaming a global numbered feed."""

    def __init__(self, ssl_context: ssl.SSLContext | None, interval: float) -> None:
        self.ssl_context = ssl_context
        self.interval = interval
        self.port = 0
        self.server: Server | None = None
        self.connections: set[ServerConnection] = set()
        # one ordered queue per connection: a stuck client never stalls the feed for others
        self.queues: dict[ServerConnection, asyncio.Queue[str]] = {}
        self.seq = 0
        self.refusals: list[tuple[int, float | None, str | None]] = []
        self.subscriptions: list[list[str]] = []
        self.close_codes: list[int | None] = []
        self.paths: list[str] = []
        self.ping_every: float | None = None
        self._feed: asyncio.Task[None] | None = None

    async def start(self, port: int = 0) -> None:
        self.server = await serve(
            self._handler,
            "127.0.0.1",
            port,
            ssl=self.ssl_context,
            process_request=self._process_request,
            ping_interval=None,
            compression=None,
            max_size=None,
        )
        self.port = self.server.sockets[0].getsockname()[1] if port == 0 else port
        if self._feed is None:
            self._feed = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        if self.server is not None:
            await close_server(self.server)  # no accept in flight dropped (specs/_loops.py)
            self.server = None

    async def shutdown(self) -> None:
        await self.stop()
        if self._feed is not None:
            self._feed.cancel()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.paths.append(request.path)
        if self.refusals:
            status, retry_after, location = self.refusals.pop(0)
            headers = Headers()
            if retry_after is not None:
                headers["Retry-After"] = str(int(retry_after))
            if location is not None:
                headers["Location"] = location
            reason = (
                HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Teapot"
            )
            return Response(status, reason, headers, b"slow down\n")
        return None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.seq += 1
            message = json.dumps({"seq": self.seq})
            for queue in list(self.queues.values()):
                queue.put_nowait(message)

    async def _send_feed(self, connection: ServerConnection, queue: asyncio.Queue[str]) -> None:
        while True:
            await connection.send(await queue.get())

    async def _handler(self, connection: ServerConnection) -> None:
        self.connections.add(connection)
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.queues[connection] = queue
        sender = asyncio.get_running_loop().create_task(self._send_feed(connection, queue))
        pinger = None
        if self.ping_every is not None:
            pinger = asyncio.get_running_loop().create_task(self._ping(connection, self.ping_every))
        try:
            async for raw in connection:
                request = json.loads(raw)
                if request.get("method") == "SUBSCRIBE":
                    self.subscriptions.append(list(request.get("params", [])))
                    await connection.send(json.dumps({"result": None, "id": request.get("id")}))
        except Exception:
            pass
        finally:
            sender.cancel()
            self.queues.pop(connection, None)
            self.connections.discard(connection)
            self.close_codes.append(connection.close_code)
            if pinger is not None:
                pinger.cancel()

    async def _ping(self, connection: ServerConnection, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await connection.ping()


class FaultBed:
    """Server + proxy on a private loop thread; ``url`` goes through the proxy."""

    def __init__(
        self, *, tls: bool = True, interval: float = 0.005, certs: Certs | None = None
    ) -> None:
        self.certs = certs or Certs()
        self.tls = tls
        self.server = FeedServer(self.certs.server_context() if tls else None, interval)
        self.proxy: Proxy | None = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FaultBed:
        self.thread.start()
        self.run(self.server.start)
        self.proxy = Proxy(self.server.port)
        self.run(self.proxy.start)
        return self

    def __exit__(self, *exc: object) -> None:
        async def down() -> None:
            assert self.proxy is not None
            await self.proxy.aclose()
            await self.server.shutdown()
            # Everything the bed started ends here, not in a later test's garbage collection.
            await cancel_other_tasks()

        self.run(down)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()

    def run(self, fn: Callable[[], Coroutine[Any, Any, Any]] | Callable[[], Any]) -> Any:
        """Run ``fn`` (sync or async) on the bed's loop and return its result."""

        async def call() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)

    @property
    def url(self) -> str:
        assert self.proxy is not None
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://127.0.0.1:{self.proxy.port}/stream"

    @property
    def direct_url(self) -> str:
        scheme = "wss" if self.tls else "ws"
        return f"{scheme}://127.0.0.1:{self.server.port}/stream"

    # -- faults ------------------------------------------------------------------------
    def flip_byte(self) -> None:
        assert self.proxy is not None
        self.proxy.flip_next = True

    def reset(self) -> None:
        assert self.proxy is not None
        self.run(self.proxy.reset_all)

    def black_hole(self, on: bool = True) -> None:
        assert self.proxy is not None
        self.proxy.black_hole = on

    def stall_handshakes(self, on: bool = True) -> None:
        assert self.proxy is not None
        self.proxy.stall_new = on

    def refuse_connections(self) -> None:
        assert self.proxy is not None
        self.run(self.proxy.reset_all)
        self.run(self.proxy.stop_listening)

    def accept_connections(self) -> None:
        assert self.proxy is not None
        port = self.proxy.port
        self.run(lambda: self.proxy.start(port))

    def refuse_upgrades(
        self, status: int, retry_after: float | None, count: int = 1, location: str | None = None
    ) -> None:
        self.server.refusals.extend([(status, retry_after, location)] * count)

    # Commands that talk to clients are fire-and-forget: a test calls them from the client's
    # own event loop, which must keep running for the client to answer.
    def _spawn(self, fn: Callable[[ServerConnection], Coroutine[Any, Any, Any]]) -> None:
        def start() -> None:
            for connection in list(self.server.connections):
                self.loop.create_task(fn(connection))

        self.run(start)

    def close_all(self, code: int, reason: str = "") -> None:
        self._spawn(lambda connection: connection.close(code, reason))

    def send_all(self, data: str | bytes) -> None:
        self._spawn(lambda connection: connection.send(data))

    def stray_pong(self) -> None:
        self._spawn(lambda connection: connection.pong(b"nobody-asked"))

    def restart_server(self) -> None:
        port = self.server.port

        async def restart() -> None:
            await self.server.stop()
            await self.server.start(port)

        self.run(restart)
