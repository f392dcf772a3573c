"""BinanceStream against the exchange simulator (real TLS, real fault proxy), asyncio and trio.

The simulator enforces the exchange's rules itself (5 incoming frames/s or the connection is
closed, replies by id, 1024 streams), so these tests fail when the client breaks one.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from _exchangebed import ExchangeBed
from _faultbed import Certs
from regulator.adapters.binance import (
    AttemptBudget,
    BinanceRequestError,
    BinanceStream,
    Gap,
    RequestTimeout,
)
from regulator.adapters.websocket import CallbackNotifier
from regulator.fsm import (
    Alarm,
    AlarmResolved,
    BinanceConfig,
    ConnectionConfig,
    parse_kv,
)

pytestmark = pytest.mark.anyio

FAST = ConnectionConfig(
    initial_delay=0.05,
    max_delay=0.3,
    jitter=0.0,
    ping_interval=1.0,
    pong_timeout=0.5,
    handshake_timeout=2.0,
    alarm_failures=3,
    alarm_window=10.0,
)


@pytest.fixture
def bed(certs: Certs) -> Iterator[ExchangeBed]:
    with ExchangeBed(certs) as running:
        yield running


def stream(bed: ExchangeBed, streams: list[str], **kwargs: Any) -> BinanceStream:
    kwargs.setdefault("config", FAST)
    kwargs.setdefault("attempt_budget", AttemptBudget(300, 300.0))
    return BinanceStream(
        streams, base_url=bed.url, ssl_context=bed.certs.client_context(), **kwargs
    )


async def wait_for(check: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


async def collect(s: BinanceStream, seconds: float, into: list[dict[str, Any]]) -> None:
    with anyio.move_on_after(seconds):
        async for event in s:
            into.append(event)


def trade_ids(events: list[dict[str, Any]]) -> list[int]:
    return [e["data"]["t"] for e in events if e["stream"].endswith("@trade")]


async def test_combined_events_subscriptions_and_errors(bed: ExchangeBed) -> None:
    async with stream(bed, ["ethusdt@trade"]) as s:
        events: list[dict[str, Any]] = []
        await collect(s, 0.5, events)
        assert events and all(set(e) == {"stream", "data"} for e in events)
        await s.subscribe(["ethusdt@aggTrade", "ethusdt@kline_1m"])
        assert sorted(await s.list_subscriptions()) == sorted(s.streams)
        assert s.get_connection_stats()["binance"]["confirmed"] == 3
        with pytest.raises(BinanceRequestError, match=r"code 2.*invalid stream"):
            await s.subscribe(["ethusdt@nonsense"])
        assert "ethusdt@nonsense" not in s.streams  # refused: not kept, nothing else lost
        await s.unsubscribe(["ethusdt@trade"])
        assert sorted(await s.list_subscriptions()) == ["ethusdt@aggTrade", "ethusdt@kline_1m"]


def test_stream_names_are_checked_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"streams\[1\]: the symbol must be lower case.*'ethusdt@"):
        BinanceStream(["btcusdt@trade", "ETHUSDT@trade"])
    with pytest.raises(ValueError, match=r"at most 1024 per connection.*got 1025"):
        BinanceStream([f"s{i}usdt@trade" for i in range(1025)])
    # camel-case stream types and all-market streams are valid names
    BinanceStream(["ethusdt@aggTrade", "ethusdt@bookTicker", "!miniTicker@arr"])


@pytest.mark.spec("R1.4")
async def test_a_thousand_streams_resubscribe_paced_after_a_reconnect(bed: ExchangeBed) -> None:
    names = [f"sym{i}usdt@trade" for i in range(999)] + ["ethusdt@trade"]
    rules = BinanceConfig(streams_per_request=50)  # 20 requests + a LIST per connection
    async with stream(bed, names, binance=rules) as s:
        await wait_for(lambda: s.get_connection_stats()["binance"]["verified"], timeout=20)
        bed.reset()  # the link drops; everything must come back
        await wait_for(lambda: s.get_connection_stats()["reconnect_statistics"]["successes"] >= 2)
        await wait_for(lambda: s.get_connection_stats()["binance"]["verified"], timeout=20)
        stats = s.get_connection_stats()
        events: list[dict[str, Any]] = []
        await collect(s, 0.3, events)
    assert stats["binance"]["confirmed"] == 1000
    assert set(stats["binance"]["streams"].values()) == {"confirmed"}
    assert events  # data flows again
    records = bed.exchange.connections
    assert len(records) == 2
    for record in records:
        assert record.violations == 0
        assert record.max_incoming_per_second() <= 5
        assert len(record.requests) >= 21
    assert len(records[-1].streams) == 1000


async def test_the_exchange_enforces_the_message_rate(bed: ExchangeBed) -> None:
    """Control: paced at 10/s instead of 3/s, the same resubscription gets dropped."""
    names = [f"sym{i}usdt@trade" for i in range(400)]
    reckless = BinanceConfig(messages_per_second=12, control_reserve=2, streams_per_request=20)
    async with stream(bed, names, binance=reckless) as s:
        await wait_for(lambda: any(r.violations for r in bed.exchange.connections))
        assert s is not None
    assert bed.exchange.connections[0].close_reason == "too many incoming messages"


async def test_rotation_under_traffic_loses_and_duplicates_nothing(bed: ExchangeBed) -> None:
    rules = BinanceConfig(rotation_age=1.0, rotation_overlap_timeout=5.0)
    async with stream(bed, ["ethusdt@trade", "ethusdt@aggTrade"], binance=rules) as s:
        events: list[dict[str, Any]] = []
        await collect(s, 4.0, events)
        stats = s.get_connection_stats()
    after = s.get_connection_stats()  # after the context: totals neither lost nor doubled
    assert (
        after["reconnect_statistics"]["total_attempts"]
        == (stats["reconnect_statistics"]["total_attempts"])
    )
    assert after["messages_received"] >= stats["messages_received"]
    assert after["messages_received"] <= stats["messages_received"] * 1.5
    ids = trade_ids(events)
    assert len(ids) > 200
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # no gap, no duplicate, in order
    aggs = [e["data"]["a"] for e in events if e["stream"].endswith("@aggTrade")]
    assert aggs == list(range(aggs[0], aggs[0] + len(aggs)))
    binance = stats["binance"]
    assert binance["rotations"]["age"] >= 2
    assert binance["duplicates_dropped"] > 0  # the overlap was real and de-duplicated
    assert binance["gaps_detected"] == 0
    assert stats["reconnect_statistics"]["failures"] == 0  # planned, not failures
    assert len(bed.exchange.connections) >= 3
    assert all(r.close_reason in ("client closed 1000", "") for r in bed.exchange.connections)


async def test_server_shutdown_rotates_make_before_break(bed: ExchangeBed) -> None:
    async with stream(bed, ["ethusdt@trade"]) as s:
        events: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, s, 3.0, events)
            await wait_for(lambda: len(events) > 20)
            bed.exchange.server_shutdown(grace=1.5)
        stats = s.get_connection_stats()
    ids = trade_ids(events)
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert stats["binance"]["rotations"]["server_shutdown"] == 1
    assert stats["binance"]["server_shutdowns"] == 1
    assert stats["reconnect_statistics"]["failures"] == 0
    first = bed.exchange.connections[0]
    assert first.close_reason == "client closed 1000"  # closed by us before the server did


async def test_a_gap_across_a_reconnect_is_reported_exactly(bed: ExchangeBed) -> None:
    gaps: list[Gap] = []
    slow = ConnectionConfig(
        initial_delay=0.4, max_delay=0.4, jitter=0.0, ping_interval=5.0, handshake_timeout=2.0
    )
    async with stream(bed, ["ethusdt@trade"], config=slow, on_gap=gaps.append) as s:
        events: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, s, 2.5, events)
            await wait_for(lambda: len(events) > 20)
            bed.reset()
        stats = s.get_connection_stats()
    ids = trade_ids(events)
    assert stats["reconnect_statistics"]["failures"] == 1
    assert len(gaps) == 1 and stats["binance"]["gaps_detected"] == 1
    gap = gaps[0]
    before = max(i for i in ids if i < gap.first)
    after = min(i for i in ids if i > gap.last)
    assert (gap.stream, gap.field) == ("ethusdt@trade", "t")
    assert (gap.first, gap.last) == (before + 1, after - 1)
    assert gap.count == after - before - 1 >= 10  # 0.4 s at 100 trades/s
    assert not set(range(gap.first, gap.last + 1)) & set(ids)
    assert stats["binance"]["recent_gaps"][0]["first"] == gap.first


async def test_reconnects_of_many_streams_stay_within_the_attempt_budget(
    bed: ExchangeBed,
) -> None:
    slots: list[float] = []  # the budget's own decisions, exactly

    class Recorded(AttemptBudget):
        def reserve(self, cost: int = 1) -> float:
            delay = super().reserve(cost)
            slots.append(time.monotonic() + delay)
            return delay

    budget = Recorded(4, 1.0, margin=0.05)
    planned = ConnectionConfig(initial_delay=0.05, max_delay=0.1, jitter=0.0, ping_interval=5.0)
    clients = [
        stream(bed, ["ethusdt@trade"], config=planned, attempt_budget=budget) for _ in range(4)
    ]
    async with (
        clients[0] as a,
        clients[1] as b,
        clients[2] as c,
        clients[3] as d,
    ):
        group = (a, b, c, d)

        def all_live(connections: int) -> bool:
            return all(
                x.state == "live"
                and x.get_connection_stats()["reconnect_statistics"]["successes"] == connections
                for x in group
            )

        for done in range(1, 4):
            await wait_for(lambda: all_live(done), timeout=15)  # noqa: B023
            bed.exchange.close_all(1012, "service restart")  # everyone reconnects at once
        await wait_for(lambda: all_live(4), timeout=15)
    assert len(slots) == 16
    slots.sort()
    for i in range(len(slots) - 4):  # at most 4 attempts in any window of 1 s (+ the margin)
        assert slots[i + 4] - slots[i] >= 1.05 - 1e-3
    # the server saw all 16, spread over at least 3 windows (minus TCP + TLS jitter)
    times = sorted(t for t, _, status in bed.exchange.attempts if status == 101)
    assert len(times) == 16
    assert times[-1] - times[0] > 3.0 - 0.3
    assert budget.waits >= 12


@pytest.mark.spec("R1.1")
@pytest.mark.spec("R1.3")
async def test_429_then_418_are_honoured_recorded_and_418_alarmed(
    bed: ExchangeBed, caplog: pytest.LogCaptureFixture
) -> None:
    notices: list[Any] = []

    async def notice(n: Any) -> None:
        notices.append(n)

    budget = AttemptBudget(300, 300.0)
    bed.exchange.refuse_upgrades(429, retry_after=1)
    bed.exchange.refuse_upgrades(418, retry_after=2)
    with caplog.at_level(logging.WARNING, logger="regulator.binance"):
        async with stream(
            bed, ["ethusdt@trade"], attempt_budget=budget, notifiers=[CallbackNotifier(notice)]
        ) as s:
            await wait_for(lambda: s.state == "live", timeout=10)
            await wait_for(lambda: len(notices) == 2)
            stats = s.get_connection_stats()
    limits = stats["binance"]["rate_limits"]
    assert [(r["kind"], r["retry_after"]) for r in limits] == [
        ("rate_limited", 1.0),
        ("banned", 2.0),
    ]
    assert [r["delay"] for r in limits] == [1.0, 2.0]
    times = [t for t, _, _ in bed.exchange.attempts]
    statuses = [status for _, _, status in bed.exchange.attempts]
    assert statuses == [429, 418, 101]
    assert times[1] - times[0] >= 1.0 and times[2] - times[1] >= 2.0
    assert isinstance(notices[0], Alarm) and notices[0].last_kind == "banned"
    assert isinstance(notices[1], AlarmResolved)
    assert stats["reconnect_statistics"]["failures_by_kind"] == {"rate_limited": 1, "banned": 1}
    logged = [
        parse_kv(r.getMessage()) for r in caplog.records if "event=rate_limited" in r.getMessage()
    ]
    assert [(x["kind"], x["retry_after"]) for x in logged] == [
        ("rate_limited", "1"),
        ("banned", "2"),
    ]
    assert [r.levelname for r in caplog.records if "event=rate_limited" in r.getMessage()] == [
        "WARNING",
        "ERROR",
    ]


async def test_malformed_messages_are_counted_logged_and_survived(
    bed: ExchangeBed, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="regulator.binance"):
        async with stream(bed, ["ethusdt@trade"]) as s:
            events: list[dict[str, Any]] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(collect, s, 1.5, events)
                await wait_for(lambda: len(events) > 5)
                bed.exchange.send_raw("not json {")
                bed.exchange.send_raw('{"stream": "ethusdt@trade"}')
                bed.exchange.send_raw('["a list"]')
                bed.exchange.send_raw('{"what": "ever"}')
            stats = s.get_connection_stats()
    assert stats["binance"]["malformed"] == 4
    assert stats["reconnect_statistics"]["failures"] == 0
    ids = trade_ids(events)
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    lines = [
        parse_kv(r.getMessage()) for r in caplog.records if "event=malformed" in r.getMessage()
    ]
    assert len(lines) == 4 and lines[1]["stream"] == "ethusdt@trade"
    assert lines[0]["error"].startswith("not JSON")


async def test_a_request_without_reply_times_out(bed: ExchangeBed) -> None:
    quiet = ConnectionConfig(ping_interval=30.0, handshake_timeout=2.0)
    rules = BinanceConfig(request_timeout=0.3)
    async with stream(bed, ["ethusdt@trade"], config=quiet, binance=rules) as s:
        await wait_for(lambda: s.get_connection_stats()["binance"]["verified"])
        bed.black_hole()
        started = time.monotonic()
        with pytest.raises(RequestTimeout, match=r"no reply within 0\.3 s"):
            await s.subscribe(["ethusdt@aggTrade"])
        assert 0.25 < time.monotonic() - started < 2.0
        assert s.get_connection_stats()["binance"]["request_timeouts"] == 1
        bed.black_hole(False)


async def test_server_pings_are_answered_and_count_within_the_rate(certs: Certs) -> None:
    with ExchangeBed(certs, ping_interval=1.0, pong_timeout=0.5) as bed:
        config = ConnectionConfig(ping_interval=2.0, pong_timeout=0.5)
        async with stream(bed, ["ethusdt@trade"], config=config) as s:
            events: list[dict[str, Any]] = []
            await collect(s, 3.5, events)
            stats = s.get_connection_stats()
        record = bed.exchange.connections[0]
    assert stats["reconnect_statistics"]["failures"] == 0
    assert len(bed.exchange.connections) == 1 and record.violations == 0
    assert s.connection is not None and s.connection.pings_answered >= 3
    assert len(record.incoming) >= 6  # 2 requests, 3 pongs, our own pings
    assert record.max_incoming_per_second() <= 5


async def test_every_connection_sees_the_same_market(bed: ExchangeBed) -> None:
    got: list[list[dict[str, Any]]] = [[], []]
    async with (
        stream(bed, ["ethusdt@trade"]) as a,
        stream(bed, ["ethusdt@trade"]) as b,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(collect, a, 1.5, got[0])
        tg.start_soon(collect, b, 1.5, got[1])
    first, second = ({e["data"]["t"]: e["data"]["p"] for e in events} for events in got)
    common = first.keys() & second.keys()
    assert len(common) > 30
    assert all(first[i] == second[i] for i in common)


async def test_a_server_restart_is_a_network_failure_and_recovers(bed: ExchangeBed) -> None:
    async with stream(bed, ["ethusdt@trade"]) as s:
        await wait_for(lambda: s.state == "live")
        bed.exchange.restart(down=0.5)
        await wait_for(lambda: s.get_connection_stats()["reconnect_statistics"]["successes"] >= 2)
        record = s.get_connection_stats()["failure_history"][0]
    assert (record["kind"], record["reason"]) == (
        "network",
        "connection closed without a close frame",
    )
    assert bed.exchange.connections[0].close_reason == "server restart"


# -- issue 16 -------------------------------------------------------------------------------


@pytest.mark.parametrize("wrapped", [False, True], ids=["flat", "wrapped"])
async def test_error_replies_fail_the_request_at_once_with_code_and_message(
    certs: Certs, wrapped: bool
) -> None:
    # the documentation's flat {"code", "msg", "id"} and the live service's
    # {"error": {"code", "msg"}, "id"}: both settle the request, neither waits for a timeout
    with ExchangeBed(certs, wrapped_errors=wrapped) as bed:
        rules = BinanceConfig(request_timeout=30.0)
        async with stream(bed, ["ethusdt@trade"], binance=rules) as s:
            await wait_for(lambda: s.get_connection_stats()["binance"]["verified"])
            with pytest.raises(BinanceRequestError) as caught:
                await s.subscribe(["ethusdt@nonsense"])
            stats = s.get_connection_stats()["binance"]
    assert caught.value.code == 2 and "invalid stream" in caught.value.msg
    assert type(caught.value) is BinanceRequestError  # not a RequestTimeout
    assert (stats["request_errors"], stats["request_timeouts"], stats["malformed"]) == (1, 0, 0)


async def test_combined_server_shutdown_starts_the_lossless_rotation(bed: ExchangeBed) -> None:
    seen: list[str] = []
    original = BinanceStream._on_batch

    async def spy(self: BinanceStream, leg: Any, raws: list[str | bytes]) -> None:
        seen.extend(str(raw) for raw in raws if "serverShutdown" in str(raw))
        await original(self, leg, raws)

    async with stream(bed, ["ethusdt@trade"]) as s:
        s._on_batch = spy.__get__(s)  # type: ignore[method-assign]
        events: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, s, 3.0, events)
            await wait_for(lambda: len(events) > 20)
            bed.exchange.server_shutdown(grace=1.5)
        stats = s.get_connection_stats()
    assert seen and all(raw.startswith('{"stream":"!serverShutdown"') for raw in seen)
    ids = trade_ids(events)
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing lost, nothing twice
    assert stats["binance"]["rotations"]["server_shutdown"] == 1
    assert stats["binance"]["malformed"] == 0


async def test_events_the_consumer_buffer_drops_are_reported_as_gaps(bed: ExchangeBed) -> None:
    gaps: list[Gap] = []
    async with stream(bed, ["ethusdt@trade"], buffer_size=10, on_gap=gaps.append) as s:
        await wait_for(lambda: s.get_connection_stats()["binance"]["verified"])
        await wait_for(lambda: s.get_connection_stats()["messages_dropped"] >= 50)  # not reading
        events: list[dict[str, Any]] = []
        await collect(s, 0.3, events)
        dropped = s.get_connection_stats()["messages_dropped"]
    overflow = [g for g in gaps if g.reason == "consumer_overflow"]
    assert overflow and all(g.field == "t" and g.stream == "ethusdt@trade" for g in overflow)
    assert sum(g.count for g in overflow) == dropped  # every dropped event, reported
    ids = trade_ids(events)
    # the first report names exactly the trades dropped before the first one read
    first = overflow[0]
    assert first.last - first.first + 1 == first.count
    assert first.last < ids[0]
    assert s.gaps_detected == len(gaps) and s.overflow_gaps == len(overflow)


@pytest.mark.spec("R1.3")
@pytest.mark.spec("R1.4")
async def test_an_accepted_then_dropped_link_keeps_backing_off_and_alarms_once(
    bed: ExchangeBed,
) -> None:
    # The exchange accepts every connection and closes it with 1008 at once. Never verified,
    # never healthy: each is a failed attempt, the backoff keeps growing (it used to restart
    # at initial_delay on every live), and the episode raises exactly one alarm.
    notices: list[Any] = []
    config = ConnectionConfig(
        initial_delay=0.05, max_delay=0.8, jitter=0.0, ping_interval=5.0, alarm_failures=3
    )
    bed.exchange.drop_after_accept(1008, "Too many requests")
    async with stream(
        bed, ["ethusdt@trade"], config=config, notifiers=[CallbackNotifier(notices.append)]
    ) as s:
        await wait_for(lambda: s.get_connection_stats()["reconnect_statistics"]["failures"] >= 6)
        stats = s.get_connection_stats()
    delays = [r["delay"] for r in stats["failure_history"]][:6]
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 0.8]
    assert all(r["attempt_failed"] and r["state"] == "live" for r in stats["failure_history"])
    assert [type(n) for n in notices] == [Alarm]
    assert stats["reconnect_statistics"]["alarm_count"] == 1


@pytest.mark.spec("R1.4")
async def test_verified_subscriptions_make_the_connection_healthy(bed: ExchangeBed) -> None:
    notices: list[Any] = []
    config = ConnectionConfig(
        initial_delay=0.05,
        max_delay=0.3,
        jitter=0.0,
        ping_interval=5.0,
        handshake_timeout=0.5,
        alarm_failures=0,
    )  # stable_after stays at its default, 10 s: health comes from the verification
    bed.black_hole()
    async with stream(
        bed, ["ethusdt@trade"], config=config, notifiers=[CallbackNotifier(notices.append)]
    ) as s:
        await wait_for(lambda: notices)  # handshake timeouts: failed attempts, an alarm
        bed.black_hole(False)
        await wait_for(lambda: s.get_connection_stats()["binance"]["verified"])
        await wait_for(lambda: len(notices) == 2)
        stats = s.get_connection_stats()
    assert [type(n) for n in notices] == [Alarm, AlarmResolved]
    assert stats["healthy"] and stats["reconnect_statistics"]["consecutive_failures"] == 0


async def test_depth_diff_continuity_gap_names_the_missing_update_ids(bed: ExchangeBed) -> None:
    gaps: list[Gap] = []
    slow = ConnectionConfig(
        initial_delay=0.4, max_delay=0.4, jitter=0.0, ping_interval=5.0, handshake_timeout=2.0
    )
    async with stream(bed, ["ethusdt@depth@100ms"], config=slow, on_gap=gaps.append) as s:
        events: list[dict[str, Any]] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(collect, s, 2.5, events)
            await wait_for(lambda: len(events) > 5)
            bed.reset()
    data = [e["data"] for e in events]
    assert all(d["e"] == "depthUpdate" and d["U"] <= d["u"] for d in data)
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap.stream, gap.field, gap.reason) == ("ethusdt@depth@100ms", "u", "sequence")
    before = max(d["u"] for d in data if d["u"] < gap.first)
    after = min(d["U"] for d in data if d["U"] > gap.last)
    # U must be the previous u + 1: the gap is exactly the update ids in between
    assert (gap.first, gap.last) == (before + 1, after - 1)
    for prev, cur in itertools.pairwise(data):
        if cur["U"] != prev["u"] + 1:
            assert (cur["U"], prev["u"]) == (after, before)
