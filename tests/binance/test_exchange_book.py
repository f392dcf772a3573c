"""The simulator's book: told again at any update id kept (``book_at``), and its diff depth
events carry exactly what changed: applied to the book as of any update they cover, they give
the book as of their last one."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.specs.exchange import MarketConfig
from regulator.specs.exchange._market import BOOK_LEVELS, Symbol


def market(seed: int, volatility: float = 4e-4) -> Symbol:
    cfg = MarketConfig(seed=seed, volatility=volatility)
    return Symbol("ethusdt", 3000.0, cfg, random.Random(seed))


def as_dict(rows: list[list[str]]) -> dict[str, str]:
    return {price: qty for price, qty in rows}


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    warmup=st.integers(1, 200),
    span=st.integers(1, 60),
    data=st.data(),
)
def test_a_diff_applied_to_the_book_at_any_update_it_covers_gives_the_book_now(
    seed: int, warmup: int, span: int, data: st.DataObject
) -> None:
    sym = market(seed, 2e-3)  # wide moves: the book jumps many ticks per trade
    for i in range(warmup):
        sym.step(1_000 + i)
    since = sym.update_id
    books = {since: sym.book(BOOK_LEVELS)}
    for i in range(span):
        sym.step(10_000 + i)
        books[sym.update_id] = sym.book(BOOK_LEVELS)
    # the history tells each of those books again
    for update_id, book in books.items():
        assert sym.book_at(update_id) == book
    bids, asks = sym.book_diff(since)
    at = data.draw(st.integers(since, sym.update_id), label="applied to the book at")
    local = [as_dict(side) for side in books[at]]
    for side, diff in zip(local, (bids, asks), strict=True):
        for price, qty in diff:
            if float(qty) == 0:
                side.pop(price, None)
            else:
                side[price] = qty
    assert local == [as_dict(side) for side in sym.book(BOOK_LEVELS)]


def test_a_diff_carries_only_the_levels_that_changed() -> None:
    sym = market(3, 1e-6)  # the price stays: only the quantities change
    sym.step(1_000)
    since = sym.update_id
    for i in range(10):
        sym.step(1_001 + i)
    bids, asks = sym.book_diff(since)
    assert all(float(qty) != 0 for _, qty in (*bids, *asks))  # no level left the book
    assert 0 < len(bids) + len(asks) < 2 * BOOK_LEVELS  # some changed in 10 updates, not all


def test_book_at_outside_the_history_is_a_lookup_error() -> None:
    sym = market(1)
    assert sym.book_at(sym.update_id) == sym.book(BOOK_LEVELS)  # before any trade: now
    sym.step(1_000)
    with pytest.raises(LookupError, match="not in the history kept"):
        sym.book_at(sym.update_id + 1)
    with pytest.raises(LookupError, match="not in the history kept"):
        sym.book_at(sym.update_id - 5)
    assert sym.book_at(sym.update_id, 5) == sym.book(5)
