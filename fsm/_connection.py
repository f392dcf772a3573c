"""The connection lifecycle: one declarative state machine, sans-I/O.

Rule 1: everything that decides the connection's lifecycle lives in this file. The adapter
(``regulator.adapters``) only moves bytes, classifies exceptions into :class:`FailureKind`, and
does what the actions say.

Theory of operation
-------------------
The states and their transitions are declared once, in the ``ConnectionMachine`` class body
(python-statemachine); the diagram is drawn from the same declaration::

    idle --start--> connecting --transport_connected--> handshaking --handshake_succeeded--> live
    connecting | handshaking | live --fail--> closed       [fatal_or_exhausted]
                                     --fail--> alarmed      [alarm_raised]
                                     --fail--> backing_off  (otherwise)
    backing_off | alarmed --retry--> connecting
    any state but closed --stop--> closed                   (closed is final)

The host calls :meth:`ConnectionMachine.handle` with an event (``Start``, ``TransportConnected``,
``HandshakeSucceeded``, ``ConnectionHealthy``, ``PongReceived``, ``ConnectionFailed``, ``Tick``,
``Stop``), each carrying ``now`` (and optionally ``wall_time``); it gets back a list of actions
(``Connect``, ``Wait``, ``SendPing``, ``RestoreSubscriptions``, ``RaiseAlarm``, ...). Deadlines
are not timers: the host calls ``Tick`` at :attr:`ConnectionMachine.next_deadline` (or any time
later) and the machine fires whatever is due: the retry after a backoff, the next ping, a
missing pong (R1.2), a handshake past its deadline (R1.5), the moment a connection becomes
healthy.

How a transition executes: ``ConnectionMachine`` is a ``regulator.fsm.Machine``, so the
declaration below runs on the compiled engine (``fsm/_machine.py``): a lifecycle change goes
through the shared dispatch ``Machine._move``, which looks ``(state, event)`` up, calls the
guards with the event's arguments injected by name as ``send()`` would, and writes the new
state to the model's state field, where python-statemachine keeps it, so its
``configuration``, the diagrams and the exporter see it (a few us instead of ``send()``'s
~80 us). A subclass's callbacks and listeners run on the engine too; the public hooks a
subclass overrides are ``retry_delay``, ``decide_failure``, ``failures_in_window`` and
``is_healthy`` (docs/connection.md); ``tests/fsm/test_connection_engine.py`` runs the engine
and ``send()`` side by side. Pings, pongs and ticks with nothing due touch plain attributes
only.

A failure is decided before anything changes: the decision (target state, delay, alarm) is
computed from the current counters, then ``send("fail", decision=...)`` picks the transition
through the guards, and only then are the counters updated. An event the current state does not
accept raises :class:`IllegalEventError` and changes nothing.

Healthy. A live connection becomes *healthy* once it has been live for ``stable_after``
seconds, or earlier when the host says so (``ConnectionHealthy``: ``BinanceStream`` sends it once
its subscriptions are verified). An attempt that fails before its connection became healthy
(refused, timed out, or accepted and then dropped) is a *failed reconnect attempt*; the failure
of a healthy connection is a *drop*. Both are failures (counted, in the history); only drops
feed the pattern detector, and only failed attempts count towards the alarm.

Rules: R1.1 backoff ``initial_delay * backoff_factor**n`` capped at ``max_delay`` with jitter;
R1.2 ping every ``ping_interval``, pong within ``pong_timeout``; R1.3 alarm when more than
``alarm_failures`` failed reconnect attempts fall within ``alarm_window`` (a ban alarms at
once), once per episode: resolved when a connection becomes healthy, and the next episode
counts only failed attempts after that; R1.4 subscriptions
restored on ``live``, consecutive failures back to 0 only when healthy, so a link that is
accepted and dropped keeps backing off; R1.5 one deadline for the whole handshake; R3.1/R3.3 a
bounded failure history, with wall time when the host passes it; R3.5 recurring-pattern
reports over the drops, on wall time when the host passes it.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from collections import deque
from typing import Any, Self

import attrs
from statemachine import State

from ._config import ConnectionConfig
from ._connection_events import (
    Alarm,
    AlarmResolved,
    Connect,
    ConnectionAction,
    ConnectionEvent,
    ConnectionFailed,
    ConnectionHealthy,
    FailureKind,
    FailureRecord,
    GiveUp,
    HandshakeSucceeded,
    PatternDetected,
    PongReceived,
    RaiseAlarm,
    ResolveAlarm,
    Start,
    Stop,
    Tick,
    TransportConnected,
    make_connect,
    make_disconnect,
    make_restore,
    make_send_ping,
    make_state_changed,
    make_wait,
)
from ._drop_tracker import DropTracker
from ._errors import IllegalEventError
from ._machine import Machine
from ._patterns import PatternReport

__all__ = [
    "CONNECTION_STATES",
    "DELAY_BUCKETS",
    "ConnectionMachine",
    "FailureDecision",
    "backoff_delay",
]

# The kinds decide_failure tests, as module constants: the member lookup FailureKind.FATAL
# costs ~0.1 us on Python 3.11 (measured), four times per failure.
_SERVER_CLOSED = FailureKind.SERVER_CLOSED
_FATAL = FailureKind.FATAL
_BANNED = FailureKind.BANNED

#: The keyword arguments of an event without any (never changed).
_NO_KWARGS: dict[str, Any] = {}

#: Upper bounds (s) of the reconnect-delay histogram (a last, implicit bucket is +Inf).
DELAY_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: Drops kept for the pattern detector (memory stays bounded over days).
PATTERN_BUFFER = 256
#: Pattern reports remembered (so the same pattern is reported once).
PATTERN_REPORTS_KEPT = 32

CONNECTION_STATES = (
    "idle",
    "connecting",
    "handshaking",
    "live",
    "backing_off",
    "alarmed",
    "closed",
)


def backoff_delay(config: ConnectionConfig, n: int, unit: float = 0.5) -> float:
    """The delay before the attempt after the ``n+1``-th consecutive failure (R1.1).

    ``initial_delay * backoff_factor**n`` capped at ``max_delay``, spread by jitter:
    ``unit`` in [0, 1) maps to a factor in ``[1 - jitter, 1 + jitter)``; 0.5 gives no spread.
    The result always lies in ``[initial_delay * (1 - jitter), max_delay]``.
    """
    if n <= 0 or config.backoff_factor == 1.0:
        base = config.initial_delay
    elif n * math.log(config.backoff_factor) >= math.log(config.max_delay / config.initial_delay):
        base = config.max_delay  # capped; also avoids float overflow for huge n
    else:
        base = config.initial_delay * config.backoff_factor**n
    base = min(base, config.max_delay)
    spread = 1.0 + config.jitter * (2.0 * unit - 1.0)
    return min(base * spread, config.max_delay)


@attrs.define
class FailureDecision:
    """What a failure will do, computed by :meth:`ConnectionMachine.decide_failure` before
    anything changes (never changed afterwards; not frozen because a frozen attrs class costs
    0.7 us more to build, once per failure).

    ``target`` is ``"closed"``, ``"alarmed"`` or ``"backing_off"``; ``counted``: the failure
    counts (a planned server close does not); ``attempt_failed``: an attempt that never became
    healthy (R1.3 counts those); ``consecutive``: the consecutive failures after this one;
    ``delay``: the wait before the next attempt (None when closing); ``new_alarm``: this
    failure raises the alarm; ``window_count``: failed attempts in the alarm window.

    .. versionadded:: 0.2.0
    """

    target: str
    counted: bool
    attempt_failed: bool
    consecutive: int
    delay: float | None
    new_alarm: bool
    window_count: int


class ConnectionMachine(Machine):
    """The connection lifecycle (see the module header for how it works).

    Args:
        config: the rules' parameters.
        rng: the random source of the jitter (seed it for reproducible delays).

    .. versionadded:: 0.1.0
    """

    # -- states ----------------------------------------------------------------
    idle = State("Idle", initial=True)
    connecting = State("Connecting (TCP)")
    handshaking = State("Handshaking (TLS + upgrade)")
    live = State("Live")
    backing_off = State("Backing off")
    alarmed = State("Alarmed (backing off)")
    closed = State("Closed", final=True)

    # -- transitions -------------------------------------------------------------
    start = idle.to(connecting)
    transport_connected = connecting.to(handshaking)
    handshake_succeeded = handshaking.to(live)
    fail = (
        connecting.to(closed, cond="fatal_or_exhausted")
        | connecting.to(alarmed, cond="alarm_raised")
        | connecting.to(backing_off)
        | handshaking.to(closed, cond="fatal_or_exhausted")
        | handshaking.to(alarmed, cond="alarm_raised")
        | handshaking.to(backing_off)
        | live.to(closed, cond="fatal_or_exhausted")
        | live.to(alarmed, cond="alarm_raised")
        | live.to(backing_off)
    )
    retry = backing_off.to(connecting) | alarmed.to(connecting)
    stop = (
        idle.to(closed)
        | connecting.to(closed)
        | handshaking.to(closed)
        | live.to(closed)
        | backing_off.to(closed)
        | alarmed.to(closed)
    )

    # python-statemachine's __setattr__ checks every attribute set against the state names
    # (a state must not be overwritten): about 0.2 us per set, and an event sets about ten
    # counters. Nothing here assigns a state name and python-statemachine reads its states
    # from the class, never from the instance, so plain attribute sets are used.
    __setattr__ = object.__setattr__

    # -- guards (pure: they read the precomputed decision) -------------------------------
    def fatal_or_exhausted(self, decision: FailureDecision) -> bool:
        return decision.target == "closed"

    def alarm_raised(self, decision: FailureDecision) -> bool:
        return decision.target == "alarmed"

    # ---------------------------------------------------------------------------
    def __init__(
        self,
        config: ConnectionConfig | None = None,
        *,
        rng: random.Random | None = None,
        _start_value: str | None = None,
    ) -> None:
        self.config = config if config is not None else ConnectionConfig()
        self.rng = rng if rng is not None else random.Random()
        self._reset_counters()
        if _start_value is None:
            super().__init__()
        else:
            super().__init__(start_value=_start_value)

    def _reset_counters(self) -> None:
        cfg = self.config
        self.attempt = 0
        self.attempts = 0
        self.successes = 0
        self.failures = 0
        self.failures_by_kind: dict[str, int] = {}
        self.consecutive_failures = 0
        self.alarm_active = False
        self.alarm_raised_at: float | None = None
        self.alarm_raised_wall: float | None = None
        # failed reconnect attempts (never healthy) and drops of healthy connections
        self.failed_attempts = 0
        self.drops = 0
        # wall time minus monotonic time, learnt from the latest event carrying wall_time
        self.wall_offset: float | None = None
        self.alarms_raised = 0
        self.alarms_resolved = 0
        self.failures_since_alarm = 0
        self.unsolicited_pongs = 0
        self.pings_sent = 0
        self.pongs_received = 0
        self.last_rtt: float | None = None
        self.last_delay: float | None = None
        self.close_reason: str | None = None
        self.close_kind: str | None = None
        # deadlines (None = not armed)
        self.attempt_deadline: float | None = None
        self.retry_at: float | None = None
        self.next_ping_at: float | None = None
        self.pong_deadline: float | None = None
        self.ping_sent_at: float | None = None
        self.live_since: float | None = None
        self.recovered = True
        # bookkeeping
        self.state_entered_at: float | None = None
        self.last_event_at: float | None = None
        self.time_in_state: dict[str, float] = dict.fromkeys(CONNECTION_STATES, 0.0)
        self._window: deque[float] = deque(maxlen=cfg.alarm_failures + 1)
        #: failure records as tuples in _RECORD_FIELDS order (see _fail)
        self._history: deque[tuple[Any, ...]] = deque(maxlen=cfg.history_size)
        self._tracker = DropTracker(PATTERN_BUFFER, min_hits=cfg.pattern_min_hits)
        self._drops = self._tracker.drops  # read-only here: the tracker adds and evicts
        self._reported: deque[PatternReport] = deque(maxlen=PATTERN_REPORTS_KEPT)
        # the keys of _reported, rebuilt when a report is added (not on every drop)
        self._reported_keys: frozenset[tuple[str, int]] = frozenset()
        self._last_failure_at: float | None = None
        # reconnect delays chosen, per bucket of DELAY_BUCKETS (+Inf last): for metrics
        self.delay_counts = [0] * (len(DELAY_BUCKETS) + 1)
        self.delay_sum = 0.0

    # -- public read-only views ----------------------------------------------------
    @property
    def state(self) -> str:
        """The current state's name (one of :data:`CONNECTION_STATES`)."""
        # The model's state field, where python-statemachine keeps the current state's value
        # (our values are the ids): read on every event, so without the two property hops of
        # current_state_value.
        state: str = self.model.state
        return state

    @property
    def history(self) -> tuple[FailureRecord, ...]:
        """The last ``history_size`` failure records, oldest first (R3.3)."""
        return tuple(
            FailureRecord(**dict(zip(_RECORD_FIELDS, r, strict=True))) for r in self._history
        )

    @property
    def pattern_reports(self) -> tuple[PatternReport, ...]:
        return tuple(self._reported)

    @property
    def next_deadline(self) -> float | None:
        """When the host should next call ``Tick`` (None: nothing is scheduled)."""
        state = self.model.state
        if state in ("connecting", "handshaking"):
            return self.attempt_deadline
        if state in ("backing_off", "alarmed"):
            return self.retry_at
        if state == "live":
            # the earlier of the pong (else the next ping) and the moment it becomes healthy;
            # read by the host after every event, so no list is built
            due = self.pong_deadline if self.pong_deadline is not None else self.next_ping_at
            if not self.recovered and self.live_since is not None:
                healthy_at = self.live_since + self.config.stable_after
                if due is None or healthy_at < due:
                    due = healthy_at
            return due
        return None

    # -- the one entry point -------------------------------------------------------
    def handle(self, event: ConnectionEvent) -> list[ConnectionAction]:
        """Feed one event; return what the adapter must do, in order.

        The order is the one to do them in: a step's ``StateChanged``, then the transport's
        actions (``Connect``, ``RestoreSubscriptions``, ``SendPing``, ``Disconnect``), then its
        notices (``RaiseAlarm``, ``ResolveAlarm``, ``PatternDetected``), and last the ``Wait``
        or ``GiveUp`` that ends it: a host that sleeps on ``Wait`` has raised the alarm on time.

        Raises:
            IllegalEventError: the event is not accepted in the current state; nothing changed.
        """
        now = event.now
        last = self.last_event_at
        if last is not None and now < last:
            raise ValueError(f"now: must not go backwards (got {now!r} after {last!r})")
        # One dict lookup on the event's exact type (events are not subclassed, see
        # _connection_events); the handler is looked up by name, so a subclass's override runs.
        entry = _HANDLERS.get(type(event))
        if entry is None:
            entry = next((e for t, e in _HANDLERS.items() if isinstance(event, t)), None)
            if entry is None:
                raise TypeError(f"event: must be a connection event (got {event!r})")
        name, has_wall = entry
        handler = getattr(self, name)
        # (getattr with a default on a missing attribute raises and catches inside: slow)
        wall = event.wall_time if has_wall else None  # type: ignore[union-attr]
        if wall is None:
            return handler(event)  # type: ignore[no-any-return]
        # The offset is learnt before the event runs (its records carry the wall time) and
        # forgotten again when the event is refused: an illegal event changes nothing.
        previous = self.wall_offset
        self.wall_offset = wall - now
        try:
            return handler(event)  # type: ignore[no-any-return]
        except IllegalEventError:
            self.wall_offset = previous
            raise

    def replay_event(self, event: str) -> list[ConnectionAction]:
        """Feed the event named ``event`` as a host would, at the current time, through the
        real guards and rules (``regulator diagram --events``): ``fail`` is a network
        failure, ``retry`` the Tick at the retry deadline.

        Raises:
            IllegalEventError: the event is not accepted in the current state.
        """
        now = self.last_event_at if self.last_event_at is not None else 0.0
        state = self.state
        typed: ConnectionEvent
        if event == "start":
            typed = Start(now=now)
        elif event == "transport_connected":
            typed = TransportConnected(now=now)
        elif event == "handshake_succeeded":
            typed = HandshakeSucceeded(now=now)
        elif event == "fail":
            typed = ConnectionFailed(now=now, kind=FailureKind.NETWORK, reason="replayed")
        elif event == "retry" and state in ("backing_off", "alarmed") and self.retry_at:
            typed = Tick(now=max(now, self.retry_at))
        elif event == "stop" and state != "closed":
            typed = Stop(now=now, reason="replayed")
        else:
            raise IllegalEventError("ConnectionMachine", event, state)
        return self.handle(typed)

    def _on_tick(self, event: Tick) -> list[ConnectionAction]:
        return self._tick(event.now)

    def _on_transport(self, event: TransportConnected) -> list[ConnectionAction]:
        return self._transition("transport_connected", event.now, "tcp connected")

    def _on_handshake(self, event: HandshakeSucceeded) -> list[ConnectionAction]:
        return self._live(event.now)

    # -- transitions -----------------------------------------------------------------
    def _transition(
        self, name: str, now: float, reason: str, kwargs: dict[str, Any] = _NO_KWARGS
    ) -> list[ConnectionAction]:
        """Take the transition ``name`` with the event's keyword arguments (the guards get
        them: ``decision`` for ``fail``)."""
        model = self.model
        source: str = model.state
        # The declared transition, on the compiled engine (fsm/_machine.py) or through
        # python-statemachine's send() for a subclass the engine cannot run.
        if not self._move(name, kwargs, source):
            raise IllegalEventError("ConnectionMachine", name, source)
        entered = self.state_entered_at
        if entered is not None:
            self.time_in_state[source] += now - entered
        self.state_entered_at = now
        self.last_event_at = now
        return [make_state_changed(now, source, model.state, reason)]

    def _connect_action(self, now: float) -> Connect:
        self.attempt += 1
        self.attempts += 1
        self.attempt_deadline = now + self.config.handshake_timeout
        self.retry_at = None
        return make_connect(self.attempt, self.attempt_deadline)

    def _start(self, event: Start) -> list[ConnectionAction]:
        actions = self._transition("start", event.now, "started by host")
        actions.append(self._connect_action(event.now))
        return actions

    def _live(self, now: float) -> list[ConnectionAction]:
        actions = self._transition("handshake_succeeded", now, "handshake completed")
        self.successes += 1
        self.attempt_deadline = None
        self.live_since = now
        self.next_ping_at = now + self.config.ping_interval
        self.pong_deadline = None
        self.ping_sent_at = None
        actions.append(make_restore(self.attempt))
        if self.config.stable_after == 0.0:
            actions += self._recover(now)
        else:
            self.recovered = False
        return actions

    def wall(self, now: float) -> float | None:
        """The wall time (seconds since the epoch) matching monotonic ``now``, when known."""
        return None if self.wall_offset is None else now + self.wall_offset

    def _recover(self, now: float) -> list[ConnectionAction]:
        """The live connection became healthy: reset the counter (R1.4), end the alarm's
        episode (R1.3)."""
        self.recovered = True
        self.consecutive_failures = 0
        if not self.alarm_active:
            return []
        assert self.alarm_raised_at is not None
        resolution = AlarmResolved(
            at=now,
            raised_at=self.alarm_raised_at,
            duration=now - self.alarm_raised_at,
            failures_since_raised=self.failures_since_alarm,
            wall_at=self.wall(now),
            raised_wall_at=self.alarm_raised_wall,
        )
        self.alarm_active = False
        self.alarm_raised_at = None
        self.alarm_raised_wall = None
        self.alarms_resolved += 1
        # The episode's failed attempts were reported with it: a new episode needs more than
        # alarm_failures new ones (one more failure right after a recovery is not an alarm).
        self._window.clear()
        return [ResolveAlarm(resolution=resolution)]

    def _vouched(self, event: ConnectionHealthy) -> list[ConnectionAction]:
        if self.state != "live":
            raise IllegalEventError("ConnectionMachine", event, self.state)
        self.last_event_at = event.now
        if self.recovered:
            return []
        return self._recover(event.now)

    def _retry(self, now: float) -> list[ConnectionAction]:
        actions = self._transition("retry", now, f"backoff of {self.last_delay:.3f} s elapsed")
        actions.append(self._connect_action(now))
        return actions

    def _stop(self, event: Stop) -> list[ConnectionAction]:
        if self.state == "closed":
            return []
        actions = self._transition("stop", event.now, event.reason)
        self._clear_deadlines()
        self.close_reason = event.reason
        self.close_kind = "stopped"
        actions.append(make_disconnect(event.reason))
        return actions

    def _clear_deadlines(self) -> None:
        self.attempt_deadline = self.retry_at = None
        self.next_ping_at = self.pong_deadline = self.ping_sent_at = None

    def _pong(self, event: PongReceived) -> list[ConnectionAction]:
        if self.state != "live":
            raise IllegalEventError("ConnectionMachine", event, self.state)
        self.last_event_at = event.now
        if self.ping_sent_at is None:
            self.unsolicited_pongs += 1  # allowed by RFC 6455; never fatal
            return []
        self.pongs_received += 1
        self.last_rtt = event.now - self.ping_sent_at
        self.ping_sent_at = None
        self.pong_deadline = None
        return []

    # -- failures ------------------------------------------------------------------
    # -- public hooks: a subclass overrides these (docs/connection.md, "Subclass hooks") ------
    def retry_delay(self, consecutive: int, unit: float) -> float:
        """The wait before the attempt after the ``consecutive``-th consecutive failure (R1.1).

        ``unit`` is a uniform draw in [0, 1) from the machine's ``rng`` (0.5 without jitter).
        Default: :func:`backoff_delay` (exponential, capped, jittered). A host with another
        rule (say linear) overrides it, and checks it with its own reference model
        (``connection_lifecycle_spec(model=...)``). A server's ``retry_after`` still wins
        when longer; a planned server close (``server_closed``) retries at once.
        """
        return backoff_delay(self.config, consecutive - 1, unit)

    def decide_failure(self, event: ConnectionFailed) -> FailureDecision:
        """What the failure ``event`` will do, from the counters as they are before it (the
        failure decision: close, alarm or back off, and the delay). Called once per failure,
        before anything changes; the transition's guards read the returned decision."""
        cfg = self.config
        kind = event.kind
        counted = kind is not _SERVER_CLOSED
        healthy_drop = self.model.state == "live" and self.is_healthy(event.now)
        # R1.3 counts reconnect failures: attempts that never became healthy. The drop of a
        # healthy connection is a drop (history, pattern detector), not a failed attempt.
        attempt_failed = counted and not healthy_drop
        consecutive = 0 if healthy_drop else self.consecutive_failures
        if counted:
            consecutive += 1
        window_count = self.failures_in_window(event.now)
        if attempt_failed:
            window_count += 1
        exhausted = counted and cfg.max_retries is not None and consecutive > cfg.max_retries
        if kind is _FATAL or exhausted:
            return FailureDecision(
                "closed", counted, attempt_failed, consecutive, None, False, window_count
            )
        # A ban is an operator's problem at the first sighting, whatever the window says.
        alarm_due = (attempt_failed and window_count > cfg.alarm_failures) or (kind is _BANNED)
        new_alarm = alarm_due and not self.alarm_active
        target = "alarmed" if (self.alarm_active or alarm_due) else "backing_off"
        if kind is _SERVER_CLOSED:
            delay = 0.0
        else:
            unit = self.rng.random() if cfg.jitter > 0.0 else 0.5
            delay = self.retry_delay(consecutive, unit)
        if event.retry_after is not None and event.retry_after > delay:
            delay = float(event.retry_after)  # the server's word beats max_delay
        return FailureDecision(
            target, counted, attempt_failed, consecutive, delay, new_alarm, window_count
        )

    def failures_in_window(self, now: float) -> int:
        """This episode's failed attempts within the alarm window (R1.3): those less than
        ``alarm_window`` seconds old (one exactly that old is outside it). A hook: a subclass
        may count otherwise (the alarm fires when the count exceeds ``alarm_failures``)."""
        if not self._window:  # the common case: the first failure of an episode
            return 0
        horizon = now - self.config.alarm_window
        return sum(1 for t in self._window if t > horizon)

    def is_healthy(self, now: float) -> bool:
        """Whether the live connection counts as healthy at ``now`` (R1.4: vouched for, or
        live for ``stable_after`` seconds). A hook: a subclass may be stricter."""
        return self.recovered or (
            self.live_since is not None and now - self.live_since >= self.config.stable_after
        )

    def _fail(self, event: ConnectionFailed) -> list[ConnectionAction]:
        source: str = self.model.state
        if source not in ("connecting", "handshaking", "live"):
            raise IllegalEventError("ConnectionMachine", event, source)
        # Healthy by time but not yet ticked: recover first (the transition below cannot be
        # refused from live, so nothing is half-applied).
        recovery: list[ConnectionAction] = []
        if source == "live" and not self.recovered and self.is_healthy(event.now):
            recovery = self._recover(event.now)
        decision = self.decide_failure(event)
        # an enum's .value is a Python-level descriptor (~0.25 us); _value_ is its plain field
        kind: str = event.kind._value_
        reason = f"{kind}: {event.reason}" if event.reason else kind
        actions = self._transition("fail", event.now, reason, {"decision": decision})
        if recovery:
            actions[:0] = recovery
        # The transition is taken: now apply the decision.
        now = event.now
        wall = None if self.wall_offset is None else now + self.wall_offset
        self.failures += 1
        if decision.attempt_failed:
            self.failed_attempts += 1
        elif source == "live" and decision.counted:
            self.drops += 1
        self.failures_by_kind[kind] = self.failures_by_kind.get(kind, 0) + 1
        self.consecutive_failures = decision.consecutive
        if decision.attempt_failed:
            self._window.append(now)
        if self.alarm_active:
            self.failures_since_alarm += 1
        since = None if self._last_failure_at is None else now - self._last_failure_at
        self._last_failure_at = now
        # The record's fields in FailureRecord's order (_RECORD_FIELDS); the record itself is
        # built when read (a frozen 12-field class costs 1.5 us to build, on every failure).
        self._history.append(
            (
                now,
                kind,
                event.reason,
                event.detail,
                source,
                self.attempt,
                decision.consecutive,
                since,
                decision.delay,
                event.retry_after,
                wall,
                decision.attempt_failed,
            )
        )
        self.attempt_deadline = self.retry_at = self.live_since = None
        self.next_ping_at = self.pong_deadline = self.ping_sent_at = None
        actions.append(make_disconnect(reason))
        # The action that ends the step (Wait or GiveUp) comes last, after the alarm and the
        # pattern reports: a host that sleeps on Wait has raised its alarm on time.
        last: ConnectionAction
        if decision.target == "closed":
            self.close_reason = reason
            self.close_kind = kind
            last = GiveUp(kind=kind, reason=reason)
        else:
            assert decision.delay is not None
            self.last_delay = decision.delay
            self.delay_sum += decision.delay
            self.delay_counts[bisect_left(DELAY_BUCKETS, decision.delay)] += 1
            self.retry_at = now + decision.delay
            last = make_wait(decision.delay, self.retry_at, self.attempt + 1)
        if decision.new_alarm:
            self.alarm_active = True
            self.alarm_raised_at = now
            self.alarm_raised_wall = wall
            self.alarms_raised += 1
            self.failures_since_alarm = 0
            alarm = Alarm(
                at=now,
                failures_in_window=decision.window_count,
                window=self.config.alarm_window,
                threshold=self.config.alarm_failures,
                last_kind=kind,
                last_reason=event.reason,
                wall_at=wall,
            )
            actions.append(RaiseAlarm(alarm=alarm))
        if source == "live":  # healthy or not, a live connection was dropped: a time to analyse
            actions += self._analyse_drop(event, kind)
        actions.append(last)
        return actions

    def _analyse_drop(self, event: ConnectionFailed, kind: str) -> list[ConnectionAction]:
        when = event.wall_time if event.wall_time is not None else event.now
        self._tracker.add(when, kind)
        if len(self._drops) < self.config.pattern_min_hits:
            return []
        # The tracker keeps the detector's statistics up to date drop by drop (what
        # detect_patterns would find over the whole buffer, without recomputing it).
        found: list[ConnectionAction] = []
        for report in self._tracker.reports(self._reported_keys):
            self._remember(report)
            found.append(PatternDetected(report=report))
        return found

    def _remember(self, report: PatternReport) -> None:
        self._reported.append(report)
        self._reported_keys = frozenset(r.key for r in self._reported)

    # -- time ------------------------------------------------------------------------
    def _tick(self, now: float) -> list[ConnectionAction]:
        actions: list[ConnectionAction] = []
        # Fire every deadline that is due, in order; each step moves a deadline forward.
        while True:
            due = self.next_deadline
            if due is None or due > now:
                break
            actions += self._fire(due, now)
        self.last_event_at = now
        return actions

    def _fire(self, due: float, now: float) -> list[ConnectionAction]:
        state = self.model.state
        cfg = self.config
        if state in ("connecting", "handshaking"):
            return self._fail(
                ConnectionFailed(
                    now=due,
                    kind=FailureKind.TIMEOUT,
                    reason=f"handshake not completed within {cfg.handshake_timeout:g} s",
                )
            )
        if state in ("backing_off", "alarmed"):
            return self._retry(due)
        # live
        if self.pong_deadline is not None and due == self.pong_deadline:
            return self._fail(
                ConnectionFailed(
                    now=due,
                    kind=FailureKind.TIMEOUT,
                    reason=f"no pong within {cfg.pong_timeout:g} s of ping",
                )
            )
        if (
            not self.recovered
            and self.live_since is not None
            and due == (self.live_since + cfg.stable_after)
        ):
            return self._recover(due)  # R1.4 with stable_after; ends an alarm's episode
        # a ping is due
        self.pings_sent += 1
        self.ping_sent_at = due
        self.pong_deadline = due + cfg.pong_timeout
        self.next_ping_at = due + cfg.ping_interval
        return [make_send_ping(self.pong_deadline)]

    # -- statistics and persistence -----------------------------------------------------
    def stats(self, now: float | None = None) -> dict[str, Any]:
        """Counters for the adapter's ``get_connection_stats()``; plain data only."""
        time_in_state = dict(self.time_in_state)
        if now is not None and self.state_entered_at is not None:
            time_in_state[self.state] += max(0.0, now - self.state_entered_at)
        history = [dict(zip(_RECORD_FIELDS, r, strict=True)) for r in self._history]
        last = dict(history[-1]) if history else None
        return {
            "state": self.state,
            "attempt": self.attempt,
            "total_attempts": self.attempts,
            "successes": self.successes,
            "failures": self.failures,
            "failed_attempts": self.failed_attempts,
            "drops": self.drops,
            "success_rate": (self.successes / self.attempts) if self.attempts else 0.0,
            "failures_by_kind": dict(sorted(self.failures_by_kind.items())),
            "consecutive_failures": self.consecutive_failures,
            "healthy": self.state == "live" and self.recovered,
            "time_in_state": time_in_state,
            "alarm_active": self.alarm_active,
            "alarm_count": self.alarms_raised,
            "alarms_resolved": self.alarms_resolved,
            "last_delay": self.last_delay,
            "last_rtt": self.last_rtt,
            "pings_sent": self.pings_sent,
            "pongs_received": self.pongs_received,
            "unsolicited_pongs": self.unsolicited_pongs,
            "last_failure": last,
            "history": history,
            "patterns": [r.as_dict() for r in self._reported],
            "close_reason": self.close_reason,
            "wall_time": None if now is None else self.wall(now),
        }

    _SCALARS: tuple[str, ...] = (
        "attempt",
        "attempts",
        "successes",
        "failures",
        "consecutive_failures",
        "alarm_active",
        "alarm_raised_at",
        "alarm_raised_wall",
        "alarms_raised",
        "failed_attempts",
        "drops",
        "wall_offset",
        "alarms_resolved",
        "failures_since_alarm",
        "unsolicited_pongs",
        "pings_sent",
        "pongs_received",
        "last_rtt",
        "last_delay",
        "close_reason",
        "close_kind",
        "attempt_deadline",
        "retry_at",
        "next_ping_at",
        "pong_deadline",
        "ping_sent_at",
        "live_since",
        "recovered",
        "state_entered_at",
        "last_event_at",
        "_last_failure_at",
    )
    _TIMES = frozenset(
        [
            "alarm_raised_at",
            "attempt_deadline",
            "retry_at",
            "next_ping_at",
            "pong_deadline",
            "ping_sent_at",
            "live_since",
            "state_entered_at",
            "last_event_at",
            "_last_failure_at",
        ]
    )

    def snapshot(self) -> dict[str, Any]:
        """The whole machine as a JSON-able dict (see :meth:`restore`)."""
        data: dict[str, Any] = {"version": 1, "state": self.state}
        for name in self._SCALARS:
            data[name.lstrip("_")] = getattr(self, name)
        data["failures_by_kind"] = dict(self.failures_by_kind)
        data["time_in_state"] = dict(self.time_in_state)
        data["window"] = list(self._window)
        data["history"] = [dict(zip(_RECORD_FIELDS, r, strict=True)) for r in self._history]
        data["drops"] = [list(d) for d in self._drops]
        data["reported"] = [attrs.asdict(r) for r in self._reported]
        data["delay_counts"] = list(self.delay_counts)
        data["delay_sum"] = self.delay_sum
        return data

    @classmethod
    def restore(
        cls,
        snapshot: dict[str, Any],
        config: ConnectionConfig | None = None,
        *,
        rng: random.Random | None = None,
        shift: float = 0.0,
    ) -> Self:
        """Rebuild a machine from :meth:`snapshot`.

        ``shift`` is added to every stored time: a host restarted on a new monotonic clock
        passes ``new_now - old_now``.
        """
        if snapshot.get("version") != 1:
            raise ValueError(f"snapshot.version: must be 1 (got {snapshot.get('version')!r})")
        state = snapshot["state"]
        if state not in CONNECTION_STATES:
            raise ValueError(f"snapshot.state: must be a connection state (got {state!r})")
        machine = cls(config, rng=rng, _start_value=state)

        def moved(value: Any) -> Any:
            return None if value is None else value + shift

        for name in cls._SCALARS:
            # fields added after version 1 was frozen keep their defaults when absent
            value = snapshot.get(name.lstrip("_"), getattr(machine, name))
            setattr(machine, name, moved(value) if name in cls._TIMES else value)
        if machine.wall_offset is not None:
            machine.wall_offset -= shift  # the same wall time, on the shifted monotonic clock
        machine.failures_by_kind = dict(snapshot["failures_by_kind"])
        machine.time_in_state = {**machine.time_in_state, **snapshot["time_in_state"]}
        machine._window.extend(t + shift for t in snapshot["window"])
        for record in snapshot["history"]:
            checked = FailureRecord(**{**record, "at": record["at"] + shift})
            machine._history.append(attrs.astuple(checked, recurse=False))
        for t, kind in snapshot["drops"]:
            machine._tracker.add(t + shift, kind)
        machine.delay_counts = list(snapshot.get("delay_counts", machine.delay_counts))
        machine.delay_sum = float(snapshot.get("delay_sum", 0.0))
        for report in snapshot["reported"]:
            machine._remember(
                PatternReport(**{**report, "kinds": tuple(tuple(k) for k in report["kinds"])})
            )
        return machine


#: FailureRecord's fields, in order: a failure record is kept as a tuple of their values.
_RECORD_FIELDS = tuple(field.name for field in attrs.fields(FailureRecord))

#: The handler of each event type (a method name, so a subclass's override runs), and whether
#: the event carries ``wall_time``.
_HANDLERS: dict[type, tuple[str, bool]] = {
    event: (name, "wall_time" in attrs.fields_dict(event))
    for event, name in (
        (Tick, "_on_tick"),
        (ConnectionFailed, "_fail"),
        (PongReceived, "_pong"),
        (Stop, "_stop"),
        (Start, "_start"),
        (TransportConnected, "_on_transport"),
        (HandshakeSucceeded, "_on_handshake"),
        (ConnectionHealthy, "_vouched"),
    )
}
