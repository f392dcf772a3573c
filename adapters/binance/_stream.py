"""``BinanceStream``: Binance spot market streams on the resilient socket, by the exchange's rules.

How it works
------------
One *leg* is one :class:`ResilientWebSocket` to ``<base_url>/stream`` (the combined endpoint:
events arrive as ``{"stream": ..., "data": ...}``) with a task that reads it. Normally there is
one leg, the *primary*; during a rotation there are two.

* **Subscriptions.** The wanted streams are a set kept here. After every (re)connect of a leg
  its ``on_connect`` starts a resubscription task: SUBSCRIBE requests of at most
  ``streams_per_request`` streams, paced by the leg's :class:`RequestPacer` so requests plus
  pings and pongs stay under ``messages_per_second``; each reply is matched to its request by
  ``id`` and timed out; then LIST_SUBSCRIPTIONS verifies the exchange's view (R1.4).
* **Attempts.** Every leg's ``before_attempt`` takes a slot of the attempt :class:`Budget`
  (300 per 5 minutes): by default one per process, or one for the host (``FileBudget``) or the
  cluster (``RedisBudget``) behind one address; a 429/418's Retry-After blocks it for all.
* **Requests** (``_requests.py``): each reply is matched to its request by ``id``, timed out,
  and failed at once when its connection leaves live.
* **Rotation** (``_rotation.py``), make-before-break, at ``rotation_age`` or a
  ``serverShutdown`` event: a second leg takes over once it provably overlaps the first, so
  nothing is lost or delivered twice; nothing of it counts as a failure.
* **Health.** A leg is healthy once LIST_SUBSCRIPTIONS verified its subscriptions (or it has
  been live ``stable_after``): only then does its reconnect counter reset and an alarm resolve.
  A link the exchange accepts and drops before that keeps backing off (R1.3, R1.4).
* **Gaps.** Events reach the consumer through the tracker, which reports jumps in trade,
  aggregate, depth-update ids (``U`` must follow the previous ``u``) and kline open times as
  :class:`Gap` (callback, counter, log). Events the consumer's buffer drops (``drop_oldest``)
  are reported the same way, with reason ``consumer_overflow``: nothing is lost silently. Ids
  that move implausibly far are a sequence reset (reason ``reset``), never a poisoned stream.
* **Backfill** (``_backfill.py``, ``backfill=True``): a sequence gap of an ``aggTrade``,
  ``kline_<i>`` or (with an API key) ``trade`` stream is refilled from REST
  (``_rest.RestClient``) instead of reported; that stream's live events wait behind it, a
  check of one dict (empty but while a refill runs) on the delivery path.
* **Hostile input.** One message never ends the stream: whatever decoding or validating it
  raises (deep JSON nesting, a kline interval the exchange does not document, a reply of the
  wrong shape) makes it *malformed*: counted, logged (at most ``LogLimiter.burst`` lines per
  ``period``), dropped. Events of streams not subscribed are dropped and counted, never
  tracked, so a server cannot grow our memory by naming streams.
* **Order books** (``_book_keeper.py``, :meth:`BinanceStream.order_book`): a symbol's diff
  depth events also go to its local :class:`OrderBook` (one dict check per event, empty
  unless a book was asked for); a task fetches its REST snapshot when it needs one.

Per event (``_on_batch``): one decode (``_decode``: orjson or msgspec when installed, else
``json``; the same outcomes), a few dict lookups and one tracker step (``StreamTracker.track``:
identity, de-duplication and gap check together); the events of one read enter the consumer
buffer in one call. The machines' ``send()`` is never on that path.
"""

from __future__ import annotations

import inspect
import json
import logging
import random
import re
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ...fsm import (
    BinanceConfig,
    ConnectionAction,
    ConnectionConfig,
    StateChanged,
    Wait,
    format_kv,
    load_config,
)
from ..websocket._buffer import MessageBuffer, OverflowPolicy
from ..websocket._classify import MAX_RETRY_AFTER
from ..websocket._clock import Clock
from ..websocket._errors import ConnectionClosedError, NotLiveError
from ..websocket._inputs import check_url
from ..websocket._notifiers import Notifier
from ..websocket._socket import ResilientWebSocket
from ..websocket._support import abandon_task_group, exit_task_group, tls_context
from ._backfill import Backfill
from ._book_keeper import DEPTH_STREAMS, BookKeeper
from ._budget import Budget, shared_budget
from ._decode import DECODER, FIRST
from ._leg import Leg
from ._order_book import OrderBook
from ._pacing import RequestPacer
from ._requests import BinanceRequestError, Requests, error_of, is_reply
from ._rest import DEFAULT_REST_URL, RestClient
from ._rotation import Rotation
from ._stats import add_counters, retired_counters
from ._tracker import (
    CONSUMER_OVERFLOW,
    DUPLICATE,
    RESET,
    Gap,
    StreamTracker,
    event_identity,
    event_position,
)
from ._validate import LogLimiter, kline_problem, short

__all__ = ["DEFAULT_BASE_URL", "BinanceStream", "validate_streams"]

DEFAULT_BASE_URL = "wss://stream.binance.com:9443"
LOGGER_NAME = "regulator.binance"
_STREAM = re.compile(r"^[^\s/@]+@[^\s/]+$")


def validate_streams(streams: Iterable[str]) -> list[str]:
    """Stream names, de-duplicated in order; a bad one raises ``ValueError`` naming it."""
    seen: dict[str, None] = {}
    problems: list[str] = []
    for index, name in enumerate(streams):
        if not isinstance(name, str) or _STREAM.match(name) is None:
            problems.append(
                f"streams[{index}]: must look like '<symbol>@<type>' with no spaces or '/'"
                f" (got {name!r})"
            )
            continue
        symbol = name.split("@", 1)[0]
        if not symbol.startswith("!") and symbol != symbol.lower():
            fixed = symbol.lower() + name[len(symbol) :]
            problems.append(
                f"streams[{index}]: the symbol must be lower case (got {name!r};"
                f" did you mean {fixed!r}?)"
            )
            continue
        seen[name] = None
    if problems:
        raise ValueError("; ".join(problems))
    return list(seen)


class BinanceStream(Rotation):
    """Binance spot market streams (combined endpoint) that survive faults and rotations.

    Args:
        streams: stream names (``"ethusdt@kline_1m"``, ``"btcusdt@aggTrade"``, ...).
        base_url: the exchange's stream endpoint; the client connects to ``<base_url>/stream``.
        config: the connection machine's rules (backoff, heartbeat, alarm).
        binance: the exchange's limits and the rotation settings (:class:`BinanceConfig`).
        ssl_context: trust settings (default certifi).
        on_gap: called with each :class:`Gap`; may return an awaitable (run in the stream's
            task group), e.g. a REST backfill.
        on_action: called with ``(leg_name, action)`` for every action of every leg's
            machine (state changes with reasons, waits, alarms).
        attempt_budget: the connection-attempt budget (any :class:`Budget`: in-process,
            ``FileBudget``, ``RedisBudget``); default the process-wide one for
            ``binance.budget`` (``local``, ``file:///path`` or ``redis://host:6379/0``).
        buffer_size, overflow_policy: the bounded buffer of events waiting for the consumer
            (``drop_oldest``, the default, or ``block``; see ``OverflowPolicy``).
        notifiers, clock, rng, wall_clock, follow_redirects: as for ResilientWebSocket.
        name: a label for logs and metrics.
        backfill: refill what an interruption lost from REST (``aggTrade``, ``kline_<i>``,
            and ``trade`` with an ``api_key``), in order, exactly once (see ``_backfill``);
            False (the default): gaps are reported only.
        rest_url: the REST origin for the backfill and the order books' snapshots (default
            ``https://api.binance.com``); its TLS uses ``ssl_context``.
        api_key: sent as ``X-MBX-APIKEY`` (``trade`` streams' history needs one).
        rest_client: a :class:`RestClient` to use instead (its own weight budget, limits).
    """

    def __init__(
        self,
        streams: Sequence[str] = (),
        *,
        base_url: str = DEFAULT_BASE_URL,
        config: ConnectionConfig | None = None,
        binance: BinanceConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
        notifiers: Sequence[Notifier] = (),
        on_gap: Callable[[Gap], Any] | None = None,
        on_action: Callable[[str, ConnectionAction], None] | None = None,
        attempt_budget: Budget | None = None,
        buffer_size: int = 10_000,
        overflow_policy: OverflowPolicy = "drop_oldest",
        max_message_bytes: int = 1 << 20,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        logger: logging.Logger | None = None,
        wall_clock: Callable[[], float] | None = None,
        follow_redirects: bool = False,
        backfill: bool = False,
        rest_url: str | None = None,
        api_key: str | None = None,
        rest_client: RestClient | None = None,
    ) -> None:
        self.rules = binance or load_config().binance
        wanted = validate_streams(streams)
        self._check_count(len(wanted))
        if not isinstance(base_url, str):
            raise ValueError(f"base_url: must be a string (got {type(base_url).__name__})")
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/stream"
        # checked here, before anything starts: each leg's socket would only check on entry
        check_url(self.url)
        tls_context(ssl_context)
        self.config = config or load_config().connection
        self.name = name or "binance"
        self.on_gap = on_gap
        self.on_action = on_action
        self.budget: Budget = attempt_budget or shared_budget(
            self.rules.budget, self.rules.connect_attempts, self.rules.connect_window
        )
        if overflow_policy not in ("drop_oldest", "block"):
            raise ValueError(
                f"overflow_policy: must be 'drop_oldest' or 'block' (got {overflow_policy!r})"
            )
        # Events wait for the consumer here; the legs' own buffers only hand over to the
        # reader task, which never waits for the consumer under drop_oldest, so replies to
        # requests are never stuck behind unread events.
        # Bounded by count and by size (the raw message's length, config.buffer_bytes).
        self._events: MessageBuffer[dict[str, Any]] = MessageBuffer(
            buffer_size, overflow_policy, self.config.buffer_bytes, weigh=None
        )
        self._ws_options: dict[str, Any] = {
            "config": self.config,
            "ssl_context": ssl_context,
            "notifiers": notifiers,
            "buffer_size": buffer_size,
            "overflow_policy": "block",
            "max_message_bytes": max_message_bytes,
            "clock": clock,
            "rng": rng,
            "wall_clock": wall_clock,
            "follow_redirects": follow_redirects,
        }
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._wanted: dict[str, None] = dict.fromkeys(wanted)
        self._tracker = StreamTracker()
        self._loads = FIRST  # the decoder chosen at import (``_decode``); tests swap it
        self._legs: list[Leg] = []
        self._leg_count = 0
        self._primary: Leg | None = None
        self._tg: TaskGroup | None = None
        self._closed_error: ConnectionClosedError | None = None
        self._rotate_now: anyio.Event | None = None
        self._rotate_reason = ""
        self._retired_totals: dict[str, Any] = {}
        # plain counters (the per-message path stays cheap)
        self.events_delivered = 0
        self.duplicates_dropped = 0
        self.malformed = 0
        self.unsubscribed_dropped = 0  # events of streams not subscribed
        self.sequence_resets = 0
        self._malformed_log = LogLimiter()
        self._unsubscribed_log = LogLimiter()
        self._error_log = LogLimiter()  # error frames that name no request
        self.gaps_detected = 0
        self.gap_events_missing = 0
        self.rate_limited_total = 0
        self.gap_callback_failures = 0
        self.recent_gaps: deque[Gap] = deque(maxlen=20)
        self.overflow_gaps = 0
        # events the consumer buffer dropped since the consumer last read: per stream
        # [field, first, last, count], reported as one gap each at the next read
        self._overflow: dict[str, list[Any]] = {}
        self._events.on_drop = self._overflowed  # drops for the size bound beyond the last
        self._requests = Requests(self.rules.request_timeout, self._log)
        self.rotations: dict[str, int] = {"age": 0, "server_shutdown": 0}
        self.rate_limits: deque[dict[str, Any]] = deque(maxlen=20)
        self.server_shutdowns = 0
        # REST backfill (_backfill.py): off unless asked for; _held is empty but while a
        # stream's live events wait behind one (the only check on the per-event path)
        self.rest: RestClient | None = None
        self._own_rest = False
        self._backfill: Backfill | None = None
        self._held: dict[str, Any] = {}
        if backfill:
            self._own_rest = rest_client is None
            self.rest = rest_client or RestClient(
                rest_url or DEFAULT_REST_URL, ssl_context=ssl_context, api_key=api_key,
                logger=self._log, name=f"{self.name}-rest",
            )  # fmt: skip
            self._backfill = Backfill(
                self.rest,
                put=self._put_backfilled,
                report_gap=self._report_gap,
                start_soon=lambda *task: self._tg.start_soon(*task) if self._tg else False,
                max_bytes=self.config.buffer_bytes,
                logger=self._log,
                name=self.name,
            )
            self._held = self._backfill.held
        # local order books (_book_keeper.py): by_stream is empty unless order_book() named
        # a symbol (the per-event path checks it); their snapshots come through self.rest
        self._rest_options = (rest_url or DEFAULT_REST_URL, ssl_context, api_key, rest_client)
        self._books = BookKeeper(
            self._rest_for_books,
            lambda *task: self._tg.start_soon(*task) if self._tg else None,
            logger=self._log,
            name=self.name,
        )
        self._book_streams = self._books.by_stream

    def _check_count(self, count: int) -> None:
        if count > self.rules.max_streams:
            raise ValueError(
                f"streams: at most {self.rules.max_streams} per connection (binance.max_streams)"
                f" (got {count}); split them over several BinanceStream objects"
            )

    # -- the context ----------------------------------------------------------------------
    async def __aenter__(self) -> BinanceStream:
        self._rotate_now = anyio.Event()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            self._primary = self._start_leg()
            self._tg.start_soon(self._watch_rotation)
        except BaseException as exc:  # leave the task group whole, on either backend
            tg, self._tg = self._tg, None
            await abandon_task_group(tg, exc)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await exit_task_group(self._tg, exc_info)
        finally:
            self._tg = None
            self._events.close()
            self._report_overflow()
            if self._own_rest and self.rest is not None:
                await self.rest.aclose()

    def __aiter__(self) -> BinanceStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:  # the per-event path: a buffered event is taken without a coroutine
            event = self._events.get_nowait()
        except anyio.WouldBlock:
            event = await self._next()
        if self._overflow:
            self._report_overflow()
        return event

    async def _next(self) -> dict[str, Any]:
        try:
            return await self._events.get()
        except anyio.EndOfStream:
            self._report_overflow()
            if self._closed_error is not None:
                raise self._closed_error from None
            raise StopAsyncIteration from None

    @property
    def streams(self) -> list[str]:
        """The streams wanted, in subscription order."""
        return list(self._wanted)

    def stream_counts(self) -> tuple[int, int]:
        """(streams wanted, streams the exchange confirmed on the primary connection)."""
        leg = self._primary
        confirmed = leg.confirmed if leg is not None else set()
        wanted = list(self._wanted)
        return len(wanted), sum(1 for s in wanted if s in confirmed)

    @property
    def requests_sent(self) -> int:
        return self._requests.sent

    @property
    def request_errors(self) -> int:
        """Requests the exchange refused, and error frames that named no request."""
        return self._requests.errors

    @property
    def request_timeouts(self) -> int:
        return self._requests.timeouts

    @property
    def state(self) -> str:
        return self._primary.ws.state if self._primary is not None else "idle"

    @property
    def connection(self) -> ResilientWebSocket | None:
        """The primary leg's socket (its machine, stats and diagram)."""
        return self._primary.ws if self._primary is not None else None

    # -- legs ----------------------------------------------------------------------------
    def _start_leg(self, *, rotating_in: bool = False) -> Leg:
        assert self._tg is not None
        holder: list[Leg] = []
        self._leg_count += 1
        label = f"{self.name}#{self._leg_count}"

        async def on_connect(ws: ResilientWebSocket) -> None:
            leg = holder[0]
            leg.pacer.rebase()
            leg.generation += 1
            leg.confirmed.clear()
            leg.verified = False
            assert self._tg is not None
            self._tg.start_soon(self._resubscribe, leg, leg.generation)

        async def before_attempt() -> None:
            if holder and holder[0].retiring:
                await anyio.sleep_forever()  # being replaced: its last attempt is not needed
            await self.budget.acquire()

        def on_action(ws: ResilientWebSocket, action: ConnectionAction) -> None:
            self._leg_action(holder[0], label, action)

        ws = ResilientWebSocket(
            self.url,
            name=label,
            on_connect=on_connect,
            before_attempt=before_attempt,
            on_action=on_action,
            **self._ws_options,
        )
        pacer = RequestPacer(
            self.rules.messages_per_second,
            self.rules.control_reserve,
            control_count=lambda: ws.machine.pings_sent + ws.pings_answered,
        )
        leg = Leg(ws=ws, pacer=pacer)
        leg.rotating_in = rotating_in
        holder.append(leg)
        self._legs.append(leg)
        self._tg.start_soon(self._run_leg, leg)
        return leg

    async def _run_leg(self, leg: Leg) -> None:
        try:
            with leg.scope:
                async with leg.ws:
                    receive = leg.ws.receive_many
                    while True:
                        try:
                            batch = await receive()  # a read's messages, at least one
                        except StopAsyncIteration:
                            break
                        await self._on_batch(leg, batch)
        except ConnectionClosedError as exc:
            if leg is self._primary:
                self._closed_error = exc
                self._events.close()
        finally:
            Requests.fail_all(leg, "the connection closed")
            if leg in self._legs:
                self._legs.remove(leg)
                if leg is not self._primary:  # the primary's counters are read live
                    self._fold_counters(leg)

    def _leg_action(self, leg: Leg, label: str, action: ConnectionAction) -> None:
        if isinstance(action, StateChanged) and action.source == "live":
            leg.verified = False
            leg.lost.set()
            Requests.fail_all(leg, f"the connection left live ({action.reason})")
        elif isinstance(action, Wait):
            history = leg.ws.machine.history
            record = history[-1] if history else None
            if record is not None and record.kind in ("rate_limited", "banned"):
                wait = record.retry_after if record.retry_after is not None else action.delay
                # every stream of the process waits (per IP), but never for ever: the cap is
                # applied here too, whatever produced the record (the socket caps the header)
                wait = min(wait, MAX_RETRY_AFTER) if wait >= 0 else 0.0
                self.budget.block_for(wait)
                self.rate_limited_total += 1
                self.rate_limits.append(
                    {
                        "at": record.at,
                        "kind": record.kind,
                        "reason": record.reason,
                        "retry_after": record.retry_after,
                        "delay": action.delay,
                    }
                )
                self._log.log(
                    logging.ERROR if record.kind == "banned" else logging.WARNING,
                    format_kv(
                        event="rate_limited",
                        name=self.name,
                        kind=record.kind,
                        retry_after=record.retry_after,
                        delay=round(action.delay, 3),
                    ),
                )
        if self.on_action is not None:
            self.on_action(label, action)

    # -- inbound -------------------------------------------------------------------------
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
                            if books and stream in books:  # a local order book's depth
                                self._books.on_event(stream, data, len(raw))
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
            await self._on_event(leg, stream, message, data, len(raw), out, sizes)
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
        size: int,
        out: list[dict[str, Any]],
        sizes: list[int],
    ) -> None:
        if leg is self._primary and not leg.rotating_in:
            gap = self._tracker.track(stream, data, anyio.current_time)
            if gap is DUPLICATE:
                self.duplicates_dropped += 1
                return
            if gap is not None:
                await self._on_gap(gap, out, sizes)
            if self._book_streams and stream in self._book_streams:
                self._books.on_event(stream, data, size)
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
        if gap is not None and (self._backfill is None or not self._backfill.take(gap)):
            self._report_gap(gap)
        if self._book_streams and stream in self._book_streams:  # a local order book
            self._books.on_event(stream, data, size)
        if self._held and stream in self._held:  # waits behind its backfill (_backfill.py)
            assert self._backfill is not None
            await self._backfill.hold(stream, message, size)
            return
        self.events_delivered += 1
        dropped = await self._events.put(message, size)
        if dropped is not None:
            self._overflowed(dropped)

    async def _put_backfilled(self, message: dict[str, Any], size: int) -> None:
        """A backfilled event, or a live one that waited behind a backfill: to the consumer."""
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

    # -- requests ------------------------------------------------------------------------
    async def _subscribe_on(self, leg: Leg, method: str, streams: list[str]) -> None:
        size = self.rules.streams_per_request
        for start in range(0, len(streams), size):
            batch = streams[start : start + size]
            await self._requests.call(leg, method, batch)
            if method == "SUBSCRIBE":
                leg.confirmed.update(batch)
            else:
                leg.confirmed.difference_update(batch)

    async def _resubscribe(self, leg: Leg, generation: int) -> None:
        """After a (re)connect: subscribe every wanted stream, paced, then verify (R1.4)."""
        try:
            wanted = list(self._wanted)
            await self._subscribe_on(leg, "SUBSCRIBE", wanted)
            listed = await self._requests.call(leg, "LIST_SUBSCRIPTIONS")
            missing = [s for s in self._wanted if s not in set(listed or ())]
            if missing:  # the exchange lost some: once more, then report
                self._log.warning(
                    format_kv(event="resubscribe_missing", name=leg.ws.name, count=len(missing))
                )
                await self._subscribe_on(leg, "SUBSCRIBE", missing)
            if generation == leg.generation:
                leg.verified = True
                leg.ws.mark_healthy()  # verified: the reconnect counter resets, alarms resolve
            self._log.info(
                format_kv(
                    event="subscribed",
                    name=leg.ws.name,
                    streams=len(self._wanted),
                    confirmed=len(leg.confirmed),
                    paced=round(leg.pacer.waited, 3),
                )
            )
        except (NotLiveError, BinanceRequestError) as exc:
            if leg.ws.state == "live" and generation == leg.generation:
                self._log.error(
                    format_kv(event="resubscribe_failed", name=leg.ws.name, error=str(exc))
                )

    async def subscribe(self, streams: Sequence[str]) -> None:
        """Add streams. While live, returns once the exchange confirmed them (or raises
        :class:`BinanceRequestError`, and the streams are not added); otherwise they are
        subscribed at the next connect."""
        new = [s for s in validate_streams(streams) if s not in self._wanted]
        self._check_count(len(self._wanted) + len(new))
        if not new:
            return
        self._wanted.update(dict.fromkeys(new))
        leg = self._primary
        if leg is None or leg.ws.state != "live":
            return
        try:
            for each in self._live_legs():  # a rotation's new leg too
                await self._subscribe_on(each, "SUBSCRIBE", new)
        except BinanceRequestError:
            for name in new:
                if name not in leg.confirmed:
                    self._wanted.pop(name, None)
            raise

    async def unsubscribe(self, streams: Sequence[str]) -> None:
        """Remove streams (confirmed by the exchange while live)."""
        gone = [s for s in validate_streams(streams) if s in self._wanted]
        for name in gone:
            self._wanted.pop(name, None)
            self._tracker.forget(name)
            if self._backfill is not None:
                self._backfill.forget(name)
            self._books.forget(name)
        if gone:
            for each in self._live_legs():
                await self._subscribe_on(each, "UNSUBSCRIBE", gone)

    def _live_legs(self) -> list[Leg]:
        return [leg for leg in list(self._legs) if leg.ws.state == "live" and not leg.retiring]

    async def list_subscriptions(self) -> list[str]:
        """The exchange's own list for the primary connection (LIST_SUBSCRIPTIONS)."""
        if self._primary is None:
            raise NotLiveError("list_subscriptions: not started")
        result = await self._requests.call(self._primary, "LIST_SUBSCRIPTIONS")
        return list(result or [])

    # -- statistics ----------------------------------------------------------------------
    def backfill_stats(self) -> dict[str, Any] | None:
        """The REST backfill's counters (``get_connection_stats()["binance"]["backfill"]``);
        None when backfill is off."""
        return self._backfill.stats() if self._backfill is not None else None

    def _fold_counters(self, leg: Leg) -> None:
        final = retired_counters(leg.ws.counter_totals(), leg.counters_at_retirement)
        self._retired_totals = add_counters(self._retired_totals, final)

    def counter_totals(self) -> dict[str, Any]:
        """Counters summed over every connection this stream has had (monotonic across
        rotations): attempts, successes, failures, alarms, failures by kind, the backoff
        delay histogram, messages. Safe to call from another thread."""
        leg = self._primary
        current = leg.ws.counter_totals() if leg is not None else {}
        totals = add_counters(self._retired_totals, current)
        totals["messages_dropped"] = totals.get("messages_dropped", 0) + self._events.dropped
        return totals

    def get_connection_stats(self) -> dict[str, Any]:
        """The primary connection's stats, with counters summed over every connection this
        stream has had (rotations don't reset them), plus the exchange-level counters."""
        leg = self._primary
        if leg is None:
            raise NotLiveError("get_connection_stats: not started")
        stats = leg.ws.get_connection_stats()
        stats["name"] = self.name
        totals = self.counter_totals()
        rs = stats["reconnect_statistics"]
        rs["total_attempts"] = totals["attempts"]
        rs["alarm_count"] = totals["alarms_raised"]
        for key in ("successes", "failures", "alarms_resolved", "failures_by_kind"):
            rs[key] = totals[key]
        attempts = rs["total_attempts"]
        rs["success_rate"] = rs["successes"] / attempts if attempts else None
        stats["messages_received"] = totals["messages_received"]
        stats["messages_dropped"] = totals["messages_dropped"]
        stats["messages_buffered"] = len(self._events)
        stats["binance"] = {
            "streams": {
                s: ("confirmed" if s in leg.confirmed else "pending") for s in self._wanted
            },
            "confirmed": sum(1 for s in self._wanted if s in leg.confirmed),
            "verified": leg.verified,
            "decoder": DECODER,
            "events_delivered": self.events_delivered,
            "duplicates_dropped": self.duplicates_dropped,
            "malformed": self.malformed,
            "unsubscribed_dropped": self.unsubscribed_dropped,
            "sequence_resets": self.sequence_resets,
            "gaps_detected": self.gaps_detected,
            "gap_events_missing": self.gap_events_missing,
            "overflow_gaps": self.overflow_gaps,
            "recent_gaps": [g.as_dict() for g in self.recent_gaps],
            "requests_sent": self.requests_sent,
            "request_errors": self.request_errors,
            "request_timeouts": self.request_timeouts,
            "unexpected_replies": self._requests.unexpected,
            "rotations": dict(self.rotations),
            "server_shutdowns": self.server_shutdowns,
            "rate_limits": list(self.rate_limits),
            "attempt_budget": self.budget.stats(),
        }
        if self._backfill is not None:
            stats["binance"]["backfill"] = self._backfill.stats()
        stats["binance"]["order_books"] = self.book_stats()
        return stats

    def book_stats(self) -> dict[str, Any]:
        """The local order books' counters: ``resyncs`` (books discarded after a gap),
        ``snapshots_fetched``, ``snapshot_failures``, ``events_rejected`` and per symbol the
        book's own (``synced``, ``last_update_id``, levels, buffered events, ...)."""
        return self._books.stats()

    # -- local order books (_book_keeper.py) ----------------------------------------------
    def order_book(self, symbol: str, *, limit: int = 5000) -> OrderBook:
        """The local order book of ``symbol`` (``"ethusdt"``), kept from its diff depth
        stream (``<symbol>@depth@100ms``, else ``<symbol>@depth``) and REST snapshots of
        ``limit`` levels (``GET /api/v3/depth``; weight 250 at 5000) from ``rest_url``, by
        the exchange's procedure, resynced after any gap in its ids. Before the stream starts,
        ``<symbol>@depth@100ms`` is added to the streams when no depth stream of the symbol
        is; once started, one must already be subscribed. The same book on every call."""
        symbol = BookKeeper.check_symbol(symbol)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 5000:
            raise ValueError(f"limit: must be an integer from 1 to 5000 (got {limit!r})")
        book = self._books.fed(symbol)
        if book is not None:
            return book
        stream = next((symbol + s for s in DEPTH_STREAMS if symbol + s in self._wanted), None)
        if stream is None:
            stream = symbol + DEPTH_STREAMS[0]
            if self._tg is not None:
                raise ValueError(
                    f"order_book: no diff depth stream of {symbol!r} is subscribed; subscribe"
                    f" {stream!r} first, or ask for the book before the stream starts"
                )
            self._check_count(len(self._wanted) + 1)
            self._wanted[stream] = None
        return self._books.add(symbol, stream, limit, max_buffered_bytes=self.config.buffer_bytes)

    def _rest_for_books(self) -> RestClient:
        if self.rest is None:  # no backfill: the books' own client (closed on exit)
            url, ssl_context, api_key, given = self._rest_options
            self._own_rest = given is None
            self.rest = given or RestClient(
                url, ssl_context=ssl_context, api_key=api_key, logger=self._log,
                name=f"{self.name}-rest",
            )  # fmt: skip
        return self.rest
