"""``BinanceStream.order_book``: a local book kept from the simulator's diff depth stream and
REST snapshots, through the fault proxy, on asyncio and trio. After each fault (a corrupted
TLS record, a reset, a half-open link, serverShutdown, a rotation by age, a 429 on the
snapshot) once the book is synced again it equals the simulator's own book at its update id."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _exchangebed import FAST_RECONNECT, ExchangeBed
from _faultbed import Certs
from regulator.adapters.binance import AttemptBudget, BinanceStream, OrderBook, RestClient
from regulator.fsm import BinanceConfig
from regulator.specs.exchange import Exchange, MarketConfig

pytestmark = pytest.mark.anyio

FAST = FAST_RECONNECT
DEPTH = "ethusdt@depth@100ms"
#: REST weight per 2 s window: two snapshots of 100 levels (weight 5 each)
WEIGHT_LIMIT, WEIGHT_WINDOW = 10, 2.0


@pytest.fixture
def bed(certs: Certs) -> Iterator[ExchangeBed]:
    with ExchangeBed(certs, weight_limit=WEIGHT_LIMIT, weight_window=WEIGHT_WINDOW) as running:
        yield running


def make_stream(bed: ExchangeBed, streams: list[str], **kwargs: Any) -> BinanceStream:
    return BinanceStream(
        streams,
        base_url=bed.url,
        rest_url=bed.exchange.rest_url,
        ssl_context=bed.certs.client_context(),
        config=FAST,
        attempt_budget=AttemptBudget(300, 300.0),
        **kwargs,
    )


def levels(rows: list[list[str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in rows]


async def wait_for(check: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.01)


async def check_equal(bed: ExchangeBed, book: OrderBook) -> int:
    """Wait until the book is synced past the simulator's update id now; then it is the
    simulator's book at its own update id (read at once, before another event moves it)."""
    now = bed.exchange.call(lambda: bed.exchange.symbols["ethusdt"].update_id)
    await wait_for(lambda: book.synced and (book.last_update_id or 0) >= now)
    at, bids, asks = book.last_update_id, book.bids, book.asks
    assert at is not None
    exchange = bed.exchange.book_at("ethusdt", at)
    assert (bids, asks) == (levels(exchange["bids"]), levels(exchange["asks"])), at
    assert book.best_bid == bids[0] and book.best_ask == asks[0]
    assert bids[0][0] < asks[0][0] and len(bids) == len(asks) == 20
    return at


async def reconnected(s: BinanceStream, successes: int) -> None:
    await wait_for(lambda: s.counter_totals()["successes"] > successes and s.state == "live")


async def consume(stream: BinanceStream, into: list[dict[str, Any]]) -> None:
    async for event in stream:
        into.append(event["data"])


@pytest.mark.spec("R1.1")
@pytest.mark.spec("R1.4")
async def test_the_local_book_equals_the_exchanges_after_every_fault(
    bed: ExchangeBed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "regulator.binance")
    rules = BinanceConfig(rotation_age=2.5, rotation_overlap_timeout=5.0)
    s = make_stream(bed, [], binance=rules)
    book = s.order_book("ethusdt", limit=100)
    assert s.streams == [DEPTH] and s.order_book("ethusdt") is book
    events: list[dict[str, Any]] = []
    async with s, anyio.create_task_group() as tg:
        tg.start_soon(consume, s, events)
        seen = [await check_equal(bed, book)]

        # faults that cut the link: updates published meanwhile are lost, the next event's U
        # shows it and the book resyncs from a new snapshot (a cut shorter than one event's
        # 100 ms loses none: the ids prove the book whole, and it stays synced)
        for fault in ("flip", "reset", "half-open"):
            successes = s.counter_totals()["successes"]
            if fault == "flip":
                assert bed.proxy is not None
                bed.proxy.flip_next = True  # DECRYPTION_FAILED_OR_BAD_RECORD_MAC
            elif fault == "reset":
                bed.reset()
            else:
                bed.black_hole()
                await wait_for(lambda: s.state != "live", 5.0)
                bed.black_hole(False)
            await reconnected(s, successes)
            seen.append(await check_equal(bed, book))
        assert book.resyncs >= 1  # the half-open link lost a second of updates at least

        # make-before-break rotations: no update is lost, so the book stays synced
        resyncs = book.resyncs
        bed.exchange.server_shutdown(grace=2.0)
        await wait_for(lambda: s.rotations["server_shutdown"] == 1)
        seen.append(await check_equal(bed, book))
        aged = s.rotations["age"]
        await wait_for(lambda: s.rotations["age"] > aged and len(s._legs) == 1)
        seen.append(await check_equal(bed, book))
        assert book.resyncs == resyncs and book.synced

        # a 429 on the snapshot: another client of the address used the window's weight
        while time.time() % WEIGHT_WINDOW > 0.2:  # at the start of a weight window
            await anyio.sleep(0.01)
        with httpx.Client(verify=bed.certs.client_context()) as other:
            for _ in range(2):
                got = other.get(f"{bed.exchange.rest_url}/api/v3/depth?symbol=ETHUSDT&limit=100")
                assert got.status_code == 200
        successes = s.counter_totals()["successes"]
        bed.black_hole()  # 0.3 s of updates lost for sure, then the link cut
        await anyio.sleep(0.3)
        bed.black_hole(False)
        bed.reset()
        await reconnected(s, successes)
        seen.append(await check_equal(bed, book))
        assert book.resyncs == resyncs + 1
        tg.cancel_scope.cancel()
        stats = s.get_connection_stats()["binance"]

    assert seen == sorted(seen)
    statuses = [status for _, path, status, _ in bed.exchange.rest_requests if "depth" in path]
    assert 429 in statuses and 418 not in statuses
    assert s.rest is not None and s.rest.rate_limited >= 1
    books = stats["order_books"]
    assert books["resyncs"] == book.resyncs >= 2
    assert books["snapshots_fetched"] == statuses.count(200) - 2 >= book.resyncs + 1
    assert books["books"]["ethusdt"]["synced"] and books["events_rejected"] == 0
    # the depth events still reach the consumer, in order, whatever the book does
    assert len(events) > 50 and all(d["e"] == "depthUpdate" for d in events)
    assert [d["u"] for d in events] == sorted(d["u"] for d in events)
    synced_lines = [r.getMessage() for r in caplog.records if "event=book_synced" in r.getMessage()]
    assert len(synced_lines) == book.resyncs + 1 and "symbol=ethusdt" in synced_lines[0]


async def test_a_hostile_depth_event_is_counted_and_the_book_resyncs(bed: ExchangeBed) -> None:
    async with make_stream(bed, [DEPTH]) as s:
        book = s.order_book("ethusdt", limit=100)
        await check_equal(bed, book)
        last = book.last_update_id
        assert last is not None  # synced
        bad = (
            '{"stream":"ethusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"ETHUSDT",'
            f'"U":{last + 1},"u":{last + 1},'
            '"b":[["NaN","1"]],"a":[]}}'
        )
        bed.exchange.send_raw(bad)
        await wait_for(lambda: s._books.events_rejected == 1)
        await check_equal(bed, book)  # the next event's U showed the loss: resynced
        assert s.get_connection_stats()["binance"]["order_books"]["events_rejected"] == 1


async def test_failed_snapshots_are_retried_counted_and_never_end_the_stream(
    bed: ExchangeBed, caplog: pytest.LogCaptureFixture
) -> None:
    down = RestClient("https://127.0.0.1:9", ssl_context=bed.certs.client_context())
    events: list[dict[str, Any]] = []
    async with make_stream(bed, [DEPTH], rest_client=down) as s:
        book = s.order_book("ethusdt", limit=100)
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, s, events)
            await wait_for(lambda: s.book_stats()["snapshot_failures"] >= 3)
            tg.cancel_scope.cancel()
        assert not book.synced and book.wants_snapshot and len(events) > 3
    stats = s.book_stats()
    assert stats["snapshots_fetched"] == 0 and stats["books"]["ethusdt"]["buffered"] > 0
    failed = [
        r.getMessage() for r in caplog.records if "event=book_snapshot_failed" in r.getMessage()
    ]
    assert failed and "GET /api/v3/depth failed (no answer)" in failed[0]


async def test_order_book_names_are_checked_and_a_depth_stream_is_needed_once_started(
    bed: ExchangeBed,
) -> None:
    s = make_stream(bed, ["ethusdt@depth"])
    with pytest.raises(ValueError, match=r"lower-case.*did you mean 'ethusdt'"):
        s.order_book("ETHUSDT")
    with pytest.raises(ValueError, match="symbol must be"):
        s.order_book("eth/usdt")
    with pytest.raises(ValueError, match="limit: must be an integer from 1 to 5000"):
        s.order_book("ethusdt", limit=5001)
    book = s.order_book("ethusdt", limit=100)
    assert s.order_book("ethusdt") is book  # kept from ethusdt@depth
    assert s.streams == ["ethusdt@depth"]
    async with s:
        with pytest.raises(ValueError, match="no diff depth stream of 'btcusdt' is subscribed"):
            s.order_book("btcusdt")
        await check_equal(bed, book)
        await s.unsubscribe(["ethusdt@depth"])  # the book is no longer fed: it says so
        assert not book.synced and book.bids == []
        with pytest.raises(ValueError, match="no diff depth stream of 'ethusdt'"):
            s.order_book("ethusdt")
        await s.subscribe(["ethusdt@depth@100ms"])
        assert s.order_book("ethusdt") is book  # fed again, from the stream now subscribed
        await check_equal(bed, book)


CF_VENV = Path(__file__).resolve().parents[2] / ".venv-cf"


def test_cryptofeeds_book_equals_the_simulators_at_every_update_id(
    certs: Certs, ca_file: str
) -> None:
    """An independent implementation of the procedure (cryptofeed 2.4's Binance L2 book, in
    its own environment) keeps the simulator's book from the same snapshot and diffs: the
    book this module's test compares with is the one a peer gets."""
    if not (CF_VENV / ".installed").exists():
        pytest.skip("cryptofeed's environment was not built (`make cf-venv`; offline?)")
    market = MarketConfig(trades_per_second=100.0, speed=60.0)
    with Exchange(ssl_context=certs.server_context(), market=market) as exchange:
        done = subprocess.run(
            [str(CF_VENV / "bin" / "python"), str(Path(__file__).with_name("_cryptofeed_book.py")),
             exchange.rest_url, exchange.url],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": "", "SSL_CERT_FILE": ca_file,
                 "REQUESTS_CA_BUNDLE": ca_file},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        books = json.loads(done.stdout.strip().splitlines()[-1])
        assert len(books) == 20
        for update_id, bids, asks in books:
            theirs = exchange.book_at("ethusdt", update_id)
            assert (levels(bids), levels(asks)) == (
                levels(theirs["bids"]),
                levels(theirs["asks"]),
            ), update_id
    assert books[-1][0] > books[0][0]
