"""``BinanceStream``: Binance spot market streams on the resilient socket, by the exchange's rules.

How it works
------------
One *leg* is one :class:`ResilientWebSocket` to ``<base_url>/stream`` (the combined endpoint:
events arrive as ``{"stream": ..., "data": ...}``) with a task that reads it. Normally there is
one leg, the *primary*; during a rotation there are two.

The stream is one class assembled from mixins, one concern a module:

* **Subscriptions** (``_subscriptions.py``). The wanted streams are a set kept here. After
  every (re)connect of a leg its ``on_connect`` starts a resubscription task: SUBSCRIBE
  requests paced by the leg's :class:`RequestPacer`, then LIST_SUBSCRIPTIONS verifies the
  exchange's view (R1.4). A leg is healthy once it is verified (or live ``stable_after``):
  only then does its reconnect counter reset and an alarm resolve (R1.3, R1.4).
* **Attempts.** Every leg's ``before_attempt`` takes a slot of the attempt :class:`Budget`
  (300 per 5 minutes): by default one per process, or one for the host (``FileBudget``) or the
  cluster (``RedisBudget``) behind one address; a 429/418's Retry-After blocks it for all.
* **Requests** (``_requests.py``): each reply is matched to its request by ``id``, timed out,
  and failed at once when its connection leaves live.
* **Rotation** (``_rotation.py``), make-before-break, at ``rotation_age`` or a
  ``serverShutdown`` event: a second leg takes over once it provably overlaps the first, so
  nothing is lost or delivered twice; nothing of it counts as a failure.
* **Inbound** (``_inbound.py``): each read of a leg goes through ``_on_batch``, the per-event
  path (one decode, one tracker step, the read's events into the consumer buffer in one call);
  gaps (the tracker's and the consumer buffer's drops) are reported as :class:`Gap`; one bad
  message never ends the stream (counted as malformed, or unsubscribed, and dropped).
* **Backfill** (``_backfill.py``, ``backfill=True``): a sequence gap of an ``aggTrade``,
  ``kline_<i>`` or (with an API key) ``trade`` stream is refilled from REST
  (``_rest.RestClient``) instead of reported; that stream's live events wait behind it.
* **Order books** (``_book_keeper.py``, :meth:`BinanceStream.order_book`): a symbol's diff
  depth events also go to its local :class:`OrderBook`; a task fetches its REST snapshot when
  it needs one.
* **Statistics** (``_stats.py``): plain counters on the per-message paths, gathered and
  summed over every connection (rotations don't reset them) when asked.

This module keeps the rest: the constructor (every piece of state the mixins share), the
context (task group, legs), the consumer's iteration, and each leg's reader task and actions.
"""

from __future__ import annotations

import logging
import random
import ssl
from collections import deque
from collections.abc import Callable, Sequence
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
from ..websocket._errors import ConnectionClosedError
from ..websocket._inputs import check_url
from ..websocket._notifiers import Notifier
from ..websocket._socket import ResilientWebSocket
from ..websocket._support import abandon_task_group, exit_task_group, tls_context
from ._backfill import Backfill
from ._book_keeper import BookKeeper, OrderBooks
from ._budget import Budget, shared_budget
from ._decode import FIRST, IDS_FIRST
from ._inbound import Inbound
from ._leg import Leg
from ._pacing import RequestPacer
from ._requests import Requests
from ._rest import DEFAULT_REST_URL, RestClient
from ._stats import Statistics
from ._subscriptions import Subscriptions, validate_streams
from ._tracker import (
    Gap,
    StreamTracker,
)
from ._validate import LogLimiter

__all__ = ["DEFAULT_BASE_URL", "BinanceStream", "validate_streams"]

DEFAULT_BASE_URL = "wss://stream.binance.com:9443"
LOGGER_NAME = "regulator.binance"


class BinanceStream(Subscriptions, Statistics, OrderBooks, Inbound):
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
        raw: hand the host each message as received: every event is
            ``{"stream": ..., "data": {...}, "raw": <the message's text or bytes>}``, where
            ``data`` holds only what the stream's own checks read (event type, ids, times;
            see ``_decode``), decoded without the rest of the message (with the ``fast``
            extra). Every check, gap, backfill and order book works as without it; a
            backfilled event's ``raw`` is its live-shaped JSON. Default False: parsed events.
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
        raw: bool = False,
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
        if not isinstance(raw, bool):
            raise ValueError(f"raw: must be True or False (got {raw!r})")
        self._raw = raw
        # the decoder chosen at import (``_decode``; raw: only what the checks read); tests
        # swap it
        self._loads = IDS_FIRST if raw else FIRST
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
                put=self._put_backfilled if raw else self._put_one,
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
