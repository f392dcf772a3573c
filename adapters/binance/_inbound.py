"""``Inbound``: what a ``BinanceStream``'s connections read, from the socket to the consumer.

How it works
------------
Each leg's reader task hands every read (one or more messages) to :meth:`Inbound._on_batch`.

* **Per event** (``_on_batch``): one decode (``_decode``: orjson or msgspec when installed,
  else ``json``; the same outcomes), a few dict lookups and one tracker step
  (``StreamTracker.track``: identity, de-duplication and gap check together); the events of
  one read enter the consumer buffer in one call. The locals the loop needs are bound once per
  read. Only a combined event of a subscribed stream on the delivering connection takes this
  inline path; anything else (replies, klines, shutdowns, a rotation's new leg, odd shapes)
  goes through ``_other``. The machines' ``send()`` is never on that path.
* **Gaps.** Events reach the consumer through the tracker, which reports jumps in trade,
  aggregate, depth-update ids (``U`` must follow the previous ``u``) and kline open times as
  :class:`Gap` (callback, counter, log). Events the consumer's buffer drops (``drop_oldest``)
  are reported the same way, with reason ``consumer_overflow``: nothing is lost silently. Ids
  that move implausibly far are a sequence reset (reason ``reset``), never a poisoned stream.
* **Backfill** (``_backfill.py``, ``backfill=True``): a sequence gap of an ``aggTrade``,
  ``kline_<i>`` or (with an API key) ``trade`` stream is refilled from REST
  (``_rest.RestClient``) instead of reported; that stream's live events wait behind it, a
  check of one dict (empty but while a refill runs) on the delivery path.
* **Order books** (``_book_keeper.py``): a symbol's diff depth events also go to its local
  :class:`OrderBook` (one dict check per event, empty unless a book was asked for).
* **Hostile input.** One message never ends the stream: whatever decoding or validating it
  raises (deep JSON nesting, a kline interval the exchange does not document, a reply of the
  wrong shape) makes it *malformed*: counted, logged (at most ``LogLimiter.burst`` lines per
  ``period``), dropped. Events of streams not subscribed are dropped and counted, never
  tracked, so a server cannot grow our memory by naming streams.
* **Rotation** (``_rotation.py``): a rotation's new leg holds its events here until the
  switch; ``_deliver`` merges them in. A ``serverShutdown`` requests a rotation.

``Inbound`` is a mixin of ``BinanceStream`` (on :class:`Rotation`): it uses the stream's
buffer, tracker, counters and helpers, declared below, and keeps nothing of its own.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ...fsm import format_kv
from ..websocket._buffer import MessageBuffer
from ._backfill import Backfill
from ._book_keeper import BookKeeper
from ._decode import IDS_ONLY, loads
from ._leg import Leg
from ._requests import Requests, error_of, is_reply
from ._rotation import Rotation
from ._tracker import (
    CONSUMER_OVERFLOW,
    DUPLICATE,
    RESET,
    Gap,
    event_identity,
    event_position,
)
from ._validate import LogLimiter, kline_problem, short

__all__ = ["Inbound"]


class Inbound(Rotation):
    # provided by BinanceStream
    on_gap: Callable[[Gap], Any] | None
    events_delivered: int
    duplicates_dropped: int
    malformed: int
    unsubscribed_dropped: int
    sequence_resets: int
    gaps_detected: int
    gap_events_missing: int
    gap_callback_failures: int
    overflow_gaps: int
    server_shutdowns: int
    recent_gaps: deque[Gap]
    _events: MessageBuffer[dict[str, Any]]
    _loads: Callable[[str | bytes], Any]
    _raw: bool
    _tg: TaskGroup | None
    _requests: Requests
    _backfill: Backfill | None
    _books: BookKeeper
    _held: dict[str, Any]
    _book_streams: dict[str, Any]
    _overflow: dict[str, list[Any]]
    _malformed_log: LogLimiter
    _unsubscribed_log: LogLimiter
    _error_log: LogLimiter
    _log: logging.Logger

    async def _on_raw(self, leg: Leg, raw: str | bytes) -> None:
        """One message (as :meth:`_on_batch`)."""
        await self._on_batch(leg, [raw])

    async def _on_batch(self, leg: Leg, raws: list[str | bytes]) -> None:
        # The per-event path, once per read: the messages of one read are decoded, checked,
        # tracked (identity, de-duplication and gap in one step, ``StreamTracker.track``) and
        # then enter the consumer buffer in one call. Only a combined event of a subscribed
        # stream on the delivering connection takes the inline path; anything else (replies,
        # klines, shutdowns, a rotation's new leg, odd shapes) goes through ``_other``.
        # One message never ends the stream: whatever decoding, validating or tracking it
        # raises (RecursionError from deep nesting, an overflow, a shape nobody checked)
        # makes it malformed. Cancellation is a BaseException and passes.
        out: list[dict[str, Any]] = []
        sizes: list[int] = []
        delivering = leg is self._primary and not leg.rotating_in
        loads = self._loads
        json_loads = json.loads
        wanted = self._wanted
        track = self._tracker.track
        clock = anyio.current_time
        held = self._held  # empty but while a backfill runs: one check per event
        books = self._book_streams  # empty unless order_book() named a symbol
        raw_mode = self._raw
        for raw in raws:
            try:
                try:
                    try:
                        message = loads(raw)
                    except Exception:  # refused: json's value, or json's error (``_decode``)
                        message = json_loads(raw)
                except ValueError as exc:
                    self._malformed(leg, None, f"not JSON: {exc}")
                    continue
                if delivering and type(message) is dict:
                    stream = message.get("stream")
                    data = message.get("data")
                    if type(data) is dict and type(stream) is str and stream in wanted:
                        kind = data.get("e")
                        if kind != "kline" and kind != "serverShutdown":
                            gap = track(stream, data, clock)
                            if gap is not None:
                                if gap is DUPLICATE:
                                    self.duplicates_dropped += 1
                                    continue
                                await self._on_gap(gap, out, sizes)
                            if raw_mode:
                                _keep_raw(message, data, raw)
                            if books and stream in books:  # a local order book's depth
                                self._book_event(stream, message, data, len(raw))
                            if held and stream in held:  # behind its backfill (_backfill.py)
                                await self._hold(stream, message, len(raw), out, sizes)
                                continue
                            out.append(message)
                            sizes.append(len(raw))
                            continue
                await self._other(leg, raw, message, out, sizes)
            except Exception as exc:
                self._malformed(leg, None, f"{type(exc).__name__}: {exc}")
        if out:
            await self._flush(out, sizes)

    async def _flush(self, out: list[dict[str, Any]], sizes: list[int]) -> None:
        """What a read delivered so far, to the consumer (emptied: the read goes on)."""
        self.events_delivered += len(out)
        await self._hand_over(out, sizes)
        out.clear()
        sizes.clear()

    async def _on_gap(self, gap: Gap, out: list[dict[str, Any]], sizes: list[int]) -> None:
        """A sequence gap: refilled from REST when the backfill takes it, else reported. The
        read's earlier events go first, so none of the stream's can land behind its refill."""
        backfill = self._backfill
        if backfill is None:
            self._report_gap(gap)
            return
        if out:
            await self._flush(out, sizes)
        if not backfill.take(gap):
            self._report_gap(gap)

    async def _hold(
        self,
        stream: str,
        message: dict[str, Any],
        size: int,
        out: list[dict[str, Any]],
        sizes: list[int],
    ) -> None:
        """A live event of a stream being refilled: it waits behind the refill; the read's
        earlier events (other streams') go first, in order."""
        assert self._backfill is not None
        if out:
            await self._flush(out, sizes)
        await self._backfill.hold(stream, message, size)

    async def _other(
        self,
        leg: Leg,
        raw: str | bytes,
        message: Any,
        out: list[dict[str, Any]],
        sizes: list[int],
    ) -> None:
        """Everything but the inline path: checked in full, delivered into ``out``."""
        if self._raw and type(message) is dict and "stream" not in message:
            message = loads(raw)  # not a combined event (a reply, an error): all of it
        if not isinstance(message, dict):
            self._malformed(leg, None, f"a JSON {type(message).__name__}, not an object")
            return
        stream = message.get("stream")
        data = message.get("data")
        if stream is not None:
            if not isinstance(stream, str) or not isinstance(data, dict | list):
                self._malformed(leg, stream, "a combined event needs a string stream and data")
                return
            # the combined form names the stream "!serverShutdown"; its data may vary
            if stream == "!serverShutdown" or (
                isinstance(data, dict) and data.get("e") == "serverShutdown"
            ):
                self._server_shutdown(leg)
                return
            if stream not in self._wanted:  # never tracked: a server cannot grow our memory
                self._unsubscribed(leg, stream)
                return
            if type(data) is dict and data.get("e") == "kline":
                problem = kline_problem(data)
                if problem is not None:
                    self._malformed(leg, stream, problem)
                    return
            await self._on_event(leg, stream, message, data, raw, out, sizes)
        elif is_reply(message) and message.get("id") is not None:
            problem = self._requests.settle(leg, message)
            if problem is not None:
                self._malformed(leg, None, problem)
        elif message.get("e") == "serverShutdown":
            self._server_shutdown(leg)
        elif (error := error_of(message)) is not None:
            self._requests.errors += 1  # an error frame that names no request
            held = self._error_log.allow()
            if held is not None:
                extra = {"suppressed": held} if held else {}
                self._log.error(
                    format_kv(
                        event="request_error",
                        name=self.name,
                        code=error[0],
                        msg=error[1],
                        **extra,
                    )
                )
        else:
            self._malformed(leg, None, "not a known message shape")

    def _malformed(self, leg: Leg, stream: Any, why: str) -> None:
        self.malformed += 1
        held = self._malformed_log.allow()
        if held is None:
            return
        fields: dict[str, Any] = {"stream": short(str(stream)) if stream is not None else None}
        if held:
            fields["suppressed"] = held
        self._log.warning(
            format_kv(event="malformed", name=leg.ws.name, **fields, error=short(why))
        )

    def _unsubscribed(self, leg: Leg, stream: str) -> None:
        self.unsubscribed_dropped += 1
        held = self._unsubscribed_log.allow()
        if held is None:
            return
        extra = {"suppressed": held} if held else {}
        self._log.warning(
            format_kv(event="unsubscribed_event", name=leg.ws.name, stream=short(stream), **extra)
        )

    async def _on_event(
        self,
        leg: Leg,
        stream: str,
        message: dict[str, Any],
        data: Any,
        raw: str | bytes,
        out: list[dict[str, Any]],
        sizes: list[int],
    ) -> None:
        size = len(raw)
        if self._raw:
            _keep_raw(message, data, raw)
        if leg is self._primary and not leg.rotating_in:
            gap = self._tracker.track(stream, data, anyio.current_time)
            if gap is DUPLICATE:
                self.duplicates_dropped += 1
                return
            if gap is not None:
                await self._on_gap(gap, out, sizes)
            if self._book_streams and stream in self._book_streams:
                self._book_event(stream, message, data, size)
            if self._held and stream in self._held:
                await self._hold(stream, message, size, out, sizes)
                return
            out.append(message)
            sizes.append(size)
        elif leg.rotating_in:  # held until the switch (bounded: _rotate switches at HOLD_LIMIT)
            key = event_identity(data)
            leg.held.append((stream, message, key, size))
            leg.first_held.setdefault(stream, key)
        # else: a retired leg's last messages; the new primary carries them

    async def _hand_over(self, out: list[dict[str, Any]], sizes: list[int]) -> None:
        """Into the consumer buffer: a read's events in one call when they fit, else one by
        one under the overflow policy (drops reported as gaps)."""
        events = self._events
        if events.offer_weighed(out, sizes):
            return
        for message, size in zip(out, sizes, strict=True):
            dropped = await events.put(message, size)
            if dropped is not None:
                self._overflowed(dropped)

    async def _deliver(
        self,
        stream: str,
        message: dict[str, Any],
        data: Any,
        key: Any,
        size: int,
        *,
        merging: bool = False,
    ) -> None:
        """One held event of a rotation's new connection, merged in (see ``_rotation``)."""
        tracker = self._tracker
        if not tracker.is_new(stream, key):
            # a rotation's overlap is expected to repeat; a live connection repeating on and
            # on means the last identity was the odd one out (a reset, see _tracker)
            gap = None if merging else tracker.stale(stream, data, key, anyio.current_time)
            if gap is None:
                self.duplicates_dropped += 1
                return
        else:
            gap = tracker.accept(stream, data, key, anyio.current_time)
        if gap is not None:  # refilled or reported, as on the live path (no read's batch here)
            await self._on_gap(gap, [], [])
        if self._book_streams and stream in self._book_streams:  # a local order book
            self._book_event(stream, message, data, size)
        if self._held and stream in self._held:  # waits behind its backfill (_backfill.py)
            assert self._backfill is not None
            await self._backfill.hold(stream, message, size)
            return
        await self._put_one(message, size)

    def _book_event(self, stream: str, message: dict[str, Any], data: Any, size: int) -> None:
        """A diff depth event to its local order book (raw=True: only the ids were decoded,
        so the message is decoded in full for the book's levels)."""
        self._books.on_event(stream, loads(message["raw"])["data"] if self._raw else data, size)

    async def _put_backfilled(self, message: dict[str, Any], size: int) -> None:
        """raw=True: a backfilled event's ``raw`` is its live-shaped JSON (REST's answer is
        another shape); a live event that waited behind the backfill has its own."""
        if "raw" not in message:
            message["raw"] = json.dumps(message, separators=(",", ":"))
        await self._put_one(message, size)

    async def _put_one(self, message: dict[str, Any], size: int) -> None:
        """One event to the consumer under the overflow policy: a merged one, a backfilled
        one, or a live one that waited behind a backfill."""
        self.events_delivered += 1
        dropped = await self._events.put(message, size)
        if dropped is not None:
            self._overflowed(dropped)

    def _overflowed(self, message: dict[str, Any]) -> None:
        """The consumer buffer dropped ``message``: remember it for the next gap report."""
        stream = str(message.get("stream"))
        where = event_position(message.get("data"))
        field, first, last = where if where is not None else ("count", 0, 0)
        pending = self._overflow.get(stream)
        if pending is None or pending[0] != field:
            if pending is not None:
                self._report_overflow(stream)
            self._overflow[stream] = [field, first, last, 1]
        else:
            pending[2] = last
            pending[3] += 1

    def _report_overflow(self, only: str | None = None) -> None:
        """Report what the consumer buffer dropped as gaps (reason ``consumer_overflow``)."""
        for stream in [only] if only is not None else list(self._overflow):
            field, first, last, count = self._overflow.pop(stream)
            gap = Gap(stream, field, first, last, count, anyio.current_time(), CONSUMER_OVERFLOW)
            self.overflow_gaps += 1
            self._report_gap(gap)

    def _report_gap(self, gap: Gap) -> None:
        if gap.reason == RESET:
            self.sequence_resets += 1
            self._books.on_reset(gap.stream)
        self.gaps_detected += 1
        self.gap_events_missing += gap.count
        self.recent_gaps.append(gap)
        self._log.warning(
            format_kv(
                event="gap",
                name=self.name,
                stream=gap.stream,
                field=gap.field,
                first=gap.first,
                last=gap.last,
                count=gap.count,
                reason=gap.reason,
            )
        )
        if self.on_gap is None:
            return
        try:
            result = self.on_gap(gap)
        except Exception as exc:
            self._gap_callback_failed(exc)
            return
        if inspect.isawaitable(result) and self._tg is not None:
            self._tg.start_soon(self._await_gap_callback, result)

    async def _await_gap_callback(self, awaitable: Any) -> None:
        try:
            await awaitable
        except Exception as exc:
            self._gap_callback_failed(exc)

    def _gap_callback_failed(self, exc: Exception) -> None:
        self.gap_callback_failures += 1
        self._log.warning(
            format_kv(
                event="gap_callback_failed", name=self.name, error=f"{type(exc).__name__}: {exc}"
            )
        )

    def _server_shutdown(self, leg: Leg) -> None:
        self.server_shutdowns += 1
        self._log.warning(format_kv(event="server_shutdown", name=leg.ws.name))
        if leg is self._primary:
            self._request_rotation("server_shutdown")


def _keep_raw(message: dict[str, Any], data: Any, raw: str | bytes) -> None:
    """raw=True: the message as received goes with the event; of ``data`` only the checked
    fields are kept (a diff depth's asks and an all-market stream's list were skipped
    undecoded: no "a", and an empty list, then)."""
    message["raw"] = raw
    if IDS_ONLY:
        kind = type(data)
        if kind is dict:
            if type(data.get("a")) is list:
                del data["a"]
        elif kind is list:
            message["data"] = []
