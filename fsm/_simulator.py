"""A virtual-clock simulator: the real ConnectionMachine against a scripted faulty world.

No real time passes and no socket is opened: a discrete-event loop advances a virtual clock to
the next thing that happens (a machine deadline or a world event) and feeds the machine the
events a real adapter would. A simulated day of faults runs in a fraction of a second of CPU
(about 0.2 s for ``flaky-tls``, a reconnect every 40 s) and the cost grows linearly with the days.

The world: a TCP connect takes 0.05 s, the TLS + upgrade handshake 0.15 s, a ping round trip
0.03 s. Faults (from a schedule) change what the world does:

=================  ====================================================================
``drop``           the live connection fails with ``kind``/``reason`` (e.g. a bad record MAC)
``outage``         for ``duration`` s the server is down: live connections are reset and
                   connects are refused
``half_open``      for ``duration`` s the link silently drops everything (pongs never come,
                   handshakes hang)
``stall_handshake``  for ``duration`` s handshakes never complete
``rate_limit``     for ``duration`` s upgrades are answered 429 with ``retry_after``
``server_shutdown``  the server announces a restart: a planned close (``server_closed``)
``flap``           for ``duration`` s every connection is accepted, then dropped 0.5 s after
                   it went live with ``kind``/``reason`` (as the exchange closes with 1008)
=================  ====================================================================

Schedule files are TOML: optional ``name``, ``description`` and ``hours``, then one
``[[fault]]`` table per fault with ``type``, ``at`` (s from start), optional ``every`` (repeat
period, s) and ``until`` (s), and per type ``kind``, ``reason``, ``duration``, ``retry_after``.
A file is validated like a config file: every problem is a ``ConfigError`` line naming the
field, the rule and the value (clipped to 200 characters); a value of the wrong type (``kind =
[1]``) or nested too deeply for Python is a problem too, never an exception of another kind.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

import attrs

from ._config import ConnectionConfig
from ._connection import ConnectionMachine
from ._connection_events import (
    Connect,
    ConnectionAction,
    ConnectionEvent,
    ConnectionFailed,
    Disconnect,
    FailureKind,
    GiveUp,
    HandshakeSucceeded,
    PatternDetected,
    PongReceived,
    RaiseAlarm,
    ResolveAlarm,
    RestoreSubscriptions,
    SendPing,
    Start,
    StateChanged,
    Tick,
    TransportConnected,
    Wait,
)
from ._errors import ConfigError
from ._logfmt import _value, echo, escape_controls

__all__ = [
    "BUILTIN_SCHEDULES",
    "FAULT_TYPES",
    "Fault",
    "Schedule",
    "SimulationResult",
    "check_machine_class",
    "load_schedule",
    "simulate",
]

FAULT_TYPES = (
    "drop",
    "outage",
    "half_open",
    "stall_handshake",
    "rate_limit",
    "server_shutdown",
    "flap",
)
_WINDOW_TYPES = ("outage", "half_open", "stall_handshake", "rate_limit", "flap")
FLAP_AFTER = 0.5
TCP_LATENCY = 0.05
HANDSHAKE_LATENCY = 0.15
PING_RTT = 0.03
BAD_RECORD_MAC = "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"
#: The most virtual time one run may cover (a year): the machine's own pings alone make about
#: a million events a year at the default 30 s interval.
MAX_HOURS = 8784.0
#: The most fault strikes one run may schedule: a schedule is data, and a typo (``every =
#: 1e-7``) must be an error, not a run that never ends or exhausts memory.
MAX_STRIKES = 10_000_000


def _finite(value: object) -> TypeGuard[int | float]:
    """A real number a float can hold (TOML integers are unbounded: ``math.isfinite`` raises
    OverflowError on one beyond float range)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_hours(value: object, name: str = "hours") -> float:
    """``value`` as virtual hours, or ConfigError naming ``name``, the value and the rule."""
    if not _finite(value) or not 0 < value <= MAX_HOURS:
        raise ConfigError(
            [f"{name}: must be a finite number > 0 and <= {MAX_HOURS:g} (got {value!r})"]
        )
    return float(value)


@attrs.frozen(kw_only=True)
class Fault:
    type: str
    at: float
    every: float | None = None
    until: float | None = None
    kind: str = "network"
    reason: str = ""
    duration: float = 0.0
    retry_after: float | None = None

    def count(self, end: float) -> int:
        """How many times this fault strikes before ``end`` (without listing them)."""
        stop = end if self.until is None else min(end, self.until)
        if self.at >= stop:
            return 0
        if self.every is None:
            return 1
        return math.ceil((stop - self.at) / self.every)

    def strike(self, k: int) -> float:
        """The time of strike ``k`` (0-based): computed, never accumulated, so every use of
        the schedule (strikes, window lookups) agrees to the bit."""
        return self.at + k * (self.every or 0.0)

    def times(self, end: float) -> Iterator[float]:
        """Every time this fault strikes before ``end``, generated lazily."""
        for k in range(self.count(end)):
            yield self.strike(k)


@attrs.frozen(kw_only=True)
class Schedule:
    name: str
    description: str
    hours: float
    faults: tuple[Fault, ...]


def _builtin(name: str, seed: int) -> Schedule:
    if name == "flaky-tls":
        return Schedule(
            name=name,
            description="a bad record MAC on the live connection every 40 s",
            hours=1.0,
            faults=(Fault(type="drop", at=40.0, every=40.0, kind="ssl", reason=BAD_RECORD_MAC),),
        )
    if name == "outage":
        return Schedule(
            name=name,
            description="the server is down for 10 minutes, 5 minutes in",
            hours=1.0,
            faults=(Fault(type="outage", at=300.0, duration=600.0, reason="connection refused"),),
        )
    if name == "flapping":
        return Schedule(
            name=name,
            description="every connection accepted, then closed 1008 0.5 s later, for 30 minutes",
            hours=0.5,
            faults=(
                Fault(
                    type="flap",
                    at=0.0,
                    duration=1800.0,
                    kind="protocol",
                    reason="close 1008: too many requests",
                ),
            ),
        )
    if name == "hourly":
        return Schedule(
            name=name,
            description="a drop at minute 17 of every hour, over a day",
            hours=24.0,
            faults=(
                Fault(type="drop", at=17 * 60.0, every=3600.0, kind="ssl", reason=BAD_RECORD_MAC),
            ),
        )
    if name == "random":
        rng = random.Random(seed)
        faults: list[Fault] = []
        t = 0.0
        kinds = ("ssl", "network", "protocol", "unknown")
        while True:
            t += rng.expovariate(1 / 900.0)  # about four faults an hour
            if t >= 24 * 3600.0:
                break
            roll = rng.random()
            if roll < 0.75:
                kind = rng.choice(kinds)
                reason = BAD_RECORD_MAC if kind == "ssl" else f"random {kind} fault"
                faults.append(Fault(type="drop", at=round(t, 3), kind=kind, reason=reason))
            elif roll < 0.85:
                faults.append(Fault(type="outage", at=round(t, 3), duration=rng.uniform(30, 600)))
            elif roll < 0.95:
                faults.append(Fault(type="half_open", at=round(t, 3), duration=rng.uniform(5, 120)))
            else:
                faults.append(Fault(type="server_shutdown", at=round(t, 3)))
        return Schedule(
            name=name,
            description=f"random faults, about four an hour (seed {seed})",
            hours=24.0,
            faults=tuple(faults),
        )
    raise KeyError(name)


BUILTIN_SCHEDULES = ("flaky-tls", "outage", "hourly", "random", "flapping")

_FAULT_KEYS = {f.name for f in attrs.fields(Fault)}


def _schedule_from_toml(path: Path, data: dict[str, Any]) -> Schedule:
    problems: list[str] = []
    unknown = set(data) - {"name", "description", "hours", "fault"}
    problems += [f"{key}: unknown key" for key in sorted(unknown)]
    raw_faults = data.get("fault", [])
    if not isinstance(raw_faults, list):
        problems.append(f"fault: must be an array of tables [[fault]] (got {echo(raw_faults)})")
        raw_faults = []
    faults: list[Fault] = []
    for i, raw in enumerate(raw_faults):
        where = f"fault[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table (got {echo(raw)})")
            continue
        problems += [f"{where}.{k}: unknown key" for k in sorted(set(raw) - _FAULT_KEYS)]
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in FAULT_TYPES:
            problems.append(
                f"{where}.type: must be one of {', '.join(FAULT_TYPES)} (got {echo(kind)})"
            )
        for key in ("at", "every", "until", "duration", "retry_after"):
            value = raw.get(key)
            if key == "at" and value is None:
                problems.append(f"{where}.at: is required (seconds from the start)")
            elif value is not None and (
                not _finite(value) or value < 0 or (key == "every" and value == 0)
            ):
                rule = "> 0" if key == "every" else ">= 0"
                problems.append(
                    f"{where}.{key}: must be a finite number {rule} (got {echo(value)})"
                )
        if "reason" in raw and not isinstance(raw["reason"], str):
            problems.append(f"{where}.reason: must be a string (got {echo(raw['reason'])})")
        failure_kinds = {k.value for k in FailureKind}
        if "kind" in raw and not (isinstance(raw["kind"], str) and raw["kind"] in failure_kinds):
            problems.append(f"{where}.kind: must be a failure kind (got {echo(raw['kind'])})")
        if kind in _WINDOW_TYPES and not raw.get("duration"):
            problems.append(f"{where}.duration: is required and > 0 for a {kind} fault")
        if not problems:
            fields: dict[str, Any] = {
                k: (float(v) if isinstance(v, int) else v) for k, v in raw.items()
            }
            faults.append(Fault(**fields))
    hours = data.get("hours", 1.0)
    try:
        check_hours(hours)
    except ConfigError as exc:
        problems += exc.problems
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            problems.append(f"{key}: must be a string (got {echo(data[key])})")
    if problems:
        raise ConfigError([f"{path}: {p}" for p in problems])
    return Schedule(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", f"faults from {path}")),
        hours=float(hours),
        faults=tuple(faults),
    )


def load_schedule(name_or_path: str, *, seed: int = 0) -> Schedule:
    """A built-in schedule by name, or a TOML schedule file (see the module docs)."""
    if name_or_path in BUILTIN_SCHEDULES:
        return _builtin(name_or_path, seed)
    path = Path(name_or_path)
    if not path.exists():
        raise ConfigError(
            [
                f"schedule: {name_or_path!r} is neither a built-in"
                f" ({', '.join(BUILTIN_SCHEDULES)}) nor an existing file"
            ]
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(
            [f"{path}: invalid schedule file: {escape_controls(str(exc)[:300])}"]
        ) from None
    except RecursionError:  # tomllib recurses once per level of nesting
        raise ConfigError([f"{path}: invalid schedule file: nested too deeply"]) from None
    try:
        return _schedule_from_toml(path, data)
    except RecursionError:  # a value nested deeper than Python can compare or copy
        raise ConfigError([f"{path}: invalid schedule file: nested too deeply"]) from None


#: A log line not yet formatted: (virtual time, its keys, their values).
_Record = tuple[float, tuple[str, ...], tuple[Any, ...]]


@attrs.define
class SimulationResult:
    """What :func:`simulate` found. ``lines``: the run's log lines (``key=value``, one per
    lifecycle change, backoff, alarm, ...), formatted when first read: a day of ``flaky-tls``
    writes about 10,000 of them, and formatting them took a third of the run's CPU for a
    caller that reads only the totals (with ``emit=``, each line is formatted as it happens)."""

    schedule: str
    hours: float
    totals: dict[str, Any]
    _lines: list[str] = attrs.field(alias="lines", eq=False, repr=False)
    alarms: list[dict[str, Any]]
    resolutions: list[dict[str, Any]]
    patterns: list[dict[str, Any]]
    timeline: list[tuple[float, str]]
    machine: ConnectionMachine
    #: the lines still to format, in order, after those in _lines
    _pending: list[_Record] = attrs.field(factory=list, eq=False, repr=False, kw_only=True)

    @property
    def lines(self) -> list[str]:
        """The log lines, in order (the same list object on every read)."""
        if self._pending:
            self._lines.extend(_format_line(*record) for record in self._pending)
            self._pending.clear()
        return self._lines


def _format_line(t: float, keys: tuple[str, ...], values: tuple[Any, ...]) -> str:
    """``format_kv(t=_clock(t), **dict(zip(keys, values)))``, less the checks that cannot
    fire: the keys are the constants below (plain names) and the clock is digits, ``:`` and
    ``.`` (never quoted); each value is written by format_kv's own rule."""
    return f"t={_clock(t)} " + " ".join(
        [f"{key}={_value(value)}" for key, value in zip(keys, values, strict=True)]
    )


# The keys of each kind of line the simulator writes (event first).
_STATE_KEYS = ("event", "source", "target", "reason")
_BACKOFF_KEYS = ("event", "delay", "attempt")
_ALARM_KEYS = ("event", "failures", "window", "threshold", "last")
_RESOLVED_KEYS = ("event", "after", "failures")
_PATTERN_KEYS = ("event", "report")
_GIVE_UP_KEYS = ("event", "kind", "reason")


def _max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` (sorted) in any half-open window of ``window`` seconds."""
    best = start = 0
    for end in range(len(times)):
        while times[end] - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def _clock(t: float) -> str:
    hours, rest = divmod(t, 3600.0)
    minutes, seconds = divmod(rest, 60.0)
    return f"{int(hours):02d}:{int(minutes):02d}:{seconds:06.3f}"


class _World:
    """The schedule's windows, looked up in O(log n) without listing a repeating fault's
    strikes: a repeating window fault is one arithmetic check (its latest start before ``t``
    has the latest end, all its windows being as long); one-off windows are sorted by start
    with a running maximum of their ends, so one bisection finds a window covering ``t``."""

    def __init__(self, schedule: Schedule, end: float) -> None:
        self.end = end
        self.repeating: dict[str, list[Fault]] = {k: [] for k in _WINDOW_TYPES}
        once: dict[str, list[tuple[float, float, Fault]]] = {k: [] for k in _WINDOW_TYPES}
        for fault in schedule.faults:
            if fault.type not in _WINDOW_TYPES or fault.count(end) == 0:
                continue
            if fault.every is None:
                once[fault.type].append((fault.at, fault.at + fault.duration, fault))
            else:
                self.repeating[fault.type].append(fault)
        self.starts: dict[str, list[float]] = {}
        self.reach: dict[str, list[tuple[float, Fault]]] = {}  # the running (max end, fault)
        for kind, windows in once.items():
            windows.sort(key=lambda w: w[0])
            self.starts[kind] = [w[0] for w in windows]
            reach: list[tuple[float, Fault]] = []
            for _, stop, fault in windows:
                reach.append((stop, fault) if not reach or stop > reach[-1][0] else reach[-1])
            self.reach[kind] = reach

    def active(self, kind: str, t: float) -> Fault | None:
        for fault in self.repeating[kind]:
            n = fault.count(self.end)
            if t < fault.at or n == 0:
                continue
            assert fault.every is not None
            k = min(n - 1, math.floor((t - fault.at) / fault.every))
            while k + 1 < n and fault.strike(k + 1) <= t:  # floor's rounding, one step at most
                k += 1
            while k > 0 and fault.strike(k) > t:
                k -= 1
            if fault.strike(k) <= t < fault.strike(k) + fault.duration:
                return fault
        i = bisect.bisect_right(self.starts[kind], t)
        if i and self.reach[kind][i - 1][0] > t:
            return self.reach[kind][i - 1][1]
        return None


def check_machine_class(machine_class: Any) -> None:
    """``machine_class`` must be ConnectionMachine or a subclass (a clear error otherwise)."""
    if not (isinstance(machine_class, type) and issubclass(machine_class, ConnectionMachine)):
        raise TypeError(
            f"machine_class: must be ConnectionMachine or a subclass (got {machine_class!r})"
        )


def simulate(
    schedule: Schedule,
    config: ConnectionConfig | None = None,
    *,
    hours: float | None = None,
    seed: int = 0,
    emit: Callable[[str], None] | None = None,
    machine_class: type[ConnectionMachine] = ConnectionMachine,
) -> SimulationResult:
    """Run ``schedule`` for ``hours`` of virtual time; return the timeline and totals.

    ``machine_class`` is the machine simulated: a host's :class:`ConnectionMachine` subclass
    (its public hooks changed) runs against the same faulty world."""
    check_machine_class(machine_class)
    config = config or ConnectionConfig()
    span = check_hours(schedule.hours if hours is None else hours) * 3600.0
    strikes = [fault.count(span) for fault in schedule.faults]
    if sum(strikes) > MAX_STRIKES:
        worst = max(range(len(strikes)), key=strikes.__getitem__)
        raise ConfigError(
            [
                f"fault[{worst}]: strikes {strikes[worst]:,} times in {span / 3600.0:g} h; a run"
                f" may schedule at most {MAX_STRIKES:,} strikes in all (got {sum(strikes):,});"
                " raise its every, or shorten its until or the hours"
            ]
        )
    machine = machine_class(config, rng=random.Random(seed))
    world = _World(schedule, span)
    lines: list[str] = []
    pending: list[_Record] = []  # formatted when read (SimulationResult.lines), unless emitted
    alarms: list[dict[str, Any]] = []
    resolutions: list[dict[str, Any]] = []
    patterns: list[dict[str, Any]] = []
    timeline: list[tuple[float, str]] = [(0.0, machine.state)]

    def say(t: float, keys: tuple[str, ...], *values: Any) -> None:
        if emit is None:
            pending.append((t, keys, values))
            return
        line = _format_line(t, keys, values)
        lines.append(line)
        emit(line)

    queue: list[tuple[float, int, str, int]] = []  # (time, seq, what, attempt tag)
    seq = 0

    def later(t: float, what: str, tag: int = 0) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(queue, (t, seq, what, tag))

    def strike_later(t: float, index: int) -> None:
        # At equal times a strike comes before anything else, lower fault index first: the
        # order the strikes had when they were all queued up front.
        heapq.heappush(queue, (t, index - len(schedule.faults), f"strike:{index}", 0))

    # Lazily: each fault has its next strike queued, and queues the one after when it fires.
    upcoming_strikes: list[tuple[Iterator[float], int]] = []
    for index, fault in enumerate(schedule.faults):
        if fault.type in ("drop", "outage", "half_open", "server_shutdown"):
            times = fault.times(span)
            first = next(times, None)
            if first is not None:
                upcoming_strikes.append((times, index))
                strike_later(first, index)
    strike_times = {index: times for times, index in upcoming_strikes}

    connects: list[float] = []

    def feed(event: ConnectionEvent) -> None:
        now = event.now
        for action in machine.handle(event):
            # most actions first; Disconnect and RestoreSubscriptions need nothing here
            if isinstance(action, StateChanged):
                timeline.append((now, action.target))
                say(now, _STATE_KEYS, "state", action.source, action.target, action.reason)
            elif isinstance(action, Connect):
                connects.append(now)
                later(now + TCP_LATENCY, "tcp", action.attempt)
            elif isinstance(action, Disconnect | RestoreSubscriptions):
                continue
            elif isinstance(action, Wait):
                say(now, _BACKOFF_KEYS, "backoff", round(action.delay, 3), action.attempt)
            elif isinstance(action, SendPing):
                later(now + PING_RTT, "pong", machine.attempt)
            else:
                notice(now, action)

    def notice(now: float, action: ConnectionAction) -> None:
        if isinstance(action, RaiseAlarm):
            alarms.append(action.alarm.as_dict())
            a = action.alarm
            last = f"{a.last_kind}: {a.last_reason}"
            say(now, _ALARM_KEYS, "alarm", a.failures_in_window, a.window, a.threshold, last)
        elif isinstance(action, ResolveAlarm):
            resolutions.append(action.resolution.as_dict())
            r = action.resolution
            say(now, _RESOLVED_KEYS, "resolved", round(r.duration, 3), r.failures_since_raised)
        elif isinstance(action, PatternDetected):
            patterns.append(action.report.as_dict())
            say(now, _PATTERN_KEYS, "pattern", action.report.describe())
        elif isinstance(action, GiveUp):
            say(now, _GIVE_UP_KEYS, "give_up", action.kind, action.reason)

    started = time.process_time()  # CPU time, as --summary reports it (cpu_seconds)
    feed(Start(now=0.0))
    while True:
        deadline = machine.next_deadline
        upcoming = queue[0][0] if queue else math.inf
        now = min(deadline if deadline is not None else math.inf, upcoming)
        if now >= span or machine.state == "closed":
            break
        if deadline is not None and deadline <= upcoming:
            feed(Tick(now=now))
            continue
        _, _, what, tag = heapq.heappop(queue)
        stale = tag != machine.attempt
        if what == "tcp":
            if stale or machine.state != "connecting":
                continue
            if world.active("outage", now):
                feed(
                    ConnectionFailed(
                        now=now, kind="network", reason="[Errno 111] Connection refused"
                    )
                )
            else:
                feed(TransportConnected(now=now))
                later(now + HANDSHAKE_LATENCY, "handshake", machine.attempt)
        elif what == "handshake":
            if stale or machine.state != "handshaking":
                continue
            if world.active("half_open", now) or world.active("stall_handshake", now):
                continue  # hangs: the machine's handshake deadline will fire
            limited = world.active("rate_limit", now)
            if world.active("outage", now):
                feed(ConnectionFailed(now=now, kind="network", reason="connection reset by peer"))
            elif limited is not None:
                feed(
                    ConnectionFailed(
                        now=now,
                        kind="rate_limited",
                        reason="HTTP 429 Too Many Requests",
                        retry_after=limited.retry_after,
                    )
                )
            else:
                feed(HandshakeSucceeded(now=now))
                if world.active("flap", now) is not None:
                    later(now + FLAP_AFTER, "flapdrop", machine.attempt)
        elif what == "flapdrop":
            flap = world.active("flap", now)
            if stale or machine.state != "live" or flap is None:
                continue
            feed(ConnectionFailed(now=now, kind=flap.kind, reason=flap.reason))
        elif what == "pong":
            if stale or machine.state != "live" or world.active("half_open", now):
                continue
            feed(PongReceived(now=now))
        elif what.startswith("strike:"):
            index = int(what.split(":")[1])
            fault = schedule.faults[index]
            following = next(strike_times[index], None)
            if following is not None:
                strike_later(following, index)
            if machine.state != "live":
                continue
            if fault.type == "drop":
                feed(ConnectionFailed(now=now, kind=fault.kind, reason=fault.reason))
            elif fault.type == "outage":
                feed(ConnectionFailed(now=now, kind="network", reason="connection reset by peer"))
            elif fault.type == "server_shutdown":
                feed(ConnectionFailed(now=now, kind="server_closed", reason="serverShutdown"))
            # half_open: nothing visible; the missing pong gives it away
    cpu = time.process_time() - started
    end = min(span, max(machine.last_event_at or 0.0, 0.0)) if machine.state == "closed" else span
    stats = machine.stats(now=end)
    live_time = stats["time_in_state"]["live"]
    totals = {
        "schedule": schedule.name,
        "simulated_hours": round(span / 3600.0, 3),
        "final_state": machine.state,
        "attempts": stats["total_attempts"],
        "successes": stats["successes"],
        "failures": stats["failures"],
        "failures_by_kind": stats["failures_by_kind"],
        "failed_attempts": stats["failed_attempts"],
        "drops": stats["drops"],
        "max_attempts_per_5min": _max_in_window(connects, 300.0),
        "alarms": stats["alarm_count"],
        "resolved": stats["alarms_resolved"],
        "patterns": len(patterns),
        "availability": round(live_time / end, 6) if end > 0 else 0.0,
        "cpu_seconds": round(cpu, 3),
    }
    return SimulationResult(
        schedule=schedule.name,
        hours=span / 3600.0,
        totals=totals,
        lines=lines,
        pending=pending,
        alarms=alarms,
        resolutions=resolutions,
        patterns=patterns,
        timeline=timeline,
        machine=machine,
    )
