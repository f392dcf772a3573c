"""The exchange simulator as a load source: how many events it publishes per second on one
core (its loop thread's CPU time), with a reader in another process that discards bytes.

The market runs flat out (a trade per symbol on every loop turn); one connection takes the
per-trade streams (trade, aggTrade, bookTicker) of every symbol.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _faultbed import Certs
from regulator.specs.exchange import Exchange, MarketConfig

_READER = r"""
import socket, ssl, sys
host, port, path, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sock = socket.create_connection((host, port))
if ca:
    sock = ssl.create_default_context(cafile=ca).wrap_socket(sock, server_hostname=host)
sock.sendall(
    f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
)
while sock.recv(1 << 20):
    pass
"""


def publish_rate(seconds: float = 3.0, *, tls: bool = True, symbols: int = 10) -> dict[str, Any]:
    """Events published per second of the simulator's CPU time (one core), and per wall
    second, over ``seconds`` of a flat-out market."""
    certs = Certs()
    names = {f"sym{i}usdt": 100.0 + i for i in range(symbols)}
    market = MarketConfig(symbols=names, trades_per_second=1e6)
    streams = "/".join(f"{n}@{s}" for n in names for s in ("trade", "aggTrade", "bookTicker"))
    with (
        tempfile.TemporaryDirectory() as tmp,
        Exchange(ssl_context=certs.server_context() if tls else None, market=market) as ex,
    ):
        ca = ""
        if tls:
            ca = str(Path(tmp) / "ca.pem")
            certs.ca.cert_pem.write_to_path(ca)
        reader = subprocess.Popen(
            [sys.executable, "-c", _READER, ex.host, str(ex.port), f"/stream?streams={streams}", ca]
        )
        try:
            time.sleep(1.0)  # connected and flowing
            cpu0, events0, wall0 = (
                ex.call(time.thread_time),
                ex.events_published,
                time.perf_counter(),
            )
            time.sleep(seconds)
            cpu1, events1, wall1 = (
                ex.call(time.thread_time),
                ex.events_published,
                time.perf_counter(),
            )
        finally:
            reader.kill()
            reader.wait()
    events = events1 - events0
    return {
        "tls": tls,
        "events": events,
        "per_cpu_s": events / max(cpu1 - cpu0, 1e-9),
        "per_wall_s": events / (wall1 - wall0),
        "cpu_share": (cpu1 - cpu0) / (wall1 - wall0),
    }


if __name__ == "__main__":
    for tls in (False, True):
        r = publish_rate(tls=tls)
        print(
            f"tls={r['tls']}: {r['per_cpu_s']:,.0f} events per CPU second (one core),"
            f" {r['per_wall_s']:,.0f} per wall second, CPU share {r['cpu_share']:.2f}"
        )
