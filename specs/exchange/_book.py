"""The generated market's order book: where it lies, its levels, its diffs (a mixin of
``_market.Symbol``).

The book lies on the symbol's tick grid next to the last trade's price as published:
``BOOK_LEVELS`` bids below the middle tick and as many asks above it. A level's quantity is a
function of its tick and of the update id, changing once every 1 to 64 updates (by level), so
the book as of any update id whose trade is still kept can be told again (:meth:`book_at`,
what ``Exchange.book_at`` serves), and a diff carries only the levels that changed, as the
exchange's do (:meth:`book_diff`, what the ``depth`` streams publish).
"""

from __future__ import annotations

from typing import Any

__all__ = ["BOOK_LEVELS", "Book"]

#: The book's depth on each side.
BOOK_LEVELS = 20


class Book:
    """The order book of a ``Symbol``: it reads the symbol's ``trades``, ``price``, ``tick``
    and ``update_id``."""

    trades: list[Any]
    price: float
    tick: float
    update_id: int

    def mid(self, price: float | None = None) -> int:
        """The book's middle as a tick index: bids below it, asks above it. It follows the
        last trade's price as published, so the book as of any update id kept can be told
        again from the trades (:meth:`book_at`)."""
        if price is None:
            price = float(self.trades[-1].price) if self.trades else self.price
        return round(price / self.tick)

    def level(self, index: int, side: int, update_id: int | None = None) -> list[str]:
        """[price, qty] of the level at tick ``index`` (side 0 bids, 1 asks) as of update
        ``update_id`` (default now). A level's quantity changes once every ``period`` updates
        (1 to 64, by level): a diff carries only the levels that changed, as the exchange's do."""
        uid = self.update_id if update_id is None else update_id
        seed = uid // _period(index, side) * (7, 11)[side] + index * (13, 17)[side]
        return [f"{index * self.tick:.2f}", f"{0.1 + seed % 50 / 10:.4f}"]

    def book(self, levels: int) -> tuple[list[list[str]], list[list[str]]]:
        """The book: ``levels`` (at most BOOK_LEVELS) bids and asks on the symbol's tick grid,
        next to the price. The diff depth streams describe exactly its changes."""
        levels = min(levels, BOOK_LEVELS)
        m = self.mid()
        bids = [self.level(m - 1 - i, 0) for i in range(levels)]
        asks = [self.level(m + 1 + i, 1) for i in range(levels)]
        return bids, asks

    def book_at(self, update_id: int, levels: int = BOOK_LEVELS) -> tuple[list[list[str]], ...]:
        """The book as it was at update ``update_id`` (what a snapshot then returned): told
        again from the trade that made that update. ``LookupError`` when the id is ahead of
        the market or older than the trades kept."""
        back = self.update_id - update_id
        if back == 0:
            return self.book(levels)
        if back < 0 or back >= len(self.trades):
            raise LookupError(
                f"update {update_id}: not in the history kept"
                f" ({self.update_id - len(self.trades) + 1} to {self.update_id})"
            )
        levels = min(levels, BOOK_LEVELS)
        m = self.mid(float(self.trades[-1 - back].price))
        bids = [self.level(m - 1 - i, 0, update_id) for i in range(levels)]
        asks = [self.level(m + 1 + i, 1, update_id) for i in range(levels)]
        return bids, asks

    def book_diff(self, since: int) -> tuple[list[list[str]], list[list[str]]]:
        """Every level that changed after update ``since``: a level of the book now whose
        quantity changed, or that the book lacked at some update in between (the trades'
        prices say where the book was), with its quantity now; and quantity "0" for each
        level the book held at some update in between and no longer holds (at most
        ``BOOK_LEVELS`` per trade since). Applied to the book as of any update in between,
        it gives the book now."""
        n = self.update_id - since + 1  # the trades since, and the one that made `since`
        m = self.mid()
        mids = {self.mid(float(t.price)) for t in self.trades[-n:]} | {m}
        low, high = min(mids), max(mids)
        now = self.update_id
        # bid k is in the book at middle j when k + 1 <= j <= k + BOOK_LEVELS; ask k when
        # k - BOOK_LEVELS <= j <= k - 1: kept throughout when every middle since was so
        bids = [
            self.level(k, 0)
            for k in range(m - 1, m - 1 - BOOK_LEVELS, -1)
            if not (k + 1 <= low and high <= k + BOOK_LEVELS)
            or since // _period(k, 0) != now // _period(k, 0)
        ]
        asks = [
            self.level(k, 1)
            for k in range(m + 1, m + 1 + BOOK_LEVELS)
            if not (k - BOOK_LEVELS <= low and high <= k - 1)
            or since // _period(k, 1) != now // _period(k, 1)
        ]
        held_bids = {k for j in mids for k in range(j - BOOK_LEVELS, j)}
        held_asks = {k for j in mids for k in range(j + 1, j + 1 + BOOK_LEVELS)}
        held_bids.difference_update(range(m - BOOK_LEVELS, m))
        held_asks.difference_update(range(m + 1, m + 1 + BOOK_LEVELS))
        zero = "0.0000"
        bids += [[f"{k * self.tick:.2f}", zero] for k in sorted(held_bids, reverse=True)]
        asks += [[f"{k * self.tick:.2f}", zero] for k in sorted(held_asks)]
        return bids, asks


def _period(index: int, side: int) -> int:
    """Updates between two changes of the level at tick ``index`` on ``side``: 1 to 64."""
    return 1 + (index * 37 + side * 11) % 64
