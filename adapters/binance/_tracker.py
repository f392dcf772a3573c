"""Event identity, de-duplication and gap detection for Binance market streams (pure).

Every market event the exchange sends carries something that orders it within its stream:

========================  ==========================  =====================================
payload                   identity (compared as a     sequence (gaps are detectable)
                          tuple, larger = newer)
========================  ==========================  =====================================
trade (``e=trade``)       ``t`` trade id              ``t``, +1 per trade
aggTrade                  ``a`` aggregate id          ``a``, +1 per aggregate
blockTrade                ``t`` block trade id        none (rare; ids not promised +1)
depthUpdate (diff depth)  ``u`` final update id       ``U`` = previous ``u`` + 1
kline                     ``k.t`` open time, ``E``    ``k.t``, +1 interval; a candle whose
                                                      closing update (``k.x``) never came
bookTicker (no ``e``)     ``u`` update id             none (ids shared across the book)
partial depth             ``lastUpdateId``            none
anything else with ``E``  ``E`` event time            none
========================  ==========================  =====================================

Diff depth (``<symbol>@depth`` every 1000 ms, ``<symbol>@depth@100ms``) is checked the way a
host keeping a local order book must: each event's first update id ``U`` must be the previous
event's final ``u`` + 1; a larger ``U`` is a gap (the book must be resynced from a snapshot).

``StreamTracker.accept`` is given each event that is about to reach the consumer, in order:
it says whether the event is new (identity above the last one delivered on its stream) and,
when a sequence jumped, the exact missing range as a :class:`Gap`. Two connections that carry
the same stream (a rotation's overlap) are merged through it without duplicates.

Id poisoning. A server (or anything between it and us) may send one id far ahead of the
stream's: taken at its word, it would swallow every genuine event after it as a duplicate.
So an identity more than :data:`RESET_IDS` ids (:data:`RESET_MS` ms for times) ahead of the
last one is a *sequence reset*: it is delivered, a :class:`Gap` with reason ``reset`` says so
(no events are counted missing), and the stream's tracking starts again at its next event.
Below that bound, events of a live connection that keep arriving older than the last one
delivered (:data:`STALE_RESET` in a row; never a rotation's overlap, which repeats on purpose)
mean the last one was the odd one out: the stream is reset onto the genuine ids (the first
``STALE_RESET - 1`` of them were dropped as duplicates, the rest are delivered).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import attrs

from ._validate import KLINE_INTERVALS_MS

__all__ = [
    "CONSUMER_OVERFLOW",
    "DUPLICATE",
    "RESET",
    "RESET_IDS",
    "RESET_MS",
    "SEQUENCE",
    "STALE_RESET",
    "Gap",
    "StreamTracker",
    "event_identity",
    "event_position",
    "kline_interval_ms",
]

#: Gap reasons: the exchange's sequence jumped (events never arrived), or the consumer's buffer
#: dropped events that did arrive (``drop_oldest``).
SEQUENCE = "sequence"
CONSUMER_OVERFLOW = "consumer_overflow"
#: ... or the stream's ids moved implausibly far (see the module doc): its sequence restarts.
RESET = "reset"

#: Ids (trade, aggregate, update ids) further ahead than this are a reset, not a gap: a billion
#: trades is more than a year of the busiest symbol's.
RESET_IDS: Final = 1_000_000_000
#: Times (event times, kline open times, in ms) further ahead than this are a reset: 400 days,
#: so a monthly kline stream's next candles are still gaps.
RESET_MS: Final = 400 * 86_400_000
#: Older-than-delivered events in a row on a live connection that reset the stream.
STALE_RESET: Final = 3

_TIME_FIELDS: Final = frozenset({"k.t", "E"})

Key = tuple[int, ...]


def kline_interval_ms(interval: str) -> int | None:
    """``"1m"`` -> 60000; months (``"1M"``) and intervals the exchange does not document
    (``"0m"``, ``"7m"``): None."""
    return KLINE_INTERVALS_MS.get(interval) if isinstance(interval, str) else None


@attrs.frozen
class Gap:
    """Events of ``stream`` that never arrived: ids ``first`` to ``last`` inclusive.

    ``field`` names the id: ``t`` (trade ids), ``a`` (aggregate ids), ``u`` (depth update ids)
    or ``k.t`` (kline open times in ms, one per missing candle; ``interval_ms`` apart).
    ``count`` is the number of missing trades, aggregates, updates or candles.

    ``reason`` is ``sequence`` (the exchange's ids jumped: the events never arrived),
    ``consumer_overflow`` (they arrived, and the consumer's buffer dropped them under
    ``drop_oldest``): then ``first``/``last`` are the positions (see :func:`event_position`)
    of the first and last event dropped and ``count`` the number of events dropped; or
    ``reset`` (the ids moved implausibly far, see the module doc): then ``first`` is the last
    id before and ``last`` the first id after the reset, and ``count`` is 0 (nothing is known
    to be missing; a host keeping state from the stream resyncs it).
    """

    stream: str
    field: str
    first: int
    last: int
    count: int
    at: float
    reason: str = SEQUENCE

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


#: What :meth:`StreamTracker.track` returns for an event already delivered (compare with ``is``).
DUPLICATE: Final = Gap("", "", 0, 0, 0, 0.0, "duplicate")


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def event_identity(data: Any) -> Key | None:
    """The identity of one payload (the ``data`` of a combined event), or None."""
    if not isinstance(data, dict):
        return None
    kind = data.get("e")
    if kind == "trade" or kind == "blockTrade":
        t = _int(data.get("t"))
        return None if t is None else (t,)
    if kind == "aggTrade":
        a = _int(data.get("a"))
        return None if a is None else (a,)
    if kind == "depthUpdate":
        u = _int(data.get("u"))
        return None if u is None else (u,)
    if kind == "kline":
        k = data.get("k")
        start = _int(k.get("t")) if isinstance(k, dict) else None
        at = _int(data.get("E"))
        return None if start is None or at is None else (start, at)
    if kind is None:
        u = _int(data.get("u"))
        if u is not None:  # bookTicker
            return (u,)
        last_update = _int(data.get("lastUpdateId"))
        if last_update is not None:  # partial book depth
            return (last_update,)
    at = _int(data.get("E"))
    return None if at is None else (at,)


def event_position(data: Any) -> tuple[str, int, int] | None:
    """``(field, first, last)``: where one payload sits in its stream (``first == last``
    except for a diff depth event, ``U`` to ``u``); None when it carries no id or time."""
    if not isinstance(data, dict):
        return None
    kind = data.get("e")
    if kind == "trade" or kind == "blockTrade":
        t = _int(data.get("t"))
        return None if t is None else ("t", t, t)
    if kind == "aggTrade":
        a = _int(data.get("a"))
        return None if a is None else ("a", a, a)
    if kind == "depthUpdate":
        first, last = _int(data.get("U")), _int(data.get("u"))
        return None if first is None or last is None else ("u", first, last)
    if kind == "kline":
        k = data.get("k")
        start = _int(k.get("t")) if isinstance(k, dict) else None
        return None if start is None else ("k.t", start, start)
    if kind is None:
        u = _int(data.get("u"))
        if u is not None:
            return ("u", u, u)
        last_update = _int(data.get("lastUpdateId"))
        if last_update is not None:
            return ("lastUpdateId", last_update, last_update)
    at = _int(data.get("E"))
    return None if at is None else ("E", at, at)


def _field(data: Any) -> str:
    where = event_position(data)
    return where[0] if where is not None else "E"


class StreamTracker:
    """Per stream: the last identity delivered and the last sequence id (see module doc).

    :meth:`track` is the per-event path (identity, de-duplication, gap check in one step);
    :meth:`is_new`, :meth:`accept` and :meth:`stale` are the same decision in parts (a
    rotation's merge, tests). ``tests/binance/test_binance_tracker.py`` checks the two agree.
    """

    def __init__(self) -> None:
        # the last identity per stream: a plain int for one-id identities (the common case:
        # the decoder's own int is kept, nothing is allocated per event), a tuple for klines
        self._last: dict[str, int | Key] = {}
        self._seq: dict[str, int] = {}  # the last sequence id (or kline open time)
        self._open: dict[str, bool] = {}  # klines: False once the last candle's close was seen
        self._stale: dict[str, int] = {}  # older events in a row, per stream (usually empty)

    def __len__(self) -> int:
        """Streams tracked."""
        return len(self._last.keys() | self._seq.keys())

    def forget(self, stream: str) -> None:
        """Drop what is known of ``stream`` (unsubscribed: nothing of it is kept)."""
        self._last.pop(stream, None)
        self._seq.pop(stream, None)
        self._open.pop(stream, None)
        self._stale.pop(stream, None)

    def last_identity(self, stream: str) -> Key | None:
        last = self._last.get(stream)
        return (last,) if type(last) is int else last  # type: ignore[return-value]

    def track(self, stream: str, data: Any, clock: Callable[[], float]) -> Gap | None:
        """One event of the primary connection, in one step: :data:`DUPLICATE` (drop it), None
        (new, in sequence) or the :class:`Gap` it reveals (deliver it and report the gap).
        Same outcome as ``is_new`` then ``accept`` or ``stale``, at the cost of a few dict
        lookups for trades, aggregates, diff depth and book tickers."""
        if type(data) is not dict:
            return self._general(stream, data, clock)
        kind = data.get("e")
        if kind == "aggTrade":
            ident = first = data.get("a")
            field = "a"
        elif kind == "trade":
            ident = first = data.get("t")
            field = "t"
        elif kind == "depthUpdate":
            ident, first = data.get("u"), data.get("U")
            field = "u"
        elif kind is None and "lastUpdateId" not in data:
            ident = first = data.get("u")  # bookTicker: no sequence
            field = ""
        else:
            return self._general(stream, data, clock)
        if type(ident) is not int or type(first) is not int or self._stale:
            return self._general(stream, data, clock)
        last = self._last.get(stream)
        if last is not None:
            before = last if type(last) is int else last[0]  # type: ignore[index]
            # (ident,) > last as tuples, without the tuple: equal first ids are never newer
            if ident <= before or ident - before > RESET_IDS:
                return self._general(stream, data, clock)
        self._last[stream] = ident
        if not field:
            return None
        seq = self._seq.get(stream)
        self._seq[stream] = ident
        if self._open:  # a kline stream's candle state ends where other events take over
            self._open.pop(stream, None)
        if seq is None or first <= seq + 1:
            return None
        return Gap(stream, field, seq + 1, first - 1, first - 1 - seq, clock())

    def _general(self, stream: str, data: Any, clock: Callable[[], float]) -> Gap | None:
        key = event_identity(data)
        if self.is_new(stream, key):
            return self.accept(stream, data, key, clock)
        gap = self.stale(stream, data, key, clock)
        return DUPLICATE if gap is None else gap

    def is_new(self, stream: str, key: Key | None) -> bool:
        """True when an event with identity ``key`` has not been delivered on ``stream``."""
        if key is None:
            return True
        last = self._last.get(stream)
        if last is None:
            return True
        return key > ((last,) if type(last) is int else last)  # type: ignore[operator]

    def accept(
        self, stream: str, data: Any, key: Key | None, clock: Callable[[], float]
    ) -> Gap | None:
        """Record a delivered event (call only when :meth:`is_new`); the gap it reveals,
        stamped with ``clock()`` (read only when there is a gap)."""
        if self._stale:
            self._stale.pop(stream, None)
        if key is not None:
            last = self._last.get(stream)
            if last is not None:
                before = last if type(last) is int else last[0]  # type: ignore[index]
                # the field is looked up only past the smaller bound
                if key[0] - before > RESET_IDS:
                    reset = self._reset_ahead(stream, data, before, key[0], clock)
                    if reset is not None:
                        return reset
            self._last[stream] = key[0] if len(key) == 1 else key
        if not isinstance(data, dict):
            return None
        kind = data.get("e")
        if kind == "trade":
            return self._step(stream, "t", _int(data.get("t")), None, clock)
        if kind == "aggTrade":
            return self._step(stream, "a", _int(data.get("a")), None, clock)
        if kind == "depthUpdate":
            return self._step(stream, "u", _int(data.get("U")), _int(data.get("u")), clock)
        if kind == "kline":
            return self._kline(stream, data, clock)
        return None

    def _reset_ahead(
        self, stream: str, data: Any, before: int, after: int, clock: Callable[[], float]
    ) -> Gap | None:
        field = _field(data)
        if field in _TIME_FIELDS and after - before <= RESET_MS:
            return None
        # Not taken as the new last identity: the stream starts again at its next event,
        # whichever it is (the genuine ids again, or this one's successors if it was real).
        self.forget(stream)
        return Gap(stream, field, before, after, 0, clock(), RESET)

    def stale(
        self, stream: str, data: Any, key: Key | None, clock: Callable[[], float]
    ) -> Gap | None:
        """An event of a live connection that is not new (:meth:`is_new` said so): None, a
        duplicate to drop; or, at the :data:`STALE_RESET`-th in a row, the reset that puts
        the stream back on these ids (the caller delivers the event)."""
        if key is None:
            return None
        count = self._stale.get(stream, 0) + 1
        if count < STALE_RESET:
            self._stale[stream] = count
            return None
        last = self.last_identity(stream)
        self._last.pop(stream, None)
        self._seq.pop(stream, None)
        self._open.pop(stream, None)
        self.accept(stream, data, key, clock)
        before = last[0] if last is not None else key[0]
        return Gap(stream, _field(data), before, key[0], 0, clock(), RESET)

    def _step(
        self,
        stream: str,
        field: str,
        first: int | None,
        last: int | None,
        clock: Callable[[], float],
    ) -> Gap | None:
        if first is None:
            return None
        last = first if last is None else last
        seq = self._seq.get(stream)
        self._seq[stream] = last
        self._open.pop(stream, None)
        if seq is None or first <= seq + 1:
            return None
        return Gap(stream, field, seq + 1, first - 1, first - 1 - seq, clock())

    def _kline(self, stream: str, data: dict[str, Any], clock: Callable[[], float]) -> Gap | None:
        k = data.get("k")
        if not isinstance(k, dict):
            return None
        start = _int(k.get("t"))
        interval = kline_interval_ms(str(k.get("i", "")))
        if start is None or interval is None:
            return None
        closed = k.get("x") is True
        seq = self._seq.get(stream)
        was_closed = not self._open.get(stream, False)
        self._seq[stream] = start
        self._open[stream] = not closed
        if seq is None or start <= seq:
            if seq is not None and start == seq:
                self._open[stream] = not (closed or was_closed)
            return None
        first = seq if not was_closed else seq + interval
        last = start - interval
        if first > last:
            return None
        return Gap(stream, "k.t", first, last, (last - first) // interval + 1, clock())
