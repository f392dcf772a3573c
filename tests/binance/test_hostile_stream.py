"""BinanceStream against a hostile exchange (issue 27, items 2, 3, 6, 7): one message never ends
the stream, replies of the wrong shape fail their request only, events of streams nobody
subscribed are never tracked, ids far ahead are sequence resets, and no Retry-After blocks the
attempt budget for ever. Real TLS on 127.0.0.1, asyncio and trio."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import anyio
import attrs
import pytest
from _faultbed import Certs
from _hostile_exchange import HostileExchange, Traced
from _rawframes import raw_frame
from hypothesis import example, given
from hypothesis import strategies as st
from regulator.adapters.binance import AttemptBudget, BinanceRequestError, BinanceStream
from regulator.adapters.binance._tracker import RESET_IDS, STALE_RESET, StreamTracker
from regulator.adapters.binance._validate import LogLimiter, kline_problem
from regulator.adapters.websocket._classify import MAX_RETRY_AFTER
from regulator.fsm import ConnectionConfig, parse_kv

pytestmark = pytest.mark.anyio

FAST = ConnectionConfig(
    initial_delay=0.05,
    max_delay=0.3,
    jitter=0.0,
    ping_interval=5.0,
    pong_timeout=2.0,
    handshake_timeout=3.0,
)
TRADE = "ethusdt@trade"
KLINE = "ethusdt@kline_1m"
TICKER = "ethusdt@ticker"


@pytest.fixture
def server(certs: Certs) -> Iterator[HostileExchange]:
    with HostileExchange(certs.server_context()) as running:
        yield running


def make(server: HostileExchange, certs: Certs, streams: list[str], **kw: Any) -> BinanceStream:
    kw.setdefault("config", FAST)
    kw.setdefault("attempt_budget", AttemptBudget(300, 300.0))
    return BinanceStream(
        streams, base_url=server.base_url, ssl_context=certs.client_context(), **kw
    )


async def wait_for(check: Any, timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.01)


def trade(t: Any) -> str:
    return json.dumps({"stream": TRADE, "data": {"e": "trade", "E": 1, "t": t, "p": "1"}})


def kline(interval: Any, start: Any = 60_000) -> str:
    k = {"t": start, "i": interval, "x": False}
    return json.dumps({"stream": KLINE, "data": {"e": "kline", "E": 61_000, "k": k}})


def verified(s: BinanceStream) -> bool:
    return s.state == "live" and bool(s.get_connection_stats()["binance"]["verified"])


async def take(s: BinanceStream, until: Any, into: list[dict[str, Any]]) -> None:
    with anyio.fail_after(20):
        async for event in s:
            into.append(event)
            if until(event):
                return


DEEP = 400_000  # 800 KB of brackets, under max_message_bytes (1 MiB)
HOSTILE = [
    "[" * DEEP + "]" * DEEP,  # RecursionError in json.loads
    '{"a":' * (DEEP // 5) + "1" + "}" * (DEEP // 5),
    '{"stream": "ethusdt@trade", "data": ' + "[" * DEEP + "]" * DEEP + "}",
    trade(0).replace('"t": 0', '"t": ' + "9" * 5000),  # past the 4300-digit int limit
    kline("0m"),  # was ZeroDivisionError
    kline("-1m"),
    kline("9" * 5000 + "m"),
    kline("7m"),
    kline("1m "),
    kline(60),
    kline(["1m"]),
    kline("1m", start="60000"),
    kline("1m", start=True),
    json.dumps({"stream": KLINE, "data": {"e": "kline", "E": 1, "k": [1, 2]}}),
    json.dumps({"stream": 5, "data": {}}),
    '"a string"',
    "null",
    "1e999",
    "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),  # lone surrogate, as text
]


async def test_no_single_message_ends_the_stream(
    server: HostileExchange, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[dict[str, Any]] = []
    with caplog.at_level(logging.WARNING, logger="regulator.binance"):
        async with make(server, certs, [TRADE, KLINE]) as s:
            await wait_for(lambda: verified(s))
            server.push(trade(1))
            await take(s, lambda e: True, events)
            server.push(*HOSTILE)
            # binary frames too: not UTF-8, and UTF-8 of a deep nesting
            server.push_raw(raw_frame(2, b"\xff\xfe\xfd") + raw_frame(2, b"[" * 1000))
            server.push(*[trade(t) for t in range(2, 202)])
            await take(s, lambda e: e["data"].get("t") == 201, events)
            stats = s.get_connection_stats()
            assert s.state == "live"
    assert [e["data"]["t"] for e in events] == list(range(1, 202))  # nothing hostile delivered
    assert stats["binance"]["malformed"] == len(HOSTILE) + 2
    assert stats["reconnect_statistics"]["failures"] == 0
    lines = [
        parse_kv(r.getMessage()) for r in caplog.records if "event=malformed" in r.getMessage()
    ]
    assert 1 <= len(lines) <= LogLimiter().burst  # rate-limited: a flood of lines is not ours
    assert any("RecursionError" in line["error"] for line in lines)
    assert all(len(line["error"]) < 300 for line in lines)  # server text is cut short


@pytest.mark.parametrize(
    "reply",
    [[1, 2], "ethusdt@trade", {"ethusdt@trade": 1}, [["ethusdt@trade"]], None, 3.5, [None]],
)
async def test_a_list_subscriptions_reply_of_the_wrong_shape_fails_the_request_only(
    certs: Certs, reply: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        HostileExchange(certs.server_context(), replies={"LIST_SUBSCRIPTIONS": reply}) as server,
        caplog.at_level(logging.WARNING, logger="regulator.binance"),
    ):
        async with make(server, certs, [TRADE]) as s:
            await wait_for(lambda: s.state == "live" and s.malformed == 1)
            with pytest.raises(BinanceRequestError, match="malformed reply: the result of LIST_"):
                await s.list_subscriptions()
            server.push(trade(1), trade(2))
            events: list[dict[str, Any]] = []
            await take(s, lambda e: e["data"]["t"] == 2, events)
            stats = s.get_connection_stats()
    assert stats["binance"]["verified"] is False  # the exchange's view was not confirmed
    assert stats["binance"]["malformed"] == 2
    assert stats["reconnect_statistics"]["failures"] == 0
    assert any("event=resubscribe_failed" in r.getMessage() for r in caplog.records)


async def test_a_subscribe_reply_of_the_wrong_shape_is_refused(certs: Certs) -> None:
    with HostileExchange(certs.server_context(), replies={"SUBSCRIBE": {"ok": True}}) as server:
        async with make(server, certs, []) as s:
            await wait_for(lambda: s.state == "live")
            with pytest.raises(BinanceRequestError, match="the result of SUBSCRIBE must be null"):
                await s.subscribe([TRADE])
            assert s.streams == []  # refused: not kept
            assert s.state == "live" and s.malformed == 1


async def test_events_of_streams_not_subscribed_are_dropped_and_never_tracked(
    server: HostileExchange, certs: Certs
) -> None:
    names = 20_000
    async with make(server, certs, [TRADE, TICKER]) as s:
        await wait_for(lambda: verified(s))
        server.push(trade(1))
        events: list[dict[str, Any]] = []
        await take(s, lambda e: True, events)
        traced = Traced().__enter__()
        forged = [
            json.dumps({"stream": f"s{i}x@trade", "data": {"e": "trade", "t": i}})
            for i in range(names)
        ]
        for start in range(0, names, 2000):
            server.push(*forged[start : start + 2000])
        forged.clear()
        server.push(trade(2))
        await take(s, lambda e: e["data"].get("t") == 2, events)
        traced.__exit__()
        grown = traced.grown
        stats = s.get_connection_stats()["binance"]
        assert len(s._tracker) == 1  # the trade stream only
        await s.unsubscribe([TRADE])
        server.push(trade(3))  # in flight after the unsubscribe: dropped, counted
        await wait_for(lambda: s.unsubscribed_dropped == names + 1)
        assert len(s._tracker) == 0
    assert [e["data"]["t"] for e in events] == [1, 2]
    assert stats["unsubscribed_dropped"] == names
    print(f"{names} unsubscribed stream names: +{grown / 1024:.0f} KiB traced")
    assert grown < 2 * 1024 * 1024


# -- id jumps (item 7) ----------------------------------------------------------------------------
@pytest.mark.parametrize("forged", [10**15, 2**62, 10**300])
async def test_an_id_far_ahead_is_a_reset_and_the_genuine_ids_are_delivered(
    server: HostileExchange, certs: Certs, forged: int
) -> None:
    gaps: list[Any] = []
    async with make(server, certs, [TRADE], on_gap=gaps.append) as s:
        await wait_for(lambda: verified(s))
        server.push(*[trade(t) for t in range(1, 11)], trade(forged))
        server.push(*[trade(t) for t in range(11, 211)])
        events: list[dict[str, Any]] = []
        await take(s, lambda e: e["data"]["t"] == 210, events)
        stats = s.get_connection_stats()["binance"]
    ids = [e["data"]["t"] for e in events]
    assert ids == [*range(1, 11), forged, *range(11, 211)]  # all 200 genuine ones delivered
    assert [(g.reason, g.first, g.last, g.count) for g in gaps] == [("reset", 10, forged, 0)]
    assert stats["sequence_resets"] == 1
    assert stats["gap_events_missing"] == 0 and stats["duplicates_dropped"] == 0


async def test_an_id_ahead_below_the_bound_costs_at_most_two_genuine_events(
    server: HostileExchange, certs: Certs
) -> None:
    gaps: list[Any] = []
    forged = 10 + RESET_IDS  # a gap the bound cannot tell from a real one
    async with make(server, certs, [TRADE, TICKER], on_gap=gaps.append) as s:
        await wait_for(lambda: verified(s))
        server.push(*[trade(t) for t in range(1, 11)], trade(forged))
        server.push(*[trade(t) for t in range(11, 211)])
        events: list[dict[str, Any]] = []
        await take(s, lambda e: e["data"]["t"] == 210, events)
        # a ticker (identity: its event time) with a forged time 10^16 ms, then genuine ones
        tick = [{"stream": TICKER, "data": {"e": "24hrTicker", "E": e}} for e in (5, 10**16)]
        tick += [{"stream": TICKER, "data": {"e": "24hrTicker", "E": e}} for e in range(6, 56)]
        server.push(*[json.dumps(t) for t in tick])
        await take(s, lambda e: e["data"].get("E") == 55, events)
    ids = [e["data"]["t"] for e in events if "t" in e["data"]]
    lost = STALE_RESET - 1
    assert ids == [*range(1, 11), forged, *range(11 + lost, 211)]
    times = [e["data"]["E"] for e in events if e["stream"] == TICKER]
    assert times == [5, 10**16, *range(6, 56)]
    assert [g.reason for g in gaps] == ["sequence", "reset", "reset"]


@given(
    st.integers(1, 300),
    st.integers(0, 299),
    st.integers(-(10**30), 10**30),
)
@example(4, 0, 1003)  # a forged id equal to a later genuine one
def test_one_forged_id_never_costs_more_than_two_genuine_events(
    n: int, at: int, forged: int
) -> None:
    tracker = StreamTracker()
    genuine = list(range(1000, 1000 + n))
    # (id, genuine?): the forged id may equal a genuine one, which is then delivered twice
    # (once forged, once genuine): only the genuine events' fate is asserted
    feed = [(t, True) for t in genuine]
    feed.insert(at % n, (forged, False))
    out = []
    for t, real in feed:
        data = {"e": "trade", "t": t}
        key = (t,)
        if tracker.is_new("x", key):
            tracker.accept("x", data, key, lambda: 0.0)
            out.append((t, real))
        elif tracker.stale("x", data, key, lambda: 0.0) is not None:
            out.append((t, real))
    delivered = [t for t, real in out if real]
    assert len(genuine) - len(delivered) <= STALE_RESET - 1
    assert delivered == sorted(delivered)  # never a genuine one twice or out of order


def test_kline_shapes_are_checked_against_the_documented_intervals() -> None:
    for interval in ("1s", "1m", "3m", "1h", "12h", "1d", "3d", "1w", "1M"):
        assert kline_problem({"k": {"t": 0, "i": interval}}) is None
    for bad in ("0m", "60s", "2d", "1y", "", "1M\n", None, 1):
        assert "not a documented interval" in str(kline_problem({"k": {"t": 0, "i": bad}}))


def test_the_log_limiter_counts_what_it_held_back() -> None:
    now = [0.0]
    limiter = LogLimiter(burst=3, period=10.0, time_fn=lambda: now[0])
    assert [limiter.allow() for _ in range(5)] == [0, 0, 0, None, None]
    now[0] = 10.0
    assert limiter.allow() == 2  # the next line says how many were held back
    assert limiter.suppressed_total == 2


# -- Retry-After (item 3) -------------------------------------------------------------------------
@pytest.mark.spec("R1.1")
@pytest.mark.parametrize(
    ("sent", "used"),
    [("inf", MAX_RETRY_AFTER), ("1e999", MAX_RETRY_AFTER), ("9" * 5000, MAX_RETRY_AFTER)],
)
async def test_no_retry_after_blocks_the_attempt_budget_for_ever(
    certs: Certs, sent: str, used: float, caplog: pytest.LogCaptureFixture
) -> None:
    budget = AttemptBudget(300, 300.0)
    answers = [(429, {"Retry-After": sent})]
    with (
        HostileExchange(certs.server_context(), answers=answers) as server,
        caplog.at_level(logging.WARNING),
    ):
        async with make(server, certs, [TRADE], attempt_budget=budget) as s:
            await wait_for(lambda: s.rate_limited_total == 1)
            blocked = budget.blocked_until - time.monotonic()
            record = s.connection.machine.history[0] if s.connection else None
    assert math.isfinite(budget.blocked_until)
    assert MAX_RETRY_AFTER - 60 < blocked <= MAX_RETRY_AFTER
    assert record is not None and record.retry_after == used
    capped = [parse_kv(r.getMessage()) for r in caplog.records if "retry_after_capped" in r.msg]
    assert len(capped) == 1 and capped[0]["sent"] == sent[:40] + ("..." if len(sent) > 40 else "")
    assert float(capped[0]["used"]) == used


async def test_the_event_buffer_is_bounded_in_bytes_and_reports_what_it_dropped(
    server: HostileExchange, certs: Certs
) -> None:
    bound = 64 * 1024
    config = ConnectionConfig(**{**attrs.asdict(FAST), "buffer_bytes": bound})
    gaps: list[Any] = []
    big = [
        json.dumps({"stream": TRADE, "data": {"e": "trade", "t": t, "p": "x" * 8000}})
        for t in range(1, 101)
    ]
    async with make(server, certs, [TRADE], config=config, on_gap=gaps.append) as s:
        await wait_for(lambda: verified(s))
        server.push(*big)  # 800 KB for a consumer that is not reading
        await wait_for(lambda: s.events_delivered == 100)
        held = s._events.bytes
        first = await s.__anext__()
    assert held <= bound
    kept = 100 - s._events.dropped
    assert kept == bound // len(big[0])
    assert first["data"]["t"] == 100 - kept + 1  # the newest are kept (drop_oldest)
    overflow = [g for g in gaps if g.reason == "consumer_overflow"]
    assert sum(g.count for g in overflow) == s._events.dropped == 100 - kept
    assert (overflow[0].first, overflow[-1].last) == (1, 100 - kept)


async def test_floods_of_unasked_replies_and_errors_are_counted_and_their_lines_limited(
    server: HostileExchange, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    flood = 500
    with caplog.at_level(logging.WARNING, logger="regulator.binance"):
        async with make(server, certs, [TRADE]) as s:
            await wait_for(lambda: verified(s))
            server.push(*[json.dumps({"result": None, "id": 10**6 + i}) for i in range(flood)])
            server.push(*[json.dumps({"code": 3, "msg": "x" * 1000}) for _ in range(flood)])
            server.push(trade(1))
            events: list[dict[str, Any]] = []
            await take(s, lambda e: True, events)
            assert s.state == "live"
    assert s._requests.unexpected == flood and s.request_errors == flood
    for event in ("unexpected_reply", "request_error"):
        lines = [r.getMessage() for r in caplog.records if f"event={event}" in r.getMessage()]
        assert 1 <= len(lines) <= LogLimiter().burst
        assert all(len(line) < 400 for line in lines)
