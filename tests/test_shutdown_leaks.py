"""The simulator and the fault proxy close every socket they hold when they stop, however new
the connection: one still in its TLS handshake, or whose handler task had not yet run.

CI failed once on a test that had nothing to do with it: sockets a bed left open were reported
(``unclosed transport``, ``loop is closed``) when the garbage collector ran there. Here each
server stops while clients are still connecting, many times, and a collection right after
must report nothing.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from _faultbed import Certs, FaultBed
from regulator.specs._loops import shut_down
from regulator.specs.exchange import Exchange, FaultProxy, MarketConfig

ROUNDS = 12
CLIENTS = 6


@contextmanager
def reported() -> Iterator[list[Any]]:
    """What the collector reports as unraisable (a ResourceWarning from a ``__del__``)."""
    gc.collect()  # what earlier tests left is theirs, not ours
    seen: list[Any] = []
    before = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            yield seen
            gc.collect()
    finally:
        sys.unraisablehook = before


def connect_many(port: int, context: ssl.SSLContext | None, handshake: bool) -> list[Any]:
    """``CLIENTS`` connections, each left wherever it stands when the server stops."""
    held: list[Any] = []
    for _ in range(CLIENTS):
        raw = socket.create_connection(("127.0.0.1", port), timeout=2)
        if context is not None and handshake:
            with suppress(OSError):
                raw = context.wrap_socket(raw, server_hostname="localhost")
        held.append(raw)
    return held


def describe(seen: list[Any]) -> list[str]:
    return [f"{u.exc_value!r} in {u.object!r}" for u in seen]


@pytest.mark.parametrize("handshake", [False, True], ids=["connecting", "handshaken"])
def test_the_exchange_stops_with_no_socket_left_open(certs: Certs, handshake: bool) -> None:
    with reported() as seen:
        for _ in range(ROUNDS):
            exchange = Exchange(ssl_context=certs.server_context(), market=MarketConfig())
            exchange.start()
            clients = connect_many(exchange.port, certs.client_context(), handshake)
            exchange.stop()
            for client in clients:
                client.close()
            del exchange
    assert describe(seen) == []


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
    finally:
        writer.transport.abort()


def proxy_round(stall: bool) -> None:
    """A proxy in front of an echo server, on a loop thread; clients connect and send, and
    everything stops at once (``stall``: the proxy accepts and then says nothing)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)

    upstream = run(asyncio.start_server(echo, "127.0.0.1", 0))
    proxy = FaultProxy(upstream.sockets[0].getsockname()[1])
    run(proxy.start())
    proxy.stall_new = stall
    clients = connect_many(proxy.port, None, handshake=False)
    for client in clients:
        with suppress(OSError):
            client.sendall(b"ping")

    async def down() -> None:
        await proxy.aclose()
        await shut_down(upstream)

    run(down())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()
    for client in clients:
        client.close()


def test_the_fault_proxy_stops_with_no_socket_left_open() -> None:
    with reported() as seen:
        for i in range(ROUNDS):
            proxy_round(stall=i % 2 == 1)
    assert describe(seen) == []


def test_the_fault_bed_stops_with_no_socket_left_open(certs: Certs) -> None:
    with reported() as seen:
        for _ in range(ROUNDS // 2):
            with FaultBed(certs=certs) as bed:
                assert bed.proxy is not None
                clients = connect_many(bed.proxy.port, bed.certs.client_context(), True)
            for client in clients:
                client.close()
            del bed
    assert describe(seen) == []
