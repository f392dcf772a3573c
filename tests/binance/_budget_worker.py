"""One process of a fleet that shares a budget (run by tests/binance/test_budget*.py).

python _budget_worker.py OUT hammer BUDGET_URL LIMIT WINDOW COUNT
    reserve COUNT slots; publish each slot's wall-clock time and the budget's stats.
python _budget_worker.py OUT stream BUDGET_URL LIMIT WINDOW SECONDS EXCHANGE_URL CAFILE
    run a BinanceStream for SECONDS against EXCHANGE_URL (which drops every connection, so
    it reconnects over and over); publish its attempts and the budget's stats.
python _budget_worker.py OUT hold LEDGER
    take the ledger's lock, say "held" on stdout, and sleep (until SIGKILLed).
"""

from __future__ import annotations

import fcntl
import logging
import os
import ssl
import sys
import time
from typing import Any

import anyio
from _spawn import publish
from regulator.adapters.binance import BinanceStream, budget_from_url
from regulator.fsm import ConnectionConfig

FAST = ConnectionConfig(
    initial_delay=0.05, max_delay=0.3, jitter=0.0, ping_interval=5.0, handshake_timeout=3.0
)
MARGIN = 0.5  # a slot's attempt reaches the exchange up to this much later (a loaded host)


def hammer(out: str, url: str, limit: int, window: float, count: int) -> None:
    budget = budget_from_url(url, limit, window, margin=0.0)
    # The store decides a slot at some instant inside the reserve() call; a slot read as
    # (clock before the call) + delay is early by up to that call's latency, which a loaded
    # host stretches: publish the latencies so the check can allow for them.
    slots: list[float] = []
    latencies: list[float] = []
    for _ in range(count):
        before = time.time()
        delay = budget.reserve()
        latencies.append(time.time() - before)
        slots.append(before + delay)
    publish(
        out,
        os.environ["WORKER_NAME"],
        {"slots": slots, "latencies": latencies, "stats": budget.stats()},
    )


async def stream(
    out: str, url: str, limit: int, window: float, seconds: float, exchange: str, cafile: str
) -> None:
    budget = budget_from_url(url, limit, window, margin=MARGIN)
    context = ssl.create_default_context(cafile=cafile)
    s = BinanceStream(
        ["ethusdt@trade"],
        base_url=exchange,
        ssl_context=context,
        config=FAST,
        attempt_budget=budget,
        name=os.environ["WORKER_NAME"],
    )
    async with s:
        await anyio.sleep(seconds)
        totals: dict[str, Any] = s.counter_totals()
        stats = s.get_connection_stats()["binance"]["attempt_budget"]
    publish(
        out,
        os.environ["WORKER_NAME"],
        {"attempts": totals["attempts"], "failures": totals["failures_by_kind"], "stats": stats},
    )


def hold(ledger: str) -> None:
    fd = os.open(ledger, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    # each forced drop logs a WARNING with its stack: the test judges what is published
    logging.getLogger("regulator").setLevel(logging.ERROR)
    out, mode, *args = sys.argv[1:]
    if mode == "hammer":
        hammer(out, args[0], int(args[1]), float(args[2]), int(args[3]))
    elif mode == "stream":
        anyio.run(
            stream, out, args[0], int(args[1]), float(args[2]), float(args[3]), args[4], args[5]
        )
    else:
        hold(args[0])
