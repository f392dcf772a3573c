"""The pure local order book: the exchange's procedure rule by rule, hostile input, bounds, and
a Hypothesis state machine against a plain dict model of the exchange's book."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from regulator.adapters.binance import OrderBook, OrderBookError


def event(first: int, last: int, b: Any = (), a: Any = ()) -> dict[str, Any]:
    return {"e": "depthUpdate", "E": 1, "s": "ETHUSDT", "U": first, "u": last,
            "b": [list(x) for x in b], "a": [list(x) for x in a]}  # fmt: skip


def snap(last: int, bids: Any = (), asks: Any = ()) -> dict[str, Any]:
    return {"lastUpdateId": last, "bids": [list(x) for x in bids], "asks": [list(x) for x in asks]}


def D(x: str) -> Decimal:
    return Decimal(x)


def test_events_are_buffered_until_a_snapshot_and_a_stale_snapshot_is_refused() -> None:
    book = OrderBook("ethusdt")
    # compared as one tuple: asserted one by one, mypy would hold them narrowed across on_event
    assert (book.synced, book.last_update_id, book.wants_snapshot) == (False, None, False)
    book.on_event(event(101, 105, b=[("10.0", "1")]))
    book.on_event(event(106, 108, a=[("11.0", "2")]))
    assert (book.wants_snapshot, book.buffered, book.bids, book.best_ask) == (True, 2, [], None)
    # lastUpdateId strictly below the first buffered U: older than the stream, fetch again
    assert book.on_snapshot(snap(100, bids=[("9.0", "5")])) is False
    assert book.snapshots_stale == 1 and (book.wants_snapshot, book.synced) == (True, False)
    # one inside the buffer: events with u <= lastUpdateId dropped, the rest applied
    assert book.on_snapshot(snap(105, bids=[("9.0", "5"), ("10.0", "3")], asks=[("12", "1")]))
    assert book.synced and book.last_update_id == 108 and not book.wants_snapshot
    assert book.bids == [(D("10.0"), D("3")), (D("9.0"), D("5"))]  # 101-105 not re-applied
    assert book.asks == [(D("11.0"), D("2")), (D("12"), D("1"))]
    assert book.best_bid == (D("10"), D("3")) and book.best_ask == (D("11"), D("2"))
    assert book.snapshots_applied == 1 and book.events_applied == 1


def test_the_first_event_applied_contains_last_update_id_plus_one() -> None:
    """The docs' step 5 says the first event left has ``lastUpdateId`` in [U; u]; one that
    starts right after the snapshot (U = lastUpdateId + 1) does not, and is the right one."""
    book = OrderBook()
    book.on_event(event(101, 105, b=[("10", "1")]))
    book.on_event(event(106, 110, b=[("10", "7")]))
    assert book.on_snapshot(snap(105, bids=[("10", "1")]))
    assert book.last_update_id == 110 and book.bids == [(D("10"), D("7"))]
    # and one inside an event's range: that event is applied whole
    other = OrderBook()
    other.on_event(event(101, 105, b=[("10", "1")]))
    assert other.on_snapshot(snap(103, bids=[("10", "4"), ("9", "1")]))
    assert other.last_update_id == 105 and other.bids == [(D("10"), D("1")), (D("9"), D("1"))]


def test_a_snapshot_newer_than_every_buffered_event_syncs_at_its_own_id() -> None:
    book = OrderBook()
    book.on_event(event(101, 105, b=[("10", "1")]))
    assert book.on_snapshot(snap(120, bids=[("10", "2")]))
    assert book.last_update_id == 120 and book.bids == [(D("10"), D("2"))]
    book.on_event(event(106, 120, b=[("10", "1")]))  # contained in the snapshot: ignored
    assert book.events_ignored == 1 and book.bids == [(D("10"), D("2"))]
    book.on_event(event(121, 121, b=[("10", "0")]))  # quantity 0 removes the level
    assert book.bids == [] and book.best_bid is None and book.last_update_id == 121
    book.on_event(event(122, 122, a=[("30", "0")]))  # removing a level it lacks: no change
    assert book.asks == [] and book.last_update_id == 122


def test_a_snapshot_with_nothing_buffered_is_refused_and_an_extra_one_is_ignored() -> None:
    book = OrderBook()
    assert book.on_snapshot(snap(5)) is False and book.snapshots_stale == 1
    book.on_event(event(6, 6))
    assert book.on_snapshot(snap(6, bids=[("1", "1")]))
    assert book.on_snapshot(snap(3)) is True  # already synced: a late answer changes nothing
    assert book.last_update_id == 6 and book.bids == [(D("1"), D("1"))]


def test_a_gap_in_the_ids_discards_the_book_and_buffers_from_the_event_that_showed_it() -> None:
    book = OrderBook()
    book.on_event(event(1, 2))
    assert book.on_snapshot(snap(2, bids=[("5", "1")]))
    book.on_event(event(3, 4, b=[("5", "2")]))
    book.on_event(event(7, 9, b=[("6", "1")]))  # 5 and 6 never came
    # compared as one tuple: asserted one by one, mypy would hold them narrowed across on_event
    assert (book.synced, book.last_update_id, book.bids) == (False, None, [])
    assert book.resyncs == 1 and book.buffered == 1 and book.wants_snapshot
    assert book.on_snapshot(snap(8, bids=[("5", "2"), ("6", "3")]))
    assert book.last_update_id == 9 and book.bids == [(D("6"), D("1")), (D("5"), D("2"))]


def test_an_event_overlapping_the_book_is_applied_as_the_update_procedure_says() -> None:
    book = OrderBook()
    book.on_event(event(1, 5))
    assert book.on_snapshot(snap(5, asks=[("2", "1")]))
    book.on_event(event(4, 8, a=[("2", "3")]))  # U <= id + 1 <= u: applied
    assert book.last_update_id == 8 and book.asks == [(D("2"), D("3"))]


def test_a_gap_inside_the_buffer_drops_what_came_before_it() -> None:
    book = OrderBook()
    book.on_event(event(1, 3))
    book.on_event(event(4, 6))
    book.on_event(event(5, 6))  # a repeat: nothing new
    book.on_event(event(9, 12, b=[("1", "1")]))
    assert book.buffered == 1 and book.buffer_dropped == 2 and book.events_ignored == 1
    assert book.on_snapshot(snap(7)) is False  # older than what is left
    assert book.on_snapshot(snap(10)) and book.last_update_id == 12


def test_resync_discards_the_book_and_the_buffer() -> None:
    book = OrderBook()
    book.on_event(event(1, 1))
    book.resync()
    assert book.buffered == 0 and not book.wants_snapshot and book.resyncs == 0
    book.on_event(event(2, 2))
    assert book.on_snapshot(snap(2, bids=[("1", "1")]))
    book.resync()
    assert not book.synced and book.bids == [] and book.resyncs == 1 and not book.wants_snapshot


def test_the_buffer_is_bounded_by_count_and_by_bytes_oldest_first() -> None:
    book = OrderBook(max_buffered=3)
    for i in range(1, 6):
        book.on_event(event(i, i), size=100)
    assert book.buffered == 3 and book.buffer_dropped == 2
    assert book.on_snapshot(snap(2)) is False  # events 1-2 are gone: refetch
    assert book.on_snapshot(snap(3)) and book.last_update_id == 5
    small = OrderBook(max_buffered_bytes=250)
    for i in range(1, 6):
        small.on_event(event(i, i), size=100)
    assert small.buffered == 2 and small.buffer_dropped == 3
    huge = OrderBook(max_buffered_bytes=10)
    huge.on_event(event(1, 1), size=1000)  # the newest event is always kept
    assert huge.buffered == 1
    for bad in (0, -1, "3", 1.5):
        with pytest.raises(ValueError, match="max_buffered"):
            OrderBook(max_buffered=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_buffered_bytes"):
            OrderBook(max_buffered_bytes=bad)  # type: ignore[arg-type]


BAD_EVENTS: list[tuple[Any, str]] = [
    ([1, 2], "event: must be an object"),
    ({"u": 5, "b": [], "a": []}, "U: must be a non-negative integer"),
    (event(1, 2) | {"u": "2"}, "u: must be a non-negative integer"),
    (event(1, 2) | {"U": True}, "U: must be a non-negative integer"),
    (event(-1, 2), "U: must be a non-negative integer"),
    (event(5, 2), "U: must be at most u"),
    (event(1, 2_000_000_000), "fewer than 1000000000 updates"),
    (event(1, 2) | {"b": None}, "b: must be a list"),
    (event(1, 2, b=[("1", "1", "1")]), r"b\[0\]: must be a \[price, quantity\] pair"),
    (event(1, 2) | {"a": [{"p": "1"}]}, r"a\[0\]: must be a \[price, quantity\] pair"),
    (event(1, 2, b=[(1.5, "1")]), r"b\[0\] price: must be a decimal string"),
    (event(1, 2, b=[("1", "9" * 65)]), r"b\[0\] quantity: must be a decimal string of 1 to 64"),
    (event(1, 2, a=[("abc", "1")]), r"a\[0\] price: not a decimal number"),
    (event(1, 2, a=[("NaN", "1")]), r"a\[0\] price: must be finite"),
    (event(1, 2, a=[("1", "Infinity")]), r"a\[0\] quantity: must be finite"),
    (event(1, 2, a=[("0", "1")]), r"a\[0\] price: must be above 0"),
    (event(1, 2, b=[("1", "-2")]), r"b\[0\] quantity: must be at least 0"),
    (event(1, 2, b=[("1", "1"), ("2", "x")]), r"b\[1\] quantity: not a decimal number"),
    (event(1, 2, b=[("1.00000000000000001", "1")]), r"b\[0\] price: more than 15 significant"),
    (event(1, 2, a=[("1e-400", "1")]), r"a\[0\] price: more than 15 significant"),
    (event(1, 2, a=[("9e999", "1")]), r"a\[0\] price: more than 15 significant"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_EVENTS)
def test_hostile_events_raise_a_clear_error_and_change_nothing(bad: Any, message: str) -> None:
    book = OrderBook()
    book.on_event(event(1, 1))
    assert book.on_snapshot(snap(1, bids=[("5", "1")]))
    with pytest.raises(OrderBookError, match=message):
        book.on_event(bad)
    # compared as one tuple: asserted one by one, mypy would hold them narrowed across on_event
    assert (book.synced, book.last_update_id, book.bids) == (True, 1, [(D("5"), D("1"))])
    # nor while buffering
    fresh = OrderBook()
    fresh.on_event(event(1, 1))
    with pytest.raises(OrderBookError, match=message):
        fresh.on_event(bad)
    assert fresh.buffered == 1
    # the stream goes on: the event after a lost one shows the gap and the book resyncs
    book.on_event(event(3, 3))
    assert not book.synced and book.resyncs == 1


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("[]", "snapshot: must be an object"),
        ({"bids": [], "asks": []}, "lastUpdateId: must be a non-negative integer"),
        (snap(5) | {"bids": "x"}, "bids: must be a list"),
        (snap(5, asks=[("1", "-1")]), r"asks\[0\] quantity: must be at least 0"),
        (snap(2_000_000_001), "ids ahead of the stream"),
    ],
)
def test_hostile_snapshots_raise_a_clear_error_and_change_nothing(bad: Any, message: str) -> None:
    book = OrderBook()
    book.on_event(event(1, 1))
    with pytest.raises(OrderBookError, match=message):
        book.on_snapshot(bad)
    assert book.wants_snapshot and book.buffered == 1 and book.snapshots_stale == 0


def test_long_prices_whose_float_is_their_own_are_kept_apart() -> None:
    book = OrderBook()
    book.on_event(event(1, 1))
    long = "12345.6789012345"  # 16 characters, 15 significant digits: its float is its own
    assert book.on_snapshot(snap(1, asks=[(long, "1"), ("12345.6789012346", "2"), ("1E+5", "3")]))
    assert book.asks == [(D(long), D("1")), (D("12345.6789012346"), D("2")), (D("1E+5"), D("3"))]


def test_prices_are_exact_decimals_and_equal_strings_name_one_level() -> None:
    book = OrderBook()
    book.on_event(event(1, 1))
    assert book.on_snapshot(snap(1, bids=[("0.1", "1"), ("0.3", "2"), ("0.2", "0")]))
    book.on_event(event(2, 2, b=[("0.10", "4"), ("0.30000", "0")]))
    assert book.bids == [(D("0.1"), D("4"))]
    assert book.stats() == {
        "synced": True, "last_update_id": 2, "bids": 1, "asks": 0, "buffered": 0,
        "resyncs": 0, "snapshots_applied": 1, "snapshots_stale": 0, "events_applied": 1,
        "events_ignored": 0, "buffer_dropped": 0,
    }  # fmt: skip


# -- against a model ------------------------------------------------------------------------
PRICES = st.sampled_from([f"{p}.{d}" for p in range(1, 6) for d in (0, 5)])
QTYS = st.sampled_from(["0", "0.5", "1", "2.25", "3"])
CHANGES = st.lists(st.tuples(st.booleans(), PRICES, QTYS), min_size=1, max_size=4)


class BookVersusExchange(RuleBasedStateMachine):
    """The exchange: a dict book per update id; its diff events, some lost, some repeated;
    snapshots as of any update id, arriving late or out of order. Whenever the local book
    says it is synced it equals the exchange's book as of its ``last_update_id``."""

    @initialize(base=st.integers(0, 10**12))
    def start(self, base: int) -> None:
        self.book = OrderBook("x", max_buffered=6)
        self.head = base
        self.published = base
        self.delivered: list[dict[str, Any]] = []
        # update id -> (bids, asks) as of it; what changed in each update
        self.states: dict[int, tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]] = {
            base: ({}, {})
        }
        self.changed: dict[int, list[tuple[bool, str]]] = {}

    @rule(changes=CHANGES)
    def update(self, changes: list[tuple[bool, str, str]]) -> None:
        bids, asks = (dict(side) for side in self.states[self.head])
        for is_bid, price, qty in changes:
            side = bids if is_bid else asks
            if Decimal(qty) == 0:
                side.pop(Decimal(price), None)
            else:
                side[Decimal(price)] = Decimal(qty)
        self.head += 1
        self.states[self.head] = (bids, asks)
        self.changed[self.head] = [(is_bid, price) for is_bid, price, _ in changes]

    @rule(deliver=st.booleans())
    def publish(self, deliver: bool) -> None:
        """One diff event for the updates since the last one: the levels they touched, with
        the quantities as of its ``u`` (0 for a level gone)."""
        if self.head == self.published:
            return
        first, last = self.published + 1, self.head
        bids, asks = self.states[last]
        b: dict[str, str] = {}
        a: dict[str, str] = {}
        for update_id in range(first, last + 1):
            for is_bid, price in self.changed[update_id]:
                side, out = (bids, b) if is_bid else (asks, a)
                out[price] = str(side.get(Decimal(price), "0"))
        self.published = last
        if deliver:
            data = event(first, last, b=b.items(), a=a.items())
            self.delivered.append(data)
            self.book.on_event(data, size=100)

    @precondition(lambda self: bool(self.delivered))
    @rule(back=st.integers(1, 5))
    def repeat(self, back: int) -> None:
        self.book.on_event(self.delivered[-min(back, len(self.delivered))])

    @rule(age=st.integers(0, 8))
    def snapshot(self, age: int) -> None:
        at = max(min(self.states), self.head - age)
        bids, asks = self.states[at]
        wanted = self.book.wants_snapshot
        first = self.book._buffer[0].first if wanted else None
        ok = self.book.on_snapshot(
            snap(
                at,
                bids=((str(p), str(q)) for p, q in bids.items()),
                asks=((str(p), str(q)) for p, q in asks.items()),
            )
        )
        if wanted:
            assert first is not None
            # the procedure's step 3: usable exactly when not older than the stream
            assert ok is (at >= first), (at, first)
            assert self.book.synced is ok

    @rule()
    def resync(self) -> None:
        self.book.resync()

    @invariant()
    def synced_means_equal_to_the_exchange_at_its_update_id(self) -> None:
        book = self.book
        if not book.synced:
            assert book.last_update_id is None and book.bids == [] and book.asks == []
            return
        at = book.last_update_id
        assert at is not None and at <= self.head
        bids, asks = self.states[at]
        assert book.bids == sorted(bids.items(), reverse=True)
        assert book.asks == sorted(asks.items())
        assert book.best_bid == (book.bids[0] if book.bids else None)
        assert book.best_ask == (book.asks[0] if book.asks else None)


BookVersusExchange.TestCase.settings = settings(
    max_examples=100, stateful_step_count=50, deadline=None
)
test_the_book_equals_the_exchange_whenever_synced = BookVersusExchange.TestCase
