"""Backfill: what a fault lost comes back from the simulator's REST, in order, exactly once,
in the live events' shape, asyncio and trio (real TLS, the real fault proxy).

The "done when" of issue 29: through a corrupted TLS record, a reset, a half-open link, a
serverShutdown, rotations by age and a 429 on REST, every aggregate trade id and every closed
candle reaches the consumer once, in order, equal to what the exchange's REST history says.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from _exchangebed import ExchangeBed
from _faultbed import Certs
from regulator.adapters.binance import (
    AttemptBudget,
    BinanceStream,
    Gap,
)
from regulator.fsm import ConnectionConfig

pytestmark = pytest.mark.anyio

FAST = ConnectionConfig(
    initial_delay=0.05,
    max_delay=0.3,
    jitter=0.0,
    ping_interval=0.5,
    pong_timeout=0.5,
    handshake_timeout=2.0,
    alarm_failures=30,
    alarm_window=10.0,
)
AGG, KLINE, TRADE = "ethusdt@aggTrade", "ethusdt@kline_1m", "ethusdt@trade"


@pytest.fixture
def bed(certs: Certs) -> Iterator[ExchangeBed]:
    with ExchangeBed(certs, weight_limit=40, weight_window=2.0) as running:
        yield running


def stream(bed: ExchangeBed, names: list[str], **kwargs: Any) -> BinanceStream:
    kwargs.setdefault("config", FAST)
    kwargs.setdefault("attempt_budget", AttemptBudget(300, 300.0))
    kwargs.setdefault("backfill", True)
    kwargs.setdefault("rest_url", bed.exchange.rest_url)
    return BinanceStream(names, base_url=bed.url, ssl_context=bed.certs.client_context(), **kwargs)


async def wait_for(check: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


async def collect(s: BinanceStream, into: list[dict[str, Any]]) -> None:
    async for event in s:
        into.append(event)


def of(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["stream"] == name]


def rest_get(bed: ExchangeBed, path: str, **params: Any) -> Any:
    with httpx.Client(base_url=bed.exchange.rest_url, verify=bed.certs.client_context()) as c:
        response = c.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()


def check_agg_trades(bed: ExchangeBed, events: list[dict[str, Any]]) -> list[int]:
    """Every aggregate id once, in order, each equal to REST's; the ids."""
    data = [e["data"] for e in of(events, AGG)]
    ids = [d["a"] for d in data]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # no gap, no duplicate, in order
    served: dict[int, dict[str, Any]] = {}
    while len(served) < len(ids):
        start = ids[0] + len(served)
        page = rest_get(bed, "/api/v3/aggTrades", symbol="ETHUSDT", fromId=start, limit=1000)
        served.update({row["a"]: row for row in page if row["a"] <= ids[-1]})
    for d in data:
        row = served[d["a"]]
        assert (d["p"], d["q"], d["f"], d["l"], d["T"], d["m"]) == (
            row["p"], row["q"], row["f"], row["l"], row["T"], row["m"],
        )  # fmt: skip
    return ids


def check_closed_candles(bed: ExchangeBed, events: list[dict[str, Any]]) -> list[int]:
    """Every closed candle once, in order, each equal to REST's; their open times."""
    closed = [e["data"]["k"] for e in of(events, KLINE) if e["data"]["k"]["x"]]
    starts = [k["t"] for k in closed]
    assert starts == list(range(starts[0], starts[0] + 60_000 * len(starts), 60_000))
    rows = rest_get(
        bed, "/api/v3/klines", symbol="ETHUSDT", interval="1m", startTime=starts[0],
        endTime=starts[-1], limit=1000,
    )  # fmt: skip
    assert [r[0] for r in rows] == starts
    for k, r in zip(closed, rows, strict=True):
        assert [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"]] == r[:9]
    return starts


@pytest.mark.spec("R1.4")
async def test_a_reset_is_backfilled_in_order_exactly_once(bed: ExchangeBed) -> None:
    gaps: list[Gap] = []
    slow = ConnectionConfig(
        initial_delay=0.6, max_delay=0.6, jitter=0.0, ping_interval=5.0, handshake_timeout=2.0
    )
    async with stream(bed, [AGG, KLINE], config=slow, on_gap=gaps.append) as s:
        events: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, s, events)
            await wait_for(lambda: len(of(events, AGG)) > 20)
            bed.reset()
            await wait_for(lambda: s.get_connection_stats()["reconnect_statistics"]["failures"])
            await wait_for(lambda: sum(1 for e in events if e.get("backfill")) > 40)
            await anyio.sleep(1.2)  # a candle closes after the refill
            tg.cancel_scope.cancel()
        stats = s.get_connection_stats()["binance"]
    assert gaps == [] and stats["gaps_detected"] == 0
    ids = check_agg_trades(bed, events)
    starts = check_closed_candles(bed, events)
    assert len(ids) > 100 and len(starts) >= 2
    filled = [e for e in events if e.get("backfill")]
    assert set(filled[0]) == {"stream", "data", "backfill"}
    assert {e["stream"] for e in filled} <= {AGG, KLINE}
    backfill = stats["backfill"]
    assert backfill["backfilled"][AGG] >= 40  # 0.6 s at 100 trades/s
    assert backfill["events_backfilled"] == len(filled)
    assert backfill["holding"] == 0 and backfill["gaps"] == 0
    assert backfill["rest"]["requests"] >= 1 and backfill["rest"]["errors"] == 0
