"""The pure parts of the Binance client: event identity, de-duplication, gaps, pacing."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from regulator.adapters.binance import AttemptBudget, RequestPacer, StreamTracker, event_identity


def trade(t: int) -> dict[str, Any]:
    return {"e": "trade", "E": 1000 + t, "t": t, "p": "1.00"}


def kline(start: int, at: int, closed: bool, interval: str = "1m") -> dict[str, Any]:
    return {"e": "kline", "E": at, "k": {"t": start, "i": interval, "x": closed}}


def test_identity_of_every_payload_shape() -> None:
    assert event_identity(trade(5)) == (5,)
    assert event_identity({"e": "aggTrade", "a": 9, "E": 1}) == (9,)
    assert event_identity({"e": "depthUpdate", "U": 3, "u": 7, "E": 1}) == (7,)
    assert event_identity(kline(60_000, 61_234, False)) == (60_000, 61_234)
    assert event_identity({"u": 400, "s": "ETHUSDT", "b": "1"}) == (400,)  # bookTicker
    assert event_identity({"lastUpdateId": 12, "bids": []}) == (12,)  # partial depth
    assert event_identity({"e": "24hrTicker", "E": 77}) == (77,)
    assert event_identity([{"e": "24hrMiniTicker"}]) is None
    assert event_identity({"e": "trade", "t": "5"}) is None  # not an id: no identity


def test_block_trades_are_told_apart_by_their_id_not_their_time() -> None:
    """Two block trades can share an event time: each is new by its ``t``; a rotation's
    repeat is a duplicate; ids that skip (not promised +1) are no gap."""
    from regulator.adapters.binance._tracker import event_position

    def block(t: int) -> dict[str, Any]:
        return {"e": "blockTrade", "E": 5_000, "s": "ETHUSDT", "t": t, "p": "1.00",
                "q": "9.0000", "T": 4_900, "m": True}  # fmt: skip

    assert event_identity(block(581)) == (581,)
    assert event_position(block(581)) == ("t", 581, 581)
    tracker, delivered = StreamTracker(), []
    for t in (581, 582, 582, 590, 589):
        data = block(t)
        key = event_identity(data)
        if tracker.is_new("ethusdt@blockTrade", key):
            assert tracker.accept("ethusdt@blockTrade", data, key, lambda: 0.0) is None
            delivered.append(t)
    assert delivered == [581, 582, 590]


def merge(tracker: StreamTracker, old: list[int], new: list[int]) -> tuple[list[int], list[Any]]:
    """What a rotation does: the old leg delivers, then the held new leg is merged in."""
    out, gaps = [], []
    for feed in (old, new):
        for t in feed:
            data = trade(t)
            key = event_identity(data)
            if tracker.is_new("x@trade", key):
                gap = tracker.accept("x@trade", data, key, lambda: 0.0)
                if gap is not None:
                    gaps.append(gap)
                out.append(t)
    return out, gaps


@given(st.integers(1, 200), st.data())
def test_an_overlapping_rotation_merges_without_loss_or_duplicate(n: int, data: Any) -> None:
    switch = data.draw(st.integers(1, n))  # the old leg delivered 1..switch
    joined = data.draw(st.integers(1, switch + 1))  # the new leg carries joined..n
    out, gaps = merge(StreamTracker(), list(range(1, switch + 1)), list(range(joined, n + 1)))
    assert out == list(range(1, n + 1))
    assert gaps == []


@given(st.lists(st.booleans(), min_size=2, max_size=300))
def test_gaps_are_exactly_the_missing_runs(kept: list[bool]) -> None:
    ids = [i for i, keep in enumerate(kept, start=100) if keep]
    tracker = StreamTracker()
    _, gaps = merge(tracker, ids, [])
    expected = []
    for a, b in itertools.pairwise(ids):
        if b > a + 1:
            expected.append((a + 1, b - 1, b - a - 1))
    assert [(g.first, g.last, g.count) for g in gaps] == expected
    assert all((g.stream, g.field) == ("x@trade", "t") for g in gaps)


def test_depth_updates_gap_on_first_update_id() -> None:
    tracker = StreamTracker()
    first = {"e": "depthUpdate", "E": 1, "U": 10, "u": 15}
    follows = {"e": "depthUpdate", "E": 2, "U": 16, "u": 18}
    jumped = {"e": "depthUpdate", "E": 3, "U": 25, "u": 30}
    results = [
        tracker.accept("d", e, event_identity(e), lambda: 0.0) for e in (first, follows, jumped)
    ]
    assert results[:2] == [None, None]
    gap = results[2]
    assert gap is not None and (gap.field, gap.first, gap.last, gap.count) == ("u", 19, 24, 6)


def test_kline_gaps_count_candles_whose_close_was_never_seen() -> None:
    minute = 60_000
    tracker = StreamTracker()

    def feed(start: int, at: int, closed: bool) -> Any:
        data = kline(start, at, closed)
        key = event_identity(data)
        assert tracker.is_new("k", key)
        return tracker.accept("k", data, key, lambda: 0.0)

    assert feed(0, 1_000, False) is None
    assert feed(0, 59_999, True) is None  # closed: the next candle follows without a gap
    assert feed(minute, 61_000, False) is None
    # the close of candle 1 and all of candles 2 and 3 were missed
    gap = feed(4 * minute, 4 * minute + 500, False)
    assert gap is not None
    assert (gap.field, gap.first, gap.last, gap.count) == ("k.t", minute, 3 * minute, 3)
    # a duplicate of an update already delivered is not new
    assert not tracker.is_new("k", event_identity(kline(4 * minute, 4 * minute + 500, False)))


def test_the_pacer_keeps_requests_and_control_frames_under_the_limit() -> None:
    controls = [0]
    sent: list[tuple[float, str]] = []

    async def main() -> None:
        pacer = RequestPacer(5, 2, control_count=lambda: controls[0])
        for i in range(30):
            if i % 4 == 0:  # a pong went out meanwhile
                controls[0] += 1
                sent.append((anyio.current_time(), "control"))
            await pacer.wait()
            sent.append((anyio.current_time(), "request"))

    anyio.run(
        main,
        backend="trio",
        backend_options={"clock": trio.testing.MockClock(autojump_threshold=0)},
    )
    times = [t for t, _ in sent]
    requests = [t for t, kind in sent if kind == "request"]
    for start in times:  # a pong may follow requests at once, but never breaks the limit
        assert sum(1 for t in times if start <= t < start + 1.1) <= 5
        assert sum(1 for t in requests if start <= t < start + 1.1) <= 3
    assert times[-1] > 9.0  # 30 requests + 8 controls at 3 per 1.1 s


def test_the_attempt_budget_spreads_a_burst_and_honours_retry_after() -> None:
    clock = [0.0]
    budget = AttemptBudget(3, 10.0, margin=0.0, time_fn=lambda: clock[0])
    delays = [budget.reserve() for _ in range(7)]
    assert delays == [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 20.0]
    spaced = AttemptBudget(1, 300.0, time_fn=lambda: clock[0])  # default margin: 1 %
    assert [spaced.reserve(), spaced.reserve()] == [0.0, 303.0]
    clock[0] = 25.0
    budget.block_for(100.0)
    assert budget.reserve() == pytest.approx(100.0)
    assert budget.waits == 5 and budget.attempts == 8
    with pytest.raises(ValueError, match=r"limit: must be >= 1 \(got 0\)"):
        AttemptBudget(0, 1.0)


# -- the one-step path (StreamTracker.track) against the decision in parts ------------------------
_ids = st.one_of(
    st.integers(0, 40),
    st.integers(0, 40).map(lambda i: i + 10**9 + 5),  # past RESET_IDS
    st.sampled_from([None, "7", True, 2.0, -1]),
)
_payloads = st.one_of(
    st.builds(lambda t: {"e": "trade", "t": t, "E": 1}, _ids),
    st.builds(lambda a: {"e": "aggTrade", "a": a, "E": 1}, _ids),
    st.builds(
        lambda u, n: {"e": "depthUpdate", "U": u, "u": u + n if type(u) is int else u, "E": 1},
        _ids,
        st.integers(0, 3),
    ),
    st.builds(lambda u: {"u": u, "s": "X", "b": "1"}, _ids),  # bookTicker
    st.builds(lambda u, last: {"u": u, "lastUpdateId": last}, _ids, _ids),
    st.builds(lambda u: {"lastUpdateId": u, "bids": []}, _ids),
    st.builds(
        lambda start, at, closed: kline(start * 60_000, at, closed),
        st.integers(0, 6),
        st.integers(0, 10**6),
        st.booleans(),
    ),
    st.builds(lambda e: {"e": "blockTrade", "t": e}, _ids),
    st.builds(lambda e: {"e": "24hrTicker", "E": e}, _ids),
    st.just([{"e": "24hrMiniTicker"}]),
    st.just({"e": "serverShutdown"}),
)


def _in_parts(tracker: StreamTracker, stream: str, data: Any) -> Any:
    key = event_identity(data)
    if tracker.is_new(stream, key):
        return tracker.accept(stream, data, key, lambda: 0.0)
    gap = tracker.stale(stream, data, key, lambda: 0.0)
    return "duplicate" if gap is None else gap


@pytest.mark.spec("R5.5")
@given(st.lists(st.tuples(st.sampled_from(["a", "b"]), _payloads), max_size=60))
def test_the_one_step_path_decides_as_the_parts_do(feed: list[tuple[str, Any]]) -> None:
    from regulator.adapters.binance._tracker import DUPLICATE

    fast, parts = StreamTracker(), StreamTracker()
    for stream, data in feed:
        got = fast.track(stream, data, lambda: 0.0)
        assert ("duplicate" if got is DUPLICATE else got) == _in_parts(parts, stream, data)
        assert fast.last_identity(stream) == parts.last_identity(stream)
    assert len(fast) == len(parts)
