"""Backfill: what an interruption lost comes back from REST, in order, exactly once.

How it works
------------
Every event reaches the consumer through the stream's :class:`~._tracker.StreamTracker`, which
reports the exact range a stream's ids (or kline open times) jumped over: after a reconnect,
a rotation that could not prove its overlap, a ``serverShutdown``, or ids that skipped on a
live connection. With backfill on, :meth:`Backfill.take` takes such a :class:`~._tracker.Gap`
(reason ``sequence``) of a stream REST can refill instead of reporting it:

===========================  ==========================================  ======  ==========
stream                       REST                                        weight  key
===========================  ==========================================  ======  ==========
``<s>@aggTrade``             ``/api/v3/aggTrades?fromId=``               4       ``a``
``<s>@kline_<i>[@+08:00]``   ``/api/v3/klines?startTime=&endTime=``      2       ``k.t``
``<s>@trade`` (an API key)   ``/api/v3/historicalTrades?fromId=``        25      ``t``
===========================  ==========================================  ======  ==========

From then on the stream is *held*: its live events (already de-duplicated and tracked) wait
in its queue behind the range, in order; other streams keep flowing. One task per held
stream (in the stream's task group) works the queue: it fetches the range page by page (at
most 1000 a request, paced by the :class:`~._rest.RestClient`'s weight budget), delivers each
missing event whose id is in the range and not yet delivered (ascending, so each at most
once), then the live events that waited, and releases the stream. A second gap while held
queues behind the first. Backfilled events have the live events' shape: the combined
``{"stream", "data"}`` envelope with the stream's own field names, plus ``"backfill": true``.

What is not refilled is reported as a :class:`Gap` (reason ``sequence``), exactly: ids the
REST history no longer has, or all of a range whose REST request failed (a
:class:`~._rest.RestError`: a ban, a 429 whose Retry-After is too long, a timeout), or whose
answer was malformed. The queue is bounded by ``max_bytes``: when the held live events
reach it, the backfill of that stream gives up (what is left of its ranges is reported as
gaps) and the held events are released; a producer finding the queue still full waits for
it to drain (as with ``overflow_policy="block"``).

Nothing here runs per live event: the stream checks one dict (:attr:`Backfill.held`, empty
but while a backfill runs) on its delivery path.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

from ...fsm import format_kv
from .._counts import copy_counts
from ._rest import RestClient, RestError
from ._tracker import SEQUENCE, Gap, kline_interval_ms

__all__ = ["MAX_PAGE", "Backfill", "backfill_source"]

#: Rows asked for in one REST request (the most the endpoints return).
MAX_PAGE = 1000


@attrs.frozen
class Source:
    """Where one stream's history is: endpoint, symbol, and the kline interval and zone."""

    kind: str  # "aggTrade", "trade", "kline"
    symbol: str  # upper case, as REST wants it
    interval: str = ""
    interval_ms: int = 0
    zone: str | None = None


def backfill_source(stream: str, *, api_key: bool) -> Source | None:
    """The REST source of ``stream``, or None when REST cannot refill it."""
    symbol, _, rest = stream.partition("@")
    if not symbol or symbol.startswith("!"):
        return None
    upper = symbol.upper()
    if rest == "aggTrade":
        return Source("aggTrade", upper)
    if rest == "trade":
        return Source("trade", upper) if api_key else None
    if rest.startswith("kline_"):
        interval, _, zone = rest[len("kline_") :].partition("@")
        ms = kline_interval_ms(interval)
        if ms is None or zone not in ("", "+08:00"):
            return None
        return Source("kline", upper, interval, ms, zone or None)
    return None


@attrs.define(eq=False)
class _Range:
    """Ids (or open times) ``next`` .. ``last`` still to refill; ``step`` apart."""

    field: str
    next: int
    last: int
    step: int

    def count(self) -> int:
        return (self.last - self.next) // self.step + 1


@attrs.define(eq=False)
class Held:
    """One held stream: its queue (ranges and live events, in order) and its bound."""

    items: deque[_Range | tuple[dict[str, Any], int]] = attrs.field(factory=deque)
    bytes: int = 0
    abandoned: bool = False
    scope: anyio.CancelScope | None = None
    drained: anyio.Event = attrs.field(factory=anyio.Event)


class Backfill:
    """Refills the gaps of a stream's REST-backed streams (see module doc).

    ``put(message, size)`` hands one event to the consumer (the stream's buffer, its
    overflow accounting); ``report_gap`` reports what could not be refilled;
    ``start_soon`` starts a task in the stream's task group (returns False when the stream
    is not running: the gap is then reported, not taken).
    """

    def __init__(
        self,
        rest: RestClient,
        *,
        put: Callable[[dict[str, Any], int], Awaitable[None]],
        report_gap: Callable[[Gap], None],
        start_soon: Callable[..., object],
        max_bytes: int,
        logger: logging.Logger,
        name: str,
    ) -> None:
        self.rest = rest
        self._put = put
        self._report_gap = report_gap
        self._start_soon = start_soon
        self.max_bytes = max_bytes
        self._log = logger
        self.name = name
        self._sources: dict[str, Source | None] = {}
        #: streams whose live events wait behind a backfill (empty but while one runs)
        self.held: dict[str, Held] = {}
        # counters
        self.backfilled: dict[str, int] = {}  # events delivered from REST, per stream
        self.ranges = 0  # gaps taken
        self.gaps = 0  # ranges (or parts) REST could not refill, reported as gaps
        self.events_missing = 0
        self.failures = 0  # REST requests that failed
        self.malformed = 0  # REST answers of the wrong shape
        self.abandoned = 0  # backfills given up for the queue's bound
        self.held_events = 0  # live events that waited behind a backfill

    # -- the stream's hooks -----------------------------------------------------------------
    def source(self, stream: str) -> Source | None:
        try:
            return self._sources[stream]
        except KeyError:
            found = self._sources[stream] = backfill_source(stream, api_key=self.rest.has_api_key)
            return found

    def forget(self, stream: str) -> None:
        self._sources.pop(stream, None)

    def take(self, gap: Gap) -> bool:
        """Refill ``gap`` (True), or leave it to be reported (False: not a sequence gap, or
        not a stream REST can refill)."""
        if gap.reason != SEQUENCE or gap.count <= 0:
            return False
        src = self.source(gap.stream)
        if src is None or gap.field != {"aggTrade": "a", "trade": "t", "kline": "k.t"}[src.kind]:
            return False
        step = src.interval_ms if src.kind == "kline" else 1
        held = self.held.get(gap.stream)
        if held is None:
            held = Held()
            # the worker starts at the next checkpoint; False: the stream is not running
            if self._start_soon(self._work, gap.stream, held) is False:
                return False
            self.held[gap.stream] = held
        held.items.append(_Range(gap.field, gap.first, gap.last, step))
        self.ranges += 1
        self._log.info(
            format_kv(
                event="backfill",
                name=self.name,
                phase="start",
                stream=gap.stream,
                field=gap.field,
                first=gap.first,
                last=gap.last,
                count=gap.count,
            )
        )
        return True

    async def hold(self, stream: str, message: dict[str, Any], size: int) -> None:
        """A live event of a held stream: it waits behind the backfill."""
        held = self.held[stream]
        held.items.append((message, size))
        held.bytes += size
        self.held_events += 1
        if held.bytes <= self.max_bytes:
            return
        if not held.abandoned:
            held.abandoned = True
            self.abandoned += 1
            self._log.warning(
                format_kv(event="backfill", name=self.name, phase="abandoned", stream=stream,
                          held_bytes=held.bytes, max_bytes=self.max_bytes)
            )  # fmt: skip
            if held.scope is not None:
                held.scope.cancel()
        while held.bytes > self.max_bytes and self.held.get(stream) is held:
            held.drained = anyio.Event()
            await held.drained.wait()

    # -- the worker -----------------------------------------------------------------------
    async def _work(self, stream: str, held: Held) -> None:
        src = self.source(stream)
        try:
            while held.items:
                item = held.items[0]
                if isinstance(item, _Range):
                    if not held.abandoned and src is not None:
                        with anyio.CancelScope() as held.scope:
                            await self._fill(stream, src, item)
                        held.scope = None
                    if item.next <= item.last:
                        self._unfilled(stream, item, item.last)
                    held.items.popleft()
                else:
                    held.items.popleft()
                    message, size = item
                    held.bytes -= size
                    await self._put(message, size)
                    held.drained.set()
        finally:
            # no await since the queue ran empty: the next live event is delivered directly
            if self.held.get(stream) is held:
                del self.held[stream]
            held.drained.set()

    async def _fill(self, stream: str, src: Source, item: _Range) -> None:
        while item.next <= item.last:
            try:
                rows = await self._page(src, item)
            except RestError as exc:
                self.failures += 1
                self._log.warning(
                    format_kv(event="backfill", name=self.name, phase="failed", stream=stream,
                              error=str(exc))
                )  # fmt: skip
                return
            progressed = False
            for row in rows if isinstance(rows, list) else [None]:
                data = _event(src, row)
                if data is None:
                    self.malformed += 1
                    self._log.warning(
                        format_kv(event="backfill", name=self.name, phase="malformed",
                                  stream=stream, row=str(row)[:200])
                    )  # fmt: skip
                    return
                key = data["k"]["t"] if src.kind == "kline" else data[item.field]
                if key < item.next:
                    continue  # delivered already (or before the range)
                if key > item.last:
                    break
                if (key - item.next) % item.step:
                    continue  # not on the interval's grid: not a candle of this stream
                if key > item.next:  # the history no longer has these
                    self._unfilled(stream, item, key - item.step)
                message = {"stream": stream, "data": data, "backfill": True}
                await self._put(message, _size(data))
                item.next = key + item.step
                self.backfilled[stream] = self.backfilled.get(stream, 0) + 1
                progressed = True
            if not progressed:
                return  # nothing more in the range: the rest is reported

    async def _page(self, src: Source, item: _Range) -> Any:
        limit = min(MAX_PAGE, item.count())
        if src.kind == "aggTrade":
            params: dict[str, Any] = {"symbol": src.symbol, "fromId": item.next, "limit": limit}
            return await self.rest.get("/api/v3/aggTrades", params)
        if src.kind == "trade":
            params = {"symbol": src.symbol, "fromId": item.next, "limit": limit}
            return await self.rest.get("/api/v3/historicalTrades", params)
        params = {
            "symbol": src.symbol,
            "interval": src.interval,
            "startTime": item.next,
            "endTime": item.last,
            "limit": limit,
            "timeZone": src.zone,
        }
        return await self.rest.get("/api/v3/klines", params)

    def _unfilled(self, stream: str, item: _Range, last: int) -> None:
        """Report ``item.next`` .. ``last`` as a gap REST did not refill."""
        count = (last - item.next) // item.step + 1
        if count <= 0:
            return
        gap = Gap(stream, item.field, item.next, last, count, anyio.current_time(), SEQUENCE)
        item.next = last + item.step
        self.gaps += 1
        self.events_missing += count
        self._report_gap(gap)

    def stats(self) -> dict[str, Any]:
        """The counters (safe to call from another thread)."""
        backfilled = copy_counts(self.backfilled)
        return {
            "backfilled": backfilled,
            "events_backfilled": sum(backfilled.values()),
            "ranges": self.ranges,
            "gaps": self.gaps,
            "events_missing": self.events_missing,
            "failures": self.failures,
            "malformed": self.malformed,
            "abandoned": self.abandoned,
            "held_events": self.held_events,
            "holding": len(self.held),
            "rest": self.rest.stats(),
        }


# -- the live events' shapes, from REST rows --------------------------------------------------
def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 64


def _event(src: Source, row: Any) -> dict[str, Any] | None:
    """The live event's payload for one REST row, or None when the row is malformed."""
    if src.kind == "aggTrade":
        if not isinstance(row, dict):
            return None
        a, f, last, at = (
            _int(row.get("a")),
            _int(row.get("f")),
            _int(row.get("l")),
            _int(row.get("T")),
        )
        if a is None or f is None or last is None or at is None:
            return None
        if not (_str(row.get("p")) and _str(row.get("q"))):
            return None
        return {"e": "aggTrade", "E": at, "s": src.symbol, "a": a, "p": row["p"],
                "q": row["q"], "f": f, "l": last, "T": at, "m": row.get("m") is True,
                "M": row.get("M") is True}  # fmt: skip
    if src.kind == "trade":
        if not isinstance(row, dict):
            return None
        t, at = _int(row.get("id")), _int(row.get("time"))
        if t is None or at is None or not (_str(row.get("price")) and _str(row.get("qty"))):
            return None
        return {"e": "trade", "E": at, "s": src.symbol, "t": t, "p": row["price"],
                "q": row["qty"], "T": at, "m": row.get("isBuyerMaker") is True,
                "M": row.get("isBestMatch") is True}  # fmt: skip
    if not isinstance(row, list) or len(row) < 11:
        return None
    start, end, n = _int(row[0]), _int(row[6]), _int(row[8])
    if start is None or end is None or n is None:
        return None
    if not all(_str(row[i]) for i in (1, 2, 3, 4, 5, 7, 9, 10)):
        return None
    return {
        "e": "kline", "E": end, "s": src.symbol,
        "k": {"t": start, "T": end, "s": src.symbol, "i": src.interval, "f": -1, "L": -1,
              "o": row[1], "c": row[4], "h": row[2], "l": row[3], "v": row[5], "n": n,
              "x": True, "q": row[7], "V": row[9], "Q": row[10], "B": "0"},
    }  # fmt: skip


def _size(data: dict[str, Any]) -> int:
    """The weight of one backfilled event in the consumer's buffer (its JSON's length, as a
    live event's raw message)."""
    return len(json.dumps(data, separators=(",", ":"))) + 40
