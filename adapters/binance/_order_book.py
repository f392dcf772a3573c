"""A local order book kept from diff depth events and a REST snapshot (pure: no I/O, no clock).

How it works
------------
The exchange's documented procedure ("How to manage a local order book correctly"):

1. Buffer the diff depth events (``<symbol>@depth`` or ``<symbol>@depth@100ms``). Each one
   covers the book's updates ``U`` to ``u``; the next one starts at ``U`` = ``u`` + 1.
2. With at least one event buffered, fetch a snapshot (``GET /api/v3/depth``); its update id
   is ``lastUpdateId``.
3. If ``lastUpdateId`` is strictly below the first buffered event's ``U``, the snapshot is
   older than the stream: fetch another (:meth:`OrderBook.on_snapshot` returns False).
4. Drop the buffered events with ``u`` <= ``lastUpdateId``; the first one left must contain
   ``lastUpdateId + 1`` in ``[U; u]`` (the docs' step 5 says ``lastUpdateId`` itself, which an
   event that starts right after the snapshot, ``U = lastUpdateId + 1``, does not contain; their
   update procedure accepts that event, and so does this book).
5. The book is the snapshot; apply the events left, then every event that follows: one whose
   ``u`` is at or below the book's update id is ignored; one whose ``U`` is above the book's
   update id + 1 means updates were missed: the book is discarded (unsynced) and the procedure
   starts again from step 1, with that event as the first buffered. A level's quantity is
   set; quantity 0 removes it.

The book is driven by two inputs, :meth:`OrderBook.on_event` and :meth:`OrderBook.on_snapshot`
(plus :meth:`OrderBook.resync` when its owner knows the stream broke); the owner fetches a
snapshot while :attr:`OrderBook.wants_snapshot`. Nothing here waits or reads a clock.

Hostile input. Each input is validated whole before anything changes (an illegal one raises
:class:`OrderBookError`, naming the field, the rule and the value, and never half-applies):
ids are non-negative integers with ``U`` <= ``u`` and a span below :data:`MAX_SPAN`; levels are
``[price, quantity]`` pairs of decimal strings (at most :data:`MAX_NUMBER_CHARS` characters),
finite, price above 0 (at most 15 significant digits, or one its float tells apart), quantity
at least 0. A rejected event is lost, so the next one leaves a
gap in the ids and the book resyncs: one bad message never stops the book for good. The buffer
of events waiting for a snapshot is bounded by count and by bytes (the oldest go first; a
snapshot older than what is left is refetched, step 3).

Prices and quantities are :class:`decimal.Decimal` (exactly the exchange's strings). Each side
is a dict keyed by the price's float (a Decimal's hash costs ~0.8 us; a price whose float is
not its own is refused, see ``_levels``) and a sorted list of those keys (``bisect``): a change
costs a dict write, and a list insert or delete only when a level appears or goes; the best
of each side is read in O(1).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = [
    "MAX_NUMBER_CHARS",
    "MAX_SPAN",
    "OrderBook",
    "OrderBookError",
]

#: The longest price or quantity string accepted (the exchange sends at most ~20).
MAX_NUMBER_CHARS: Final = 64
#: The most update ids one event or a snapshot's jump may cover: a billion updates is more than
#: a year of the busiest symbol's; an event claiming more would poison the ids (every genuine
#: event after it ignored as old).
MAX_SPAN: Final = 1_000_000_000

Level = tuple[Decimal, Decimal]
#: A parsed level: the price as a float (the key: hashed and compared many times faster than
#: a Decimal, and one to one with the prices accepted, see _levels), the price, the quantity.
Parsed = tuple[float, Decimal, Decimal]
_ZERO: Final = Decimal(0)


class OrderBookError(ValueError):
    """A depth event or snapshot that breaks a rule; the book is left as it was."""


def _int(value: Any, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise OrderBookError(f"{field}: must be a non-negative integer (got {_show(value)})")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _number(value: Any, field: str) -> Decimal:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_NUMBER_CHARS:
        raise OrderBookError(
            f"{field}: must be a decimal string of 1 to {MAX_NUMBER_CHARS} characters"
            f" (got {_show(value)})"
        )
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise OrderBookError(f"{field}: not a decimal number (got {_show(value)})") from None
    if not number.is_finite():
        raise OrderBookError(f"{field}: must be finite (got {_show(value)})")
    return number


def _levels(value: Any, field: str) -> list[Parsed]:
    """The ``[price, quantity]`` pairs of ``value``, parsed; the first bad one raises.

    One pass with the checks inlined (this runs per level of every depth event); any doubt
    goes to :func:`_explain`, which names the pair, the field and the rule. A price's float is
    its key: a decimal of at most 15 characters (so at most 15 significant digits) between
    1e-300 and 1e300 has a float of its own; any other price must come back from its float's
    shortest form (``repr``) as the same decimal, or it is refused."""
    if type(value) is not list:
        return _explain(value, field)
    out: list[Parsed] = []
    append = out.append
    for pair in value:
        try:
            if type(pair) is not list or len(pair) != 2:
                return _explain(value, field)
            p, q = pair
            if (
                type(p) is not str
                or type(q) is not str
                or not 0 < len(p) <= MAX_NUMBER_CHARS
                or not 0 < len(q) <= MAX_NUMBER_CHARS
            ):
                return _explain(value, field)
            price, qty = Decimal(p), Decimal(q)
            # NaN compares with an InvalidOperation; infinities are caught by is_finite
            if not (price > _ZERO and qty >= _ZERO and price.is_finite() and qty.is_finite()):
                return _explain(value, field)
            key = float(p)
            if not (len(p) <= 15 and 1e-300 < key < 1e300) and Decimal(repr(key)) != price:
                return _explain(value, field)
        except (InvalidOperation, ValueError, TypeError):
            return _explain(value, field)
        append((key, price, qty))
    return out


def _explain(value: Any, field: str) -> list[Parsed]:
    """Check ``value`` pair by pair, raising :class:`OrderBookError` for the first bad one."""
    if not isinstance(value, list):
        raise OrderBookError(f"{field}: must be a list of [price, quantity] (got {_show(value)})")
    out: list[Parsed] = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            raise OrderBookError(
                f"{field}[{i}]: must be a [price, quantity] pair (got {_show(pair)})"
            )
        price = _number(pair[0], f"{field}[{i}] price")
        qty = _number(pair[1], f"{field}[{i}] quantity")
        if price <= 0:
            raise OrderBookError(f"{field}[{i}] price: must be above 0 (got {pair[0]!r})")
        if qty < 0:
            raise OrderBookError(f"{field}[{i}] quantity: must be at least 0 (got {pair[1]!r})")
        key = float(price)
        if not (len(pair[0]) <= 15 and 1e-300 < key < 1e300) and Decimal(repr(key)) != price:
            raise OrderBookError(
                f"{field}[{i}] price: more than 15 significant digits, or beyond 1e-300 to"
                f" 1e300 (got {_show(pair[0])})"
            )
        out.append((key, price, qty))
    return out  # pragma: no cover - reached only if the fast path doubted a valid list


class _Side:
    """One side: price key -> (price, quantity), and the keys in ascending order."""

    __slots__ = ("keys", "levels")

    def __init__(self) -> None:
        self.levels: dict[float, Level] = {}
        self.keys: list[float] = []

    def set(self, key: float, price: Decimal, qty: Decimal) -> None:
        levels = self.levels
        if not qty:  # quantity 0: the level goes
            if levels.pop(key, None) is not None:
                keys = self.keys
                del keys[bisect_left(keys, key)]
        else:
            if key not in levels:
                keys = self.keys
                keys.insert(bisect_left(keys, key), key)
            levels[key] = (price, qty)

    def load(self, parsed: list[Parsed]) -> None:
        self.levels = {key: (price, qty) for key, price, qty in parsed if qty}
        self.keys = sorted(self.levels)

    def clear(self) -> None:
        self.levels = {}
        self.keys = []


class _Pending:
    """A buffered event, validated on arrival."""

    __slots__ = ("asks", "bids", "first", "last", "size")

    def __init__(self, first: int, last: int, bids: list[Parsed], asks: list[Parsed], size: int):
        self.first, self.last, self.bids, self.asks, self.size = first, last, bids, asks, size


class OrderBook:
    """One symbol's local order book (see the module doc for the procedure).

    Args:
        symbol: a label (``"ethusdt"``), for errors and stats.
        max_buffered: the most events buffered while waiting for a snapshot.
        max_buffered_bytes: the most bytes of them (the sizes :meth:`on_event` is given).

    Read it with :attr:`synced`, :attr:`last_update_id`, :attr:`bids` (best first: highest
    price), :attr:`asks` (best first: lowest price), :attr:`best_bid`, :attr:`best_ask`.
    While it is not synced the sides are empty and :attr:`last_update_id` is None: a book
    that missed updates is never shown as if it were whole.
    """

    def __init__(
        self,
        symbol: str = "",
        *,
        max_buffered: int = 10_000,
        max_buffered_bytes: int = 16 << 20,
    ) -> None:
        if not isinstance(max_buffered, int) or max_buffered < 1:
            raise ValueError(f"max_buffered: must be an integer >= 1 (got {max_buffered!r})")
        if not isinstance(max_buffered_bytes, int) or max_buffered_bytes < 1:
            raise ValueError(
                f"max_buffered_bytes: must be an integer >= 1 (got {max_buffered_bytes!r})"
            )
        self.symbol = symbol
        self.max_buffered = max_buffered
        self.max_buffered_bytes = max_buffered_bytes
        self._bids = _Side()
        self._asks = _Side()
        self._synced = False
        self._last = -1  # the book's update id while synced
        self._buffer: deque[_Pending] = deque()
        self._buffered_bytes = 0
        # plain counters
        #: times a synced book was discarded (a gap in the ids, or :meth:`resync`)
        self.resyncs = 0
        #: snapshots the book was set to, and snapshots refused as older than the stream
        self.snapshots_applied = 0
        self.snapshots_stale = 0
        #: events applied to a synced book (buffered ones included, when applied)
        self.events_applied = 0
        #: events ignored as already contained in the book (``u`` <= its update id)
        self.events_ignored = 0
        #: buffered events dropped: for the bounds, or before a gap inside the buffer
        self.buffer_dropped = 0

    # -- reading --------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """True while the book is the exchange's book as of :attr:`last_update_id`."""
        return self._synced

    @property
    def last_update_id(self) -> int | None:
        """The update id the book is as of; None while not synced."""
        return self._last if self._synced else None

    @property
    def wants_snapshot(self) -> bool:
        """Not synced and events buffered: a snapshot fetched now can sync the book."""
        return not self._synced and bool(self._buffer)

    @property
    def buffered(self) -> int:
        """Events buffered, waiting for a snapshot."""
        return len(self._buffer)

    @property
    def bids(self) -> list[Level]:
        """``(price, quantity)`` of every bid, highest price first."""
        levels = self._bids.levels
        return [levels[key] for key in reversed(self._bids.keys)]

    @property
    def asks(self) -> list[Level]:
        """``(price, quantity)`` of every ask, lowest price first."""
        levels = self._asks.levels
        return [levels[key] for key in self._asks.keys]

    @property
    def best_bid(self) -> Level | None:
        keys = self._bids.keys
        return self._bids.levels[keys[-1]] if keys else None

    @property
    def best_ask(self) -> Level | None:
        keys = self._asks.keys
        return self._asks.levels[keys[0]] if keys else None

    def stats(self) -> dict[str, Any]:
        return {
            "synced": self._synced,
            "last_update_id": self.last_update_id,
            "bids": len(self._bids.keys),
            "asks": len(self._asks.keys),
            "buffered": len(self._buffer),
            "resyncs": self.resyncs,
            "snapshots_applied": self.snapshots_applied,
            "snapshots_stale": self.snapshots_stale,
            "events_applied": self.events_applied,
            "events_ignored": self.events_ignored,
            "buffer_dropped": self.buffer_dropped,
        }

    # -- inputs ---------------------------------------------------------------------------
    def on_event(self, data: Mapping[str, Any], size: int = 0) -> None:
        """One diff depth event (the ``data`` of a ``depthUpdate``), ``size`` its raw bytes.

        Raises :class:`OrderBookError` (nothing changed) when it breaks a rule."""
        if not isinstance(data, Mapping):
            raise OrderBookError(f"event: must be an object (got {_show(data)})")
        first = _int(data.get("U"), "U")
        last = _int(data.get("u"), "u")
        if first > last:
            raise OrderBookError(f"U: must be at most u (got U={first}, u={last})")
        if last - first >= MAX_SPAN:
            raise OrderBookError(
                f"u: an event covers fewer than {MAX_SPAN} updates (got U={first}, u={last})"
            )
        if self._synced:
            book = self._last
            if last <= book:
                self.events_ignored += 1
                return
            if first <= book + 1:
                bids = _levels(data.get("b"), "b")
                asks = _levels(data.get("a"), "a")
                self._apply(bids, asks, last)
                return
        bids = _levels(data.get("b"), "b")
        asks = _levels(data.get("a"), "a")
        if self._synced:  # updates were missed: discard the book, start again with this one
            self._unsync()
        self._buffer_event(_Pending(first, last, bids, asks, max(0, int(size))))

    def on_snapshot(self, data: Mapping[str, Any]) -> bool:
        """A snapshot (the answer of ``GET /api/v3/depth``). True when the book is synced
        after it (or already was); False when it cannot be used: older than the first
        buffered event, or nothing buffered to check it against. Fetch another while
        :attr:`wants_snapshot`.

        Raises :class:`OrderBookError` (nothing changed) when it breaks a rule."""
        if not isinstance(data, Mapping):
            raise OrderBookError(f"snapshot: must be an object (got {_show(data)})")
        snapshot_id = _int(data.get("lastUpdateId"), "lastUpdateId")
        bids = _levels(data.get("bids"), "bids")
        asks = _levels(data.get("asks"), "asks")
        if self._synced:
            return True
        buffer = self._buffer
        if not buffer or snapshot_id < buffer[0].first:
            self.snapshots_stale += 1
            return False
        if snapshot_id - buffer[0].first >= MAX_SPAN:
            raise OrderBookError(
                f"lastUpdateId: {snapshot_id - buffer[0].first} ids ahead of the stream"
                f" (at most {MAX_SPAN})"
            )
        while buffer and buffer[0].last <= snapshot_id:
            self._buffered_bytes -= buffer.popleft().size
        if buffer and not buffer[0].first <= snapshot_id + 1 <= buffer[0].last:
            # cannot happen with a contiguous buffer and the check above; a guard, not a rule
            self.snapshots_stale += 1
            return False
        self._bids.load(bids)
        self._asks.load(asks)
        self._last = snapshot_id
        self._synced = True
        self.snapshots_applied += 1
        while buffer:
            event = buffer.popleft()
            self._apply(event.bids, event.asks, event.last)
        self._buffered_bytes = 0
        return True

    def resync(self) -> None:
        """Discard the book and what is buffered (the owner knows the stream broke: its
        ids were reset); the book syncs again from the next event and a snapshot."""
        if self._synced:
            self._unsync()
        else:
            self.buffer_dropped += len(self._buffer)
            self._buffer.clear()
            self._buffered_bytes = 0

    # -- inside ---------------------------------------------------------------------------
    def _apply(self, bids: Sequence[Parsed], asks: Sequence[Parsed], last: int) -> None:
        side = self._bids
        for key, price, qty in bids:
            side.set(key, price, qty)
        side = self._asks
        for key, price, qty in asks:
            side.set(key, price, qty)
        self._last = last
        self.events_applied += 1

    def _unsync(self) -> None:
        self._synced = False
        self._last = -1
        self._bids.clear()
        self._asks.clear()
        self.resyncs += 1

    def _buffer_event(self, event: _Pending) -> None:
        buffer = self._buffer
        if buffer:
            tail = buffer[-1].last
            if event.last <= tail:  # already buffered (a repeat): nothing new
                self.events_ignored += 1
                return
            if event.first > tail + 1:  # a gap inside the buffer: what came before is useless
                self.buffer_dropped += len(buffer)
                buffer.clear()
                self._buffered_bytes = 0
        buffer.append(event)
        self._buffered_bytes += event.size
        while len(buffer) > 1 and (
            len(buffer) > self.max_buffered or self._buffered_bytes > self.max_buffered_bytes
        ):
            self._buffered_bytes -= buffer.popleft().size
            self.buffer_dropped += 1
