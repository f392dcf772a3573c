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
* **Attempts.** Every leg's ``before_attempt`` takes a slot of the process-wide
  :class:`AttemptBudget` (300 per 5 minutes), which a 429/418's Retry-After blocks for every
  stream of the process.
* **Rotation** (make-before-break), at ``rotation_age`` or a ``serverShutdown`` event: a second
  leg connects and subscribes while the primary keeps delivering; the new leg's events are held.
  When every stream the new leg carries has delivered on the primary an event the new leg also
  holds (or after ``rotation_overlap_timeout``), the primary stops delivering, the held events
  are merged in through the :class:`StreamTracker` (which drops what was already delivered),
  the new leg becomes primary and the old one is closed with 1000. Nothing of this counts as a
  failure.
* **Gaps.** Events reach the consumer through the tracker, which reports jumps in trade,
  aggregate, depth-update ids and kline open times as :class:`Gap` (callback, counter, log).

Per message: one ``json.loads``, a few dict lookups and one tuple comparison; the machines'
``send()`` is never on that path.
"""

from __future__ import annotations

import inspect
import itertools
import json
import logging
import math
import random
import re
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio
import attrs
from anyio.abc import TaskGroup

from ...fsm import (
    BinanceConfig,
    ConnectionAction,
    ConnectionConfig,
    RegulatorError,
    StateChanged,
    Wait,
    format_kv,
    load_config,
)
from ..websocket._buffer import MessageBuffer, OverflowPolicy
from ..websocket._notifiers import Notifier
from ..websocket._socket import (
    Clock,
    ConnectionClosedError,
    NotLiveError,
    ResilientWebSocket,
    exit_task_group,
)
from ._pacing import AttemptBudget, RequestPacer, shared_attempt_budget
from ._tracker import Gap, StreamTracker, event_identity

__all__ = [
    "DEFAULT_BASE_URL",
    "BinanceRequestError",
    "BinanceStream",
    "RequestTimeout",
    "validate_streams",
]

DEFAULT_BASE_URL = "wss://stream.binance.com:9443"
LOGGER_NAME = "regulator.binance"
#: Events a rotation's new connection may hold before the switch is forced.
HOLD_LIMIT = 100_000
_STREAM = re.compile(r"^[^\s/@]+@[^\s/]+$")


class BinanceRequestError(RegulatorError):
    """The exchange answered a request with an error (``code``, ``msg``), or the connection
    carrying it was lost before the reply."""

    def __init__(self, method: str, code: int | None, msg: str) -> None:
        self.method = method
        self.code = code
        self.msg = msg
        where = "" if code is None else f" (code {code})"
        super().__init__(f"{method} failed{where}: {msg}")


class RequestTimeout(BinanceRequestError):
    """No reply within ``request_timeout``."""


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


@attrs.define(eq=False)
class _Pending:
    method: str
    done: anyio.Event = attrs.field(factory=anyio.Event)
    result: Any = None
    error: BinanceRequestError | None = None


@attrs.define(eq=False)
class _Leg:
    ws: ResilientWebSocket
    pacer: RequestPacer
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    confirmed: set[str] = attrs.field(factory=set)
    verified: bool = False
    generation: int = 0
    pending: dict[int, _Pending] = attrs.field(factory=dict)
    rotating_in: bool = False
    retiring: bool = False
    # the new leg's events while it proves the overlap: (stream, event, identity)
    held: deque[tuple[str, dict[str, Any], Any]] = attrs.field(factory=deque)
    first_held: dict[str, Any] = attrs.field(factory=dict)
    lost: anyio.Event = attrs.field(factory=anyio.Event)
    counters_at_retirement: dict[str, Any] | None = None


class BinanceStream:
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
        attempt_budget: the connection-attempt budget; default the process-wide one.
        buffer_size, overflow_policy: the bounded buffer of events waiting for the consumer
            (``drop_oldest``, the default, or ``block``; see ``OverflowPolicy``).
        notifiers, clock, rng: as for ResilientWebSocket.
        name: a label for logs and metrics.
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
        attempt_budget: AttemptBudget | None = None,
        buffer_size: int = 10_000,
        overflow_policy: OverflowPolicy = "drop_oldest",
        max_message_bytes: int = 1 << 20,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.rules = binance or load_config().binance
        wanted = validate_streams(streams)
        self._check_count(len(wanted))
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/stream"
        self.config = config or load_config().connection
        self.name = name or "binance"
        self.on_gap = on_gap
        self.on_action = on_action
        self.budget = attempt_budget or shared_attempt_budget(
            self.rules.connect_attempts, self.rules.connect_window
        )
        if overflow_policy not in ("drop_oldest", "block"):
            raise ValueError(
                f"overflow_policy: must be 'drop_oldest' or 'block' (got {overflow_policy!r})"
            )
        # Events wait for the consumer here; the legs' own buffers only hand over to the
        # reader task, which never waits for the consumer under drop_oldest, so replies to
        # requests are never stuck behind unread events.
        self._events: MessageBuffer[dict[str, Any]] = MessageBuffer(buffer_size, overflow_policy)
        self._ws_options: dict[str, Any] = {
            "config": self.config,
            "ssl_context": ssl_context,
            "notifiers": notifiers,
            "buffer_size": buffer_size,
            "overflow_policy": "block",
            "max_message_bytes": max_message_bytes,
            "clock": clock,
            "rng": rng,
        }
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._wanted: dict[str, None] = dict.fromkeys(wanted)
        self._tracker = StreamTracker()
        self._ids = itertools.count(1)
        self._legs: list[_Leg] = []
        self._leg_count = 0
        self._primary: _Leg | None = None
        self._tg: TaskGroup | None = None
        self._closed_error: ConnectionClosedError | None = None
        self._rotate_now: anyio.Event | None = None
        self._rotate_reason = ""
        self._retired_totals: dict[str, Any] = {}
        # plain counters (the per-message path stays cheap)
        self.events_delivered = 0
        self.duplicates_dropped = 0
        self.malformed = 0
        self.gaps_detected = 0
        self.gap_events_missing = 0
        self.rate_limited_total = 0
        self.gap_callback_failures = 0
        self.recent_gaps: deque[Gap] = deque(maxlen=20)
        self.requests_sent = 0
        self.request_errors = 0
        self.request_timeouts = 0
        self.rotations: dict[str, int] = {"age": 0, "server_shutdown": 0}
        self.rate_limits: deque[dict[str, Any]] = deque(maxlen=20)
        self.server_shutdowns = 0

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
        self._primary = self._start_leg()
        self._tg.start_soon(self._watch_rotation)
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await exit_task_group(self._tg, exc_info)
        finally:
            self._tg = None
            self._events.close()

    def __aiter__(self) -> BinanceStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return await self._events.get()
        except anyio.EndOfStream:
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
    def state(self) -> str:
        return self._primary.ws.state if self._primary is not None else "idle"

    @property
    def connection(self) -> ResilientWebSocket | None:
        """The primary leg's socket (its machine, stats and diagram)."""
        return self._primary.ws if self._primary is not None else None

    # -- legs ----------------------------------------------------------------------------
    def _start_leg(self, *, rotating_in: bool = False) -> _Leg:
        assert self._tg is not None
        holder: list[_Leg] = []
        self._leg_count += 1
        label = f"{self.name}#{self._leg_count}"

        async def on_connect(ws: ResilientWebSocket) -> None:
            leg = holder[0]
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
        leg = _Leg(ws=ws, pacer=pacer)
        leg.rotating_in = rotating_in
        holder.append(leg)
        self._legs.append(leg)
        self._tg.start_soon(self._run_leg, leg)
        return leg

    async def _run_leg(self, leg: _Leg) -> None:
        try:
            with leg.scope:
                async with leg.ws:
                    async for raw in leg.ws:
                        await self._on_raw(leg, raw)
        except ConnectionClosedError as exc:
            if leg is self._primary:
                self._closed_error = exc
                self._events.close()
        finally:
            self._fail_pending(leg, "the connection closed")
            if leg in self._legs:
                self._legs.remove(leg)
                if leg is not self._primary:  # the primary's counters are read live
                    self._fold_counters(leg)

    def _leg_action(self, leg: _Leg, label: str, action: ConnectionAction) -> None:
        if isinstance(action, StateChanged) and action.source == "live":
            leg.verified = False
            leg.lost.set()
            self._fail_pending(leg, f"the connection left live ({action.reason})")
        elif isinstance(action, Wait):
            history = leg.ws.machine.history
            record = history[-1] if history else None
            if record is not None and record.kind in ("rate_limited", "banned"):
                wait = record.retry_after if record.retry_after is not None else action.delay
                self.budget.block_for(wait)  # every stream of the process waits (per IP)
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

    def _fail_pending(self, leg: _Leg, why: str) -> None:
        pending, leg.pending = leg.pending, {}
        for request in pending.values():
            request.error = BinanceRequestError(request.method, None, why)
            request.done.set()

    # -- inbound -------------------------------------------------------------------------
    async def _on_raw(self, leg: _Leg, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError as exc:
            self._malformed(leg, None, f"not JSON: {exc}")
            return
        if not isinstance(message, dict):
            self._malformed(leg, None, f"a JSON {type(message).__name__}, not an object")
            return
        stream = message.get("stream")
        data = message.get("data")
        if stream is not None:
            if not isinstance(stream, str) or not isinstance(data, dict | list):
                self._malformed(leg, stream, "a combined event needs a string stream and data")
                return
            if isinstance(data, dict) and data.get("e") == "serverShutdown":
                self._server_shutdown(leg)
                return
            await self._on_event(leg, stream, message, data)
        elif "id" in message and ("result" in message or "code" in message):
            self._on_reply(leg, message)
        elif message.get("e") == "serverShutdown":
            self._server_shutdown(leg)
        elif "code" in message:
            self.request_errors += 1
            self._log.error(
                format_kv(
                    event="request_error",
                    name=self.name,
                    code=message.get("code"),
                    msg=message.get("msg"),
                )
            )
        else:
            self._malformed(leg, None, "not a known message shape")

    def _malformed(self, leg: _Leg, stream: Any, why: str) -> None:
        self.malformed += 1
        self._log.warning(format_kv(event="malformed", name=leg.ws.name, stream=stream, error=why))

    async def _on_event(self, leg: _Leg, stream: str, message: dict[str, Any], data: Any) -> None:
        key = event_identity(data)
        if leg is self._primary and not leg.rotating_in:
            await self._deliver(stream, message, data, key)
        elif leg.rotating_in:  # held until the switch (bounded: _rotate switches at HOLD_LIMIT)
            leg.held.append((stream, message, key))
            leg.first_held.setdefault(stream, key)
        # else: a retired leg's last messages; the new primary carries them

    async def _deliver(self, stream: str, message: dict[str, Any], data: Any, key: Any) -> None:
        tracker = self._tracker
        if not tracker.is_new(stream, key):
            self.duplicates_dropped += 1
            return
        gap = tracker.accept(stream, data, key, anyio.current_time)
        if gap is not None:
            self._report_gap(gap)
        self.events_delivered += 1
        await self._events.put(message)

    def _report_gap(self, gap: Gap) -> None:
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

    def _on_reply(self, leg: _Leg, message: dict[str, Any]) -> None:
        rid = message.get("id")
        request = leg.pending.pop(rid, None) if isinstance(rid, int) else None
        if request is None:
            self._log.warning(format_kv(event="unexpected_reply", name=leg.ws.name, id=rid))
            return
        if "code" in message:
            code = message.get("code")
            request.error = BinanceRequestError(
                request.method,
                code if isinstance(code, int) else None,
                str(message.get("msg", "")),
            )
        else:
            request.result = message.get("result")
        request.done.set()

    def _server_shutdown(self, leg: _Leg) -> None:
        self.server_shutdowns += 1
        self._log.warning(format_kv(event="server_shutdown", name=leg.ws.name))
        if leg is self._primary and self._rotate_now is not None:
            self._rotate_reason = "server_shutdown"
            self._rotate_now.set()

    # -- requests ------------------------------------------------------------------------
    async def _request(self, leg: _Leg, method: str, params: list[str] | None = None) -> Any:
        if leg.ws.state != "live":
            raise NotLiveError(f"{method}: the connection is {leg.ws.state}, not live")
        await leg.pacer.wait()
        rid = next(self._ids)
        request = _Pending(method)
        body: dict[str, Any] = {"method": method, "id": rid}
        if params is not None:
            body["params"] = params
        leg.pending[rid] = request
        try:
            await leg.ws.send(json.dumps(body, separators=(",", ":")))
        except Exception:
            leg.pending.pop(rid, None)
            raise
        self.requests_sent += 1
        with anyio.move_on_after(self.rules.request_timeout):
            await request.done.wait()
        if not request.done.is_set():
            leg.pending.pop(rid, None)
            self.request_timeouts += 1
            raise RequestTimeout(method, None, f"no reply within {self.rules.request_timeout} s")
        if request.error is not None:
            self.request_errors += 1
            raise request.error
        return request.result

    async def _subscribe_on(self, leg: _Leg, method: str, streams: list[str]) -> None:
        size = self.rules.streams_per_request
        for start in range(0, len(streams), size):
            batch = streams[start : start + size]
            await self._request(leg, method, batch)
            if method == "SUBSCRIBE":
                leg.confirmed.update(batch)
            else:
                leg.confirmed.difference_update(batch)

    async def _resubscribe(self, leg: _Leg, generation: int) -> None:
        """After a (re)connect: subscribe every wanted stream, paced, then verify (R1.4)."""
        try:
            wanted = list(self._wanted)
            await self._subscribe_on(leg, "SUBSCRIBE", wanted)
            listed = await self._request(leg, "LIST_SUBSCRIPTIONS")
            missing = [s for s in self._wanted if s not in set(listed or ())]
            if missing:  # the exchange lost some: once more, then report
                self._log.warning(
                    format_kv(event="resubscribe_missing", name=leg.ws.name, count=len(missing))
                )
                await self._subscribe_on(leg, "SUBSCRIBE", missing)
            if generation == leg.generation:
                leg.verified = True
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
        if gone:
            for each in self._live_legs():
                await self._subscribe_on(each, "UNSUBSCRIBE", gone)

    def _live_legs(self) -> list[_Leg]:
        return [leg for leg in list(self._legs) if leg.ws.state == "live" and not leg.retiring]

    async def list_subscriptions(self) -> list[str]:
        """The exchange's own list for the primary connection (LIST_SUBSCRIPTIONS)."""
        if self._primary is None:
            raise NotLiveError("list_subscriptions: not started")
        result = await self._request(self._primary, "LIST_SUBSCRIPTIONS")
        return list(result or [])

    # -- rotation ------------------------------------------------------------------------
    async def _watch_rotation(self) -> None:
        assert self._rotate_now is not None
        while True:
            leg = self._primary
            assert leg is not None
            since = leg.ws.connected_since
            age = None if since is None else leg.ws.clock.now() - since
            wait = 1.0 if age is None else self.rules.rotation_age - age
            if wait > 0 and not self._rotate_now.is_set():
                with anyio.move_on_after(min(wait, 5.0)):
                    await self._rotate_now.wait()
                continue
            reason = self._rotate_reason or "age"
            self._rotate_now = anyio.Event()
            self._rotate_reason = ""
            if leg.ws.state == "live":
                await self._rotate(leg, reason)

    async def _rotate(self, old: _Leg, reason: str) -> None:
        self.rotations[reason] = self.rotations.get(reason, 0) + 1
        self._log.info(format_kv(event="rotation", name=self.name, phase="start", reason=reason))
        started = anyio.current_time()
        new = self._start_leg(rotating_in=True)
        old.retiring = True
        old.lost = anyio.Event()  # it is live now; an earlier connection's loss is history
        old.counters_at_retirement = self._counters(old.ws)
        deadline = math.inf
        switched_because = "overlap"
        while True:
            if old.lost.is_set() or old.ws.state != "live":
                switched_because = "old connection lost"
                break
            if new.verified:
                if deadline == math.inf:
                    deadline = anyio.current_time() + self.rules.rotation_overlap_timeout
                if self._overlap_proven(new):
                    break
                if anyio.current_time() >= deadline:
                    switched_because = "overlap timeout"
                    break
            if len(new.held) >= HOLD_LIMIT:
                switched_because = "hold limit"
                break
            await anyio.sleep(0.02)
        await self._switch(old, new)
        self._log.info(
            format_kv(
                event="rotation",
                name=self.name,
                phase="switched",
                reason=reason,
                because=switched_because,
                took=round(anyio.current_time() - started, 3),
            )
        )

    def _overlap_proven(self, new: _Leg) -> bool:
        """True once, for every stream that has delivered, the old connection has delivered
        the first event the new one holds: switching then loses nothing. No vacuous truth:
        a stream not yet seen on the new connection keeps the rotation waiting (up to
        ``rotation_overlap_timeout``)."""
        tracker = self._tracker
        for stream in self._wanted:
            last = tracker.last_identity(stream)
            if stream not in new.first_held:
                if last is not None:
                    return False
                continue
            first = new.first_held[stream]
            if first is not None and (last is None or last < first):
                return False
        return True

    async def _switch(self, old: _Leg, new: _Leg) -> None:
        self._primary = new  # the old leg stops delivering at once
        while new.held:  # the new leg's pump may append while we await the consumer
            stream, message, key = new.held.popleft()
            await self._deliver(stream, message, message.get("data"), key)
        new.rotating_in = False  # no await since the queue ran empty: nothing slips between
        new.first_held.clear()
        old.scope.cancel()

    # -- statistics ----------------------------------------------------------------------
    @staticmethod
    def _counters(ws: ResilientWebSocket) -> dict[str, Any]:
        return ws.counter_totals()

    def _fold_counters(self, leg: _Leg) -> None:
        """Add a closed connection's counters to the totals: its messages to the end, its
        failures only up to its retirement (what follows a planned rotation is not one)."""
        final = self._counters(leg.ws)
        at_retirement = leg.counters_at_retirement
        if at_retirement is not None:
            final = {
                **at_retirement,
                "messages_received": final["messages_received"],
                "messages_dropped": final["messages_dropped"],
            }
        self._retired_totals = _add_counters(self._retired_totals, final)

    def counter_totals(self) -> dict[str, Any]:
        """Counters summed over every connection this stream has had (monotonic across
        rotations): attempts, successes, failures, alarms, failures by kind, the backoff
        delay histogram, messages. Safe to call from another thread."""
        leg = self._primary
        current = self._counters(leg.ws) if leg is not None else {}
        totals = _add_counters(self._retired_totals, current)
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
            "events_delivered": self.events_delivered,
            "duplicates_dropped": self.duplicates_dropped,
            "malformed": self.malformed,
            "gaps_detected": self.gaps_detected,
            "recent_gaps": [g.as_dict() for g in self.recent_gaps],
            "requests_sent": self.requests_sent,
            "request_errors": self.request_errors,
            "request_timeouts": self.request_timeouts,
            "rotations": dict(self.rotations),
            "server_shutdowns": self.server_shutdowns,
            "rate_limits": list(self.rate_limits),
            "attempt_budget": {
                "limit": self.budget.limit,
                "window": self.budget.window,
                "in_window": self.budget.in_window(),
                "waits": self.budget.waits,
                "waited": round(self.budget.waited, 3),
            },
        }
        return stats


def _add_counters(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = (
                dict(value)
                if isinstance(value, dict)
                else (list(value) if isinstance(value, list) else value)
            )
        elif isinstance(value, dict):
            merged = dict(out[key])
            for kind, count in value.items():
                merged[kind] = merged.get(kind, 0) + count
            out[key] = merged
        elif isinstance(value, list):
            out[key] = [x + y for x, y in zip(out[key], value, strict=True)]
        else:
            out[key] = out[key] + value
    return out
