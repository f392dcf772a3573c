"""Inputs and outputs of :class:`ConnectionMachine`: small frozen classes.

Events go in (``machine.handle(event)``), actions come out. Every event carries ``now``, the
time in seconds on any monotonic clock the host chooses; the machine has no clock of its own.
Some also carry an optional ``wall_time`` (seconds since the epoch, UTC): the machine stamps
failure records and notices with it (R3.1) and finds hourly patterns on it (R3.5); the
monotonic ``now`` alone cannot tell an operator when something happened.
Don't subclass these: the machine dispatches on their exact type.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from ._patterns import PatternReport

_T = TypeVar("_T")

__all__ = [
    "Alarm",
    "AlarmResolved",
    "Connect",
    "ConnectionAction",
    "ConnectionEvent",
    "ConnectionFailed",
    "ConnectionHealthy",
    "Disconnect",
    "FailureKind",
    "FailureRecord",
    "GiveUp",
    "HandshakeSucceeded",
    "PatternDetected",
    "PongReceived",
    "RaiseAlarm",
    "ResolveAlarm",
    "RestoreSubscriptions",
    "SendPing",
    "Start",
    "StateChanged",
    "Stop",
    "Tick",
    "TransportConnected",
    "Wait",
]


class FailureKind(enum.StrEnum):
    """Why a connection attempt or a live connection failed (classified by the adapter)."""

    #: TLS error, e.g. ``DECRYPTION_FAILED_OR_BAD_RECORD_MAC``: retried with backoff.
    SSL = "ssl"
    #: Refused, reset, closed without a close frame, broken pipe: retried with backoff.
    NETWORK = "network"
    #: Handshake past its deadline, or a pong missing past ``pong_timeout``: retried.
    TIMEOUT = "timeout"
    #: A protocol violation, an unexpected close code, an oversized message: retried.
    PROTOCOL = "protocol"
    #: HTTP 429/418 with Retry-After: the next delay is at least ``retry_after``.
    RATE_LIMITED = "rate_limited"
    #: HTTP 418, the IP is banned: backs off at least ``retry_after`` and alarms at once.
    BANNED = "banned"
    #: A planned close (1001/1012, a server shutdown notice): reconnect at once, not counted.
    SERVER_CLOSED = "server_closed"
    #: Certificate verification, 401/403, a bad URL: retrying cannot help; closed at once.
    FATAL = "fatal"
    #: Anything else: retried with backoff.
    UNKNOWN = "unknown"


#: value -> kind: a dict lookup instead of the enum's call (about 1 us), on every failure
_KINDS = {kind.value: kind for kind in FailureKind}


def _failure_kind(value: object) -> FailureKind:
    if isinstance(value, FailureKind):
        return value
    if type(value) is str and value in _KINDS:
        return _KINDS[value]
    try:
        if not isinstance(value, str):
            raise ValueError
        return FailureKind(value)
    except ValueError:
        options = ", ".join(k.value for k in FailureKind)
        raise ValueError(f"kind: must be one of {options} (got {value!r})") from None


def _wall_time(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"wall_time: must be seconds since the epoch or None (got {value!r})")
    return float(value)


def _time(value: object) -> float:
    if type(value) is float and value == value:
        return value  # the common case, first: every event converts its time
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ValueError(f"now: must be a real number of seconds (got {value!r})")
    return float(value)


# ---------------------------------------------------------------- events (inputs)


@attrs.frozen(kw_only=True)
class Start:
    """The host wants a connection: leave ``idle`` and connect."""

    now: float = attrs.field(converter=_time)
    wall_time: float | None = attrs.field(default=None, converter=_wall_time)


@attrs.frozen(kw_only=True)
class TransportConnected:
    """TCP is up; TLS and the WebSocket upgrade follow (still under the attempt deadline)."""

    now: float = attrs.field(converter=_time)


@attrs.frozen(kw_only=True)
class HandshakeSucceeded:
    """TLS and the WebSocket upgrade completed: the connection is live."""

    now: float = attrs.field(converter=_time)
    wall_time: float | None = attrs.field(default=None, converter=_wall_time)


@attrs.frozen(kw_only=True)
class PongReceived:
    """A pong arrived. An unsolicited pong is counted and otherwise ignored."""

    now: float = attrs.field(converter=_time)


@attrs.frozen(kw_only=True)
class ConnectionFailed:
    """The attempt or the live connection failed; the transport is gone (wsproto style).

    Args:
        kind: the classification (see :class:`FailureKind`).
        reason: a short reason, e.g. the SSL reason ``DECRYPTION_FAILED_OR_BAD_RECORD_MAC``.
        detail: the original exception and traceback text, kept in the failure record (R3.1).
        retry_after: a server's Retry-After in seconds (429/418).
        wall_time: wall-clock seconds (since the epoch, UTC) of the failure: kept in the
            record (R3.1) and used by the minute-of-hour pattern test (R3.5); ``now`` is used
            when absent.
    """

    now: float = attrs.field(converter=_time)
    kind: FailureKind = attrs.field(converter=_failure_kind)
    reason: str = ""
    detail: str = ""
    retry_after: float | None = None
    wall_time: float | None = attrs.field(default=None, converter=_wall_time)


@attrs.frozen(kw_only=True)
class ConnectionHealthy:
    """The host vouches that the live connection is healthy before ``stable_after`` has
    passed (``BinanceStream``: its subscriptions are verified). Like reaching ``stable_after``:
    the consecutive-failure counter goes back to 0 (R1.4), a raised alarm is resolved, and a
    later failure is a drop, not a failed reconnect attempt (R1.3). Accepted only while live;
    idempotent there."""

    now: float = attrs.field(converter=_time)
    wall_time: float | None = attrs.field(default=None, converter=_wall_time)


@attrs.frozen(kw_only=True)
class Tick:
    """Time has passed: fire whatever deadline is due (retry, ping, pong or handshake timeout)."""

    now: float = attrs.field(converter=_time)
    wall_time: float | None = attrs.field(default=None, converter=_wall_time)


@attrs.frozen(kw_only=True)
class Stop:
    """The host stops the connection for good (idempotent once closed)."""

    now: float = attrs.field(converter=_time)
    reason: str = "stopped by host"


ConnectionEvent = (
    Start
    | TransportConnected
    | HandshakeSucceeded
    | ConnectionHealthy
    | PongReceived
    | ConnectionFailed
    | Tick
    | Stop
)

# ---------------------------------------------------------------- actions (outputs)


@attrs.frozen(kw_only=True)
class StateChanged:
    """The lifecycle moved from ``source`` to ``target`` because of ``reason``."""

    at: float
    source: str
    target: str
    reason: str


@attrs.frozen(kw_only=True)
class Connect:
    """Open the transport now; the whole handshake must finish by ``deadline`` (R1.5)."""

    attempt: int
    deadline: float


@attrs.frozen(kw_only=True)
class RestoreSubscriptions:
    """The connection is live again: restore every subscription (R1.4)."""

    attempt: int


@attrs.frozen(kw_only=True)
class SendPing:
    """Send a ping now; a pong must arrive by ``pong_deadline`` (R1.2)."""

    pong_deadline: float


@attrs.frozen(kw_only=True)
class Disconnect:
    """Close whatever is left of the transport."""

    reason: str


@attrs.frozen(kw_only=True)
class Wait:
    """Wait ``delay`` seconds (until ``until``), then the machine retries on a Tick (R1.1)."""

    delay: float
    until: float
    attempt: int


@attrs.frozen(kw_only=True)
class Alarm:
    """More than ``threshold`` failed reconnect attempts (attempts that never became healthy)
    within the alarm window, or a ban (R1.3). Raised once per episode: the next one can only
    come after a healthy connection resolved this one."""

    at: float
    failures_in_window: int
    window: float
    threshold: int
    last_kind: str
    last_reason: str
    #: wall-clock seconds since the epoch (UTC), when the host passes wall time
    wall_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class AlarmResolved:
    """The connection is live again after an alarm."""

    at: float
    raised_at: float
    duration: float
    failures_since_raised: int
    #: wall-clock seconds since the epoch (UTC), when the host passes wall time
    wall_at: float | None = None
    raised_wall_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class RaiseAlarm:
    """Log at ERROR and notify every notifier (R1.3)."""

    alarm: Alarm


@attrs.frozen(kw_only=True)
class ResolveAlarm:
    """Log and notify that the alarm is resolved."""

    resolution: AlarmResolved


@attrs.frozen(kw_only=True)
class PatternDetected:
    """A recurring failure pattern was found: log the report and notify (R3.5)."""

    report: PatternReport


@attrs.frozen(kw_only=True)
class GiveUp:
    """The machine closed because of a fatal failure or exhausted retries."""

    kind: str
    reason: str


ConnectionAction = (
    StateChanged
    | Connect
    | RestoreSubscriptions
    | SendPing
    | Disconnect
    | Wait
    | RaiseAlarm
    | ResolveAlarm
    | PatternDetected
    | GiveUp
)


@attrs.frozen(kw_only=True)
class FailureRecord:
    """One failure, as kept in the bounded history (R3.1, R3.3)."""

    at: float
    kind: str
    reason: str
    detail: str
    #: The state the failure happened in, and the attempt number (1 = first connect).
    state: str
    attempt: int
    #: Consecutive failures including this one (0 for planned closes).
    consecutive: int
    #: Seconds since the previous failure (None for the first).
    since_previous: float | None
    #: The delay chosen before the next attempt (None when the machine closed).
    delay: float | None
    #: The server's Retry-After, when it sent one (429/418/503).
    retry_after: float | None = None
    #: Wall-clock seconds since the epoch (UTC), when the host passes wall time (R3.1).
    wall_time: float | None = None
    #: True for a failed reconnect attempt (the attempt never became healthy: it counts
    #: towards the alarm, R1.3); False for the drop of a healthy connection or a planned close.
    attempt_failed: bool = True

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _maker(cls: type[_T]) -> Callable[..., _T]:
    """A private constructor of the frozen action ``cls``, taking its fields positionally in
    declaration order: the object ``cls(**fields)`` builds, at about half the cost (the
    generated ``__init__`` parses keywords, then sets each slot through a bound
    ``object.__setattr__``; this sets the slots through their descriptors). The machine builds
    several actions per event, so this is on its hot path. Only for classes whose fields have
    no default, converter or validator (checked here; ``tests/fsm/test_connection_machine.py``
    compares what both build)."""
    fields = attrs.fields(cls)  # type: ignore[arg-type]
    for field in fields:
        if field.default is not attrs.NOTHING or field.converter or field.validator:
            raise TypeError(f"{cls.__name__}.{field.name}: has a default, converter or validator")
    new = object.__new__
    setters = tuple(cls.__dict__[field.name].__set__ for field in fields)
    if len(setters) == 1:
        (set_a,) = setters

        def make1(a: Any) -> _T:
            made = new(cls)
            set_a(made, a)
            return made

        return make1
    if len(setters) == 2:
        set_a, set_b = setters

        def make2(a: Any, b: Any) -> _T:
            made = new(cls)
            set_a(made, a)
            set_b(made, b)
            return made

        return make2
    if len(setters) == 3:
        set_a, set_b, set_c = setters

        def make3(a: Any, b: Any, c: Any) -> _T:
            made = new(cls)
            set_a(made, a)
            set_b(made, b)
            set_c(made, c)
            return made

        return make3
    set_a, set_b, set_c, set_d = setters  # (StateChanged: no action has more fields)

    def make4(a: Any, b: Any, c: Any, d: Any) -> _T:
        made = new(cls)
        set_a(made, a)
        set_b(made, b)
        set_c(made, c)
        set_d(made, d)
        return made

    return make4


# The machine's fast constructors of its most frequent actions (positional, field order).
make_state_changed = _maker(StateChanged)
make_connect = _maker(Connect)
make_restore = _maker(RestoreSubscriptions)
make_send_ping = _maker(SendPing)
make_disconnect = _maker(Disconnect)
make_wait = _maker(Wait)
