"""A plain reference model of the connection rules, and a Hypothesis state machine that checks
:class:`regulator.fsm.ConnectionMachine` against it after every step.

The model is written from the rules (R1.1-R1.5, R3.1, R3.3), not from the machine's code: a
transition table, an unbounded list of failed reconnect attempts (attempts that never became
healthy: R1.3 counts only those), and the deadlines. A host checks its own
configuration with::

    from hypothesis import settings
    from regulator.fsm import load_config
    from regulator.specs import connection_lifecycle_spec

    TestMyConnection = connection_lifecycle_spec(load_config("prod.toml").connection).TestCase
    TestMyConnection.settings = settings(max_examples=200, stateful_step_count=60)

``machine_class`` checks a host's own subclass of the machine instead. The returned class
records which declared transitions (source, event, target) its examples exercised
(:func:`regulator.specs.coverage_report`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from ..fsm import (
    ConnectionConfig,
    ConnectionEvent,
    ConnectionFailed,
    ConnectionHealthy,
    ConnectionMachine,
    Disconnect,
    FailureKind,
    HandshakeSucceeded,
    IllegalEventError,
    PongReceived,
    RaiseAlarm,
    ResolveAlarm,
    RestoreSubscriptions,
    SendPing,
    Start,
    StateChanged,
    Stop,
    Tick,
    TransportConnected,
    Wait,
)
from ._coverage import next_transition
from ._machine_spec import MachineSpec, machine_spec

__all__ = [
    "CONNECTION_TABLE",
    "ConnectionModel",
    "connection_configs",
    "connection_lifecycle_spec",
]

#: (state, event) -> next state, for the events whose target does not depend on counters.
CONNECTION_TABLE: dict[tuple[str, str], str] = {
    ("idle", "start"): "connecting",
    ("connecting", "transport_connected"): "handshaking",
    ("handshaking", "handshake_succeeded"): "live",
    ("backing_off", "retry"): "connecting",
    ("alarmed", "retry"): "connecting",
    **{
        (s, "stop"): "closed"
        for s in ("idle", "connecting", "handshaking", "live", "backing_off", "alarmed")
    },
}
FAILABLE = ("connecting", "handshaking", "live")
#: Where the last of a run of failed attempts falls, in alarm windows after the first: inside
#: (half, three quarters, just inside), exactly at the edge, just outside, far outside.
WINDOW_SPANS = (0.5, 0.75, 0.999, 1.0, 1.001, 1.5)


def _window_edge(first: float, window: float, span: float) -> float:
    """``first + span * window``; at ``span`` 1, a time whose ``time - window`` is ``first``
    exactly when one is a few ulps away (the edge as the machine's comparison sees it)."""
    target = first + span * window
    if span != 1.0:
        return target
    for direction in (math.inf, -math.inf):
        candidate = target
        for _ in range(4):
            if candidate - window == first:
                return candidate
            candidate = math.nextafter(candidate, direction)
    return target


@attrs.define
class ConnectionModel:
    """The rules, executed the plain way."""

    cfg: ConnectionConfig
    state: str = "idle"
    consecutive: int = 0
    alarm_active: bool = False
    alarms: int = 0
    resolutions: int = 0
    failed_attempts: list[float] = attrs.Factory(list)
    episode_start: int = 0
    last_attempt_failed: bool = False
    records: list[dict[str, Any]] = attrs.Factory(list)
    attempt_deadline: float | None = None
    retry_at: float | None = None
    next_ping: float | None = None
    pong_deadline: float | None = None
    live_since: float | None = None
    recovered: bool = True

    def base_delay(self, n: int) -> float:
        # initial_delay * factor**(n-1), capped; computed in logs to avoid overflow.
        cfg = self.cfg
        exponent = (n - 1) * math.log(cfg.backoff_factor)
        if exponent >= math.log(cfg.max_delay / cfg.initial_delay):
            return cfg.max_delay
        return cfg.initial_delay * math.exp(exponent)

    def delay_bounds(self, n: int, retry_after: float | None) -> tuple[float, float]:
        base = self.base_delay(n)
        low = base * (1 - self.cfg.jitter)
        high = min(base * (1 + self.cfg.jitter), self.cfg.max_delay)
        if retry_after is not None:
            low, high = max(low, retry_after), max(high, retry_after)
        return low, high

    def recover(self) -> bool:
        """The live connection became healthy; return whether an alarm was resolved."""
        self.recovered = True
        self.consecutive = 0
        resolved = self.alarm_active
        self.alarm_active = False
        self.resolutions += int(resolved)
        if resolved:  # a new episode counts only the failed attempts after this one
            self.episode_start = len(self.failed_attempts)
        return resolved

    def fail(self, now: float, kind: str) -> tuple[str, bool]:
        """Apply a failure; return (new state, whether a new alarm is due)."""
        counted = kind != "server_closed"
        healthy = self.state == "live" and (
            self.recovered or now - (self.live_since or now) >= self.cfg.stable_after
        )
        if healthy and not self.recovered:
            self.recover()
        # R1.3: only attempts that never became healthy are reconnect failures.
        attempt_failed = counted and not healthy
        self.last_attempt_failed = attempt_failed
        if healthy:
            self.consecutive = 0
        if counted:
            self.consecutive += 1
        if attempt_failed:
            self.failed_attempts.append(now)
        in_window = sum(
            1 for t in self.failed_attempts[self.episode_start :] if t > now - self.cfg.alarm_window
        )
        new_alarm = False
        if kind == "fatal" or (
            counted and self.cfg.max_retries is not None and self.consecutive > self.cfg.max_retries
        ):
            self.state = "closed"
        elif (
            self.alarm_active
            or (attempt_failed and in_window > self.cfg.alarm_failures)
            or kind == "banned"
        ):
            new_alarm = not self.alarm_active
            self.alarm_active = True
            self.alarms += int(new_alarm)
            self.state = "alarmed"
        else:
            self.state = "backing_off"
        self.attempt_deadline = self.next_ping = self.pong_deadline = self.live_since = None
        return self.state, new_alarm


def connection_configs(draw_jitter: bool = True) -> st.SearchStrategy[ConnectionConfig]:
    """Valid connection configs with small, test-friendly timings."""

    def build(
        initial: float, span: float, factor: float, jitter: float, **rest: Any
    ) -> ConnectionConfig:
        return ConnectionConfig(
            initial_delay=initial,
            max_delay=initial * span,
            backoff_factor=factor,
            jitter=jitter,
            **rest,
        )

    return st.builds(
        build,
        initial=st.floats(0.01, 5.0),
        span=st.just(1.0) | st.floats(1.0, 4.0) | st.floats(1.0, 100.0),
        factor=st.floats(1.0, 4.0),
        jitter=st.floats(0.0, 0.9) if draw_jitter else st.just(0.0),
        ping_interval=st.floats(0.5, 60.0),
        pong_timeout=st.floats(0.1, 30.0),
        handshake_timeout=st.floats(0.1, 60.0),
        alarm_failures=st.integers(0, 6),
        alarm_window=st.floats(1.0, 600.0),
        history_size=st.integers(1, 12),
        max_retries=st.none() | st.integers(0, 8),
        stable_after=st.just(0.0) | st.floats(0.0, 30.0),
    )


def connection_lifecycle_spec(
    config: ConnectionConfig | None = None,
    *,
    machine_class: type[ConnectionMachine] = ConnectionMachine,
    model: Callable[[ConnectionConfig], ConnectionModel] = ConnectionModel,
) -> type[MachineSpec]:
    """A :func:`~regulator.specs.machine_spec` suite checking ConnectionMachine against
    :class:`ConnectionModel`.

    With ``config`` None each run draws a config from :func:`connection_configs`;
    ``machine_class`` is the machine checked (a host's own subclass); ``model`` builds the
    reference model from the config: a host whose subclass changes a rule through a public
    hook (``retry_delay``: linear backoff, say) passes a :class:`ConnectionModel` subclass
    with the same change (``base_delay``). Every rule is reachable
    in a short example on any valid config: time jumps to the next deadline or by any
    fraction of the config's longest period, and a failed attempt can be followed by its
    retry in one step.
    """

    class ConnectionLifecycle(MachineSpec):
        """The connection's rules, added to :class:`~regulator.specs.MachineSpec` by
        :func:`~regulator.specs.machine_spec`: typed events at drawn times, their actions,
        refused events, deadlines; the base checks state, twin and coverage."""

        twin_class: ClassVar[type[ConnectionMachine]]

        def __init__(self) -> None:
            super().__init__()
            self.machine: ConnectionMachine | None = None
            self.twin: ConnectionMachine | None = None
            self.model: ConnectionModel | None = None
            self.now = 0.0
            self.seen_closed = False
            self.actions: list[Any] = []

        # -- setup: a rule, because `initialize` cannot be drawn lazily with a fixed config.
        # Once a machine is closed a fresh one starts, so one example covers many lifecycles.
        @precondition(lambda self: self.model is None or self.model.state == "closed")
        @rule(
            cfg=connection_configs() if config is None else st.just(config),
            seed=st.integers(0, 2**16),
        )
        def setup(self, cfg: ConnectionConfig, seed: int) -> None:
            self.begin(
                machine_class(cfg, rng=random.Random(seed)),
                self.twin_class(cfg, rng=random.Random(seed)),
                model(cfg),
            )
            self.seen_closed = False

        def _m(self) -> tuple[ConnectionMachine, ConnectionModel]:
            assert self.machine is not None and self.model is not None
            return self.machine, self.model

        def _apply(self, event: Any) -> list[Any]:
            machine, _ = self._m()
            self.actions = machine.handle(event)
            # the compiled engine and python-statemachine's send() agree, step by step
            assert self.twin is not None and self.twin.handle(event) == self.actions, event
            assert self.twin.state == machine.state
            return self.actions

        def _check_failure_actions(
            self, actions: list[Any], new_alarm: bool, n: int, retry_after: float | None
        ) -> None:
            _, model = self._m()
            # the failed transport is closed, once, whatever follows (R1.1: reconnect anew)
            assert sum(isinstance(a, Disconnect) for a in actions) == 1, actions
            raised = [a for a in actions if isinstance(a, RaiseAlarm)]
            assert len(raised) == int(new_alarm), (raised, new_alarm)
            waits = [a for a in actions if isinstance(a, Wait)]
            if model.state == "closed":
                assert not waits
                return
            assert len(waits) == 1
            delay = waits[0].delay
            if model.records and model.records[-1]["kind"] == "server_closed":
                assert delay == max(0.0, retry_after or 0.0), delay  # planned: at once
            else:
                low, high = model.delay_bounds(n, retry_after)
                assert low - 1e-9 <= delay <= high + 1e-9, (delay, low, high)
                if retry_after is None:
                    assert (
                        model.cfg.initial_delay * (1 - model.cfg.jitter) - 1e-9
                        <= delay
                        <= model.cfg.max_delay + 1e-9
                    )
            model.retry_at = self.now + delay

        def _model_fail(self, now: float, kind: str, retry_after: float | None) -> None:
            _, model = self._m()
            source = model.state
            _, new_alarm = model.fail(now, kind)
            model.records.append(
                {
                    "at": now,
                    "kind": kind,
                    "state": source,
                    "consecutive": model.consecutive if kind != "server_closed" else 0,
                    "attempt_failed": model.last_attempt_failed,
                }
            )
            self._check_failure_actions(self.actions, new_alarm, model.consecutive, retry_after)

        # -- rules, one per event --------------------------------------------------------
        @precondition(
            lambda self: (
                self.machine is not None and self.model is not None and self.model.state == "idle"
            )
        )
        @rule()
        def start(self) -> None:
            _, model = self._m()
            self._apply(Start(now=self.now))
            model.state = "connecting"
            model.attempt_deadline = self.now + model.cfg.handshake_timeout

        @precondition(lambda self: self.model is not None and self.model.state == "connecting")
        @rule()
        def transport_connected(self) -> None:
            self._apply(TransportConnected(now=self.now))
            self._m()[1].state = "handshaking"

        @precondition(lambda self: self.model is not None and self.model.state == "handshaking")
        @rule()
        def handshake_succeeded(self) -> None:
            _, model = self._m()
            actions = self._apply(HandshakeSucceeded(now=self.now))
            assert any(isinstance(a, RestoreSubscriptions) for a in actions)  # R1.4
            resolved = [a for a in actions if isinstance(a, ResolveAlarm)]
            model.state = "live"
            model.attempt_deadline = None
            model.live_since = self.now
            model.next_ping = self.now + model.cfg.ping_interval
            model.pong_deadline = None
            model.recovered = False
            # R1.3: the episode ends when a connection is healthy, not merely live
            expected = model.recover() if model.cfg.stable_after == 0.0 else False
            assert len(resolved) == int(expected), (resolved, expected)

        @precondition(lambda self: self.model is not None and self.model.state == "connecting")
        @rule()
        def establish(self) -> None:
            """TCP, TLS and upgrade succeed in one step: live is one rule away."""
            self.transport_connected()
            self.handshake_succeeded()

        @precondition(lambda self: self.model is not None and self.model.state == "live")
        @rule()
        def vouch_healthy(self) -> None:
            """The host says the connection is healthy (e.g. subscriptions verified)."""
            _, model = self._m()
            actions = self._apply(ConnectionHealthy(now=self.now))
            expected = False if model.recovered else model.recover()
            assert [type(a) for a in actions] == [ResolveAlarm] * int(expected), actions

        @precondition(lambda self: self.model is not None and self.model.state == "live")
        @rule()
        def pong(self) -> None:
            _, model = self._m()
            self._apply(PongReceived(now=self.now))
            model.pong_deadline = None

        @precondition(lambda self: self.model is not None and self.model.state in FAILABLE)
        @rule(
            kind=st.sampled_from([k.value for k in FailureKind]),
            retry_after=st.none() | st.floats(0.0, 120.0),
        )
        def fail(self, kind: str, retry_after: float | None) -> None:
            self._apply(
                ConnectionFailed(
                    now=self.now, kind=kind, reason="injected", retry_after=retry_after
                )
            )
            self._model_fail(self.now, kind, retry_after)

        @precondition(lambda self: self.model is not None and self.model.state in FAILABLE)
        @rule(kind=st.sampled_from(["fatal", "banned"]), in_handshake=st.booleans())
        def fail_hard(self, kind: str, in_handshake: bool) -> None:
            """A failure that gives up (fatal) or alarms at once (a ban), in any state; from
            connecting, optionally once the TCP connection is up."""
            if in_handshake and self._m()[1].state == "connecting":
                self.transport_connected()
            self.fail(kind, None)

        @precondition(lambda self: self.model is not None and self.model.state != "closed")
        @rule()
        def stop(self) -> None:
            _, model = self._m()
            actions = self._apply(Stop(now=self.now))
            assert sum(isinstance(a, Disconnect) for a in actions) == 1, actions
            model.state = "closed"

        @precondition(lambda self: self.model is not None)
        @rule(
            event=st.sampled_from(
                ["start", "transport_connected", "handshake_succeeded", "healthy", "fail", "pong"]
            )
        )
        def illegal_event(self, event: str) -> None:
            machine, model = self._m()
            accepted = {
                "start": ("idle",),
                "transport_connected": ("connecting",),
                "handshake_succeeded": ("handshaking",),
                "healthy": ("live",),
                "fail": FAILABLE,
                "pong": ("live",),
            }[event]
            if model.state in accepted:
                return
            before = machine.snapshot()
            factory: dict[str, Callable[[], ConnectionEvent]] = {
                "start": lambda: Start(now=self.now),
                "transport_connected": lambda: TransportConnected(now=self.now),
                "handshake_succeeded": lambda: HandshakeSucceeded(now=self.now),
                "healthy": lambda: ConnectionHealthy(now=self.now),
                "fail": lambda: ConnectionFailed(now=self.now, kind="ssl"),
                "pong": lambda: PongReceived(now=self.now),
            }
            try:
                machine.handle(factory[event]())
            except IllegalEventError:
                pass
            else:
                raise AssertionError(f"{event} accepted in {model.state}")
            assert machine.snapshot() == before  # never half-applied

        @precondition(lambda self: self.model is not None)
        @rule(dt=st.floats(0.0, 120.0))
        def advance(self, dt: float) -> None:
            """Time passes; the model fires its deadlines in order, like the rules say."""
            self._advance_to(self.now + dt)

        @precondition(
            lambda self: self.model is not None and self._model_next(self.model) is not None
        )
        @rule(late=st.sampled_from([0.0, 0.0, 1e-3]), count=st.integers(1, 3))
        def advance_to_deadline(self, late: float, count: int = 1) -> None:
            """Time jumps to the next deadline, ``count`` times (a retry, a ping, a missing
            pong, a handshake past its deadline, the moment a connection becomes healthy),
            whatever the config."""
            _, model = self._m()
            for _ in range(count):
                due = self._model_next(model)
                if due is None:
                    return
                self._advance_to(max(self.now, due) + late)

        @precondition(lambda self: self.model is not None)
        @rule(fraction=st.floats(0.0, 2.0))
        def jump(self, fraction: float) -> None:
            """Time jumps by any fraction of the config's longest period (an alarm window
            expiring, a backoff capped at max_delay)."""
            _, model = self._m()
            cfg = model.cfg
            horizon = max(
                cfg.alarm_window,
                cfg.max_delay,
                cfg.ping_interval + cfg.pong_timeout,
                cfg.handshake_timeout,
                cfg.stable_after,
            )
            self._advance_to(self.now + fraction * horizon)

        @precondition(lambda self: self.model is not None and self.model.state in FAILABLE)
        @rule(
            kind=st.sampled_from(
                [k.value for k in FailureKind if k.value not in ("fatal", "server_closed")]
            ),
            connected=st.booleans(),
            run=st.sampled_from(["one", "one", "past_history", "past_alarm"]),
        )
        def failed_attempt(self, kind: str, connected: bool, run: str = "one") -> None:
            """A failed reconnect attempt and its retry, in one step (R1.1, R1.3); or a run
            of them, one more than the history keeps (R3.3) or than the alarm allows (R1.3),
            whatever the config's counts."""
            _, model = self._m()
            count = {
                "one": 1,
                "past_history": model.cfg.history_size + 1,
                "past_alarm": model.cfg.alarm_failures + 1,
            }[run]
            for _ in range(count):
                if model.state not in FAILABLE:
                    return
                self.fail(kind, None)
                if model.state in ("backing_off", "alarmed"):
                    assert model.retry_at is not None
                    self._advance_to(model.retry_at)
                    if connected and model.state == "connecting":
                        self.transport_connected()

        @precondition(lambda self: self.model is not None and self.model.state != "closed")
        @rule(picks=st.lists(st.integers(0, 8), min_size=1, max_size=12))
        def walk_declared_transitions(self, picks: list[int]) -> None:
            """Model-based test paths, like XState's: a few steps along a shortest
            path of declared transitions to one this example has not taken yet, so the rare
            ones (a fatal failure mid-handshake, a stop while backing off) are as close as the
            common ones. Guards are the machine's: a step may land elsewhere; the path is
            planned again from there."""
            _, model = self._m()
            for pick in picks:
                choice = next_transition(self.transitions.declared, self.taken, model.state, pick)
                if choice is None:
                    return
                self.taken.add(choice)  # also when a guard sends it elsewhere: no loop
                _, event, target = choice
                if event == "fail":
                    kind = {"closed": "fatal", "alarmed": "banned"}.get(target, "ssl")
                    self.fail(kind, None)
                elif event == "retry":
                    self.advance_to_deadline(0.0)
                elif event in ("start", "transport_connected", "handshake_succeeded", "stop"):
                    getattr(self, event)()
                else:
                    return  # an event a host's subclass added: not driven here

        @precondition(lambda self: self.model is not None)
        @rule(span=st.sampled_from(WINDOW_SPANS), seed=st.integers(0, 2**16))
        def alarm_window_edge(self, span: float, seed: int) -> None:
            """R1.3's window, at its edge, whatever the config: a fresh connection's
            ``alarm_failures + 1`` failed attempts, all but the last right after one another
            and the last ``span`` x ``alarm_window`` after the first. The alarm is due only
            when the first is still inside the window; at ``span`` 1 it is exactly
            ``alarm_window`` old, which is outside. The waits come from the backoff and from
            the server's ``retry_after``; no deadline fires on the way."""
            _, model = self._m()
            cfg = model.cfg
            if model.state != "closed":
                self.stop()
            self.setup(cfg, seed)
            _, model = self._m()  # the fresh one
            self.start()
            # On a coarse grid the edge is exact in floating point (first + window - window)
            tidy = math.ceil(self.now * 1024.0) / 1024.0
            assert model.attempt_deadline is not None
            if tidy < model.attempt_deadline:
                self._advance_to(tidy)
            first = self.now
            target = _window_edge(first, cfg.alarm_window, span)
            count = cfg.alarm_failures + 1
            for index in range(1, count + 1):
                if model.state not in FAILABLE:
                    return  # max_retries gave up first
                if index == count:
                    self.fail("ssl", None)
                    return
                wait = None
                if index == count - 1:  # the retry lands just before the target
                    wait = max(target - self.now - cfg.handshake_timeout / 2, 0.0)
                self.fail("ssl", wait)
                if model.state not in ("backing_off", "alarmed"):
                    return
                assert model.retry_at is not None
                until = model.retry_at
                if index == count - 1:
                    until = max(until, target)
                self._advance_to(until)

        @precondition(
            lambda self: self.model is not None and self.model.state in ("backing_off", "alarmed")
        )
        @rule(vouched=st.booleans(), then_ping=st.booleans())
        def reconnect_healthy(self, vouched: bool, then_ping: bool = False) -> None:
            """The retry succeeds and the connection becomes healthy, in one step: the counter
            reset (R1.4) and the end of an alarm's episode (R1.3) are one rule away."""
            _, model = self._m()
            assert model.retry_at is not None
            self._advance_to(model.retry_at)
            if model.state != "connecting":
                return
            self.establish()
            if vouched:
                self.vouch_healthy()
            elif not model.recovered:
                assert model.live_since is not None
                self._advance_to(model.live_since + model.cfg.stable_after)
            if then_ping and model.state == "live":
                self.advance_to_deadline(0.0, 1)  # the first ping (R1.2)

        def _advance_to(self, target: float) -> None:
            _, model = self._m()
            actions = self._apply(Tick(now=target))
            index = 0
            while True:
                due = self._model_next(model)
                if due is None or due > target:
                    break
                self.now = due
                if (
                    model.state == "live"
                    and not (model.pong_deadline is not None and due == model.pong_deadline)
                    and not model.recovered
                    and model.live_since is not None
                    and due == model.live_since + model.cfg.stable_after
                ):
                    # R1.4 with stable_after; it ends an alarm's episode (R1.3)
                    if model.recover():
                        assert index < len(actions), actions
                        assert isinstance(actions[index], ResolveAlarm), actions[index:]
                        index += 1
                    continue
                end = self._group_end(actions, index)
                group = actions[index:end]
                index = end
                if model.state in ("connecting", "handshaking"):
                    self.actions = group
                    self._model_fail(due, "timeout", None)  # R1.5
                elif model.state in ("backing_off", "alarmed"):
                    model.state = "connecting"
                    model.retry_at = None
                    model.attempt_deadline = due + model.cfg.handshake_timeout
                elif model.pong_deadline is not None and due == model.pong_deadline:
                    self.actions = group
                    self._model_fail(due, "timeout", None)  # R1.2
                else:
                    assert len(group) == 1 and isinstance(group[0], SendPing), group
                    assert group[0].pong_deadline == due + model.cfg.pong_timeout
                    model.pong_deadline = due + model.cfg.pong_timeout
                    model.next_ping = due + model.cfg.ping_interval
            assert index == len(actions), (index, actions)
            self.now = target

        @staticmethod
        def _group_end(actions: list[Any], index: int) -> int:
            # Each fired deadline yields one group: a failure or a retry starts with
            # StateChanged (a failure of a connection healthy by then, with a ResolveAlarm
            # first), a ping is a lone SendPing, a recovery a lone ResolveAlarm.
            for j in range(index + 1, len(actions)):
                if isinstance(actions[j], SendPing | ResolveAlarm):
                    return j
                if isinstance(actions[j], StateChanged) and not isinstance(
                    actions[j - 1], ResolveAlarm
                ):
                    return j
            return len(actions)

        @staticmethod
        def _model_next(model: ConnectionModel) -> float | None:
            if model.state in ("connecting", "handshaking"):
                return model.attempt_deadline
            if model.state in ("backing_off", "alarmed"):
                return model.retry_at
            if model.state == "live":
                due = model.pong_deadline if model.pong_deadline is not None else model.next_ping
                if not model.recovered and model.live_since is not None:
                    due = min(
                        x for x in (due, model.live_since + model.cfg.stable_after) if x is not None
                    )
                return due
            return None

        # -- invariants ---------------------------------------------------------------
        @invariant()
        def state_agrees(self) -> None:
            if self.machine is None or self.model is None:
                return
            assert self.machine.state == self.model.state, (self.machine.state, self.model.state)

        @invariant()
        def closed_is_absorbing(self) -> None:
            if self.machine is None:
                return
            if self.seen_closed:
                assert self.machine.state == "closed"
            self.seen_closed = self.machine.state == "closed"

        @invariant()
        def alarms_agree(self) -> None:
            if self.machine is None or self.model is None:
                return
            stats = self.machine.stats()
            assert stats["alarm_count"] == self.model.alarms
            assert stats["alarms_resolved"] == self.model.resolutions
            assert stats["alarm_active"] == self.model.alarm_active
            assert stats["consecutive_failures"] == self.model.consecutive
            assert stats["failed_attempts"] == len(self.model.failed_attempts)

        @invariant()
        def history_is_bounded_and_newest(self) -> None:
            if self.machine is None or self.model is None:
                return
            history = self.machine.history
            size = self.model.cfg.history_size
            assert len(history) <= size
            expected = self.model.records[-size:]
            assert [(r.at, r.kind, r.state, r.attempt_failed) for r in history] == [
                (e["at"], e["kind"], e["state"], e["attempt_failed"]) for e in expected
            ]

        @invariant()
        def deadline_agrees(self) -> None:
            if self.machine is None or self.model is None:
                return
            assert self.machine.next_deadline == self._model_next(self.model)

    # events={}: the rules above drive every event, typed and at drawn times
    spec = machine_spec(machine_class, model=model, events={}, rules=ConnectionLifecycle)
    spec.__name__ = spec.__qualname__ = "ConnectionLifecycle"
    return spec
