"""How ConnectionMachine executes a transition: the compiled table against python-statemachine's
``send()``, side by side, and python-statemachine's view of the state kept in sync."""

from __future__ import annotations

import random
import warnings
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.fsm import (
    ConnectionConfig,
    ConnectionFailed,
    ConnectionHealthy,
    ConnectionMachine,
    EngineFallbackWarning,
    FailureKind,
    FailureRecord,
    HandshakeSucceeded,
    IllegalEventError,
    PongReceived,
    Start,
    Stop,
    Tick,
    TransportConnected,
)
from regulator.fsm._diagram import mermaid
from regulator.specs._connection_model import connection_configs


class ViaSend(ConnectionMachine):
    """The same declaration, every transition through python-statemachine's ``send()``."""

    use_engine: ClassVar[bool] = False


# "next" moves the lifecycle on (weighted: random events alone rarely reach live).
_STEP_NAMES: tuple[str, ...] = ("next", "next", "next", "start", "tcp", "handshake", "healthy")
_STEP_NAMES += ("pong", "fail", "tick", "tick_due", "stop")

# One step of the host: which event, how much time passes before it, and its details.
steps = st.tuples(
    st.sampled_from(_STEP_NAMES),
    st.floats(0.0, 90.0),
    st.sampled_from([k.value for k in FailureKind]),
    st.none() | st.floats(0.0, 120.0),
    st.booleans(),
)


_NEXT = {
    "idle": "start",
    "connecting": "tcp",
    "handshaking": "handshake",
    "live": "fail",
    "backing_off": "tick_due",
    "alarmed": "tick_due",
    "closed": "stop",
}


def _event(machine: ConnectionMachine, step: tuple[Any, ...], now: float) -> Any:
    name, _, kind, retry_after, with_wall = step
    if name == "next":
        name = _NEXT[machine.state]
    wall = 1.7e9 + now if with_wall else None
    if name == "start":
        return Start(now=now, wall_time=wall)
    if name == "tcp":
        return TransportConnected(now=now)
    if name == "handshake":
        return HandshakeSucceeded(now=now, wall_time=wall)
    if name == "healthy":
        return ConnectionHealthy(now=now, wall_time=wall)
    if name == "pong":
        return PongReceived(now=now)
    if name == "fail":
        return ConnectionFailed(
            now=now, kind=kind, reason="x", retry_after=retry_after, wall_time=wall
        )
    if name == "tick_due":  # exactly at the deadline, as a host does
        due = machine.next_deadline
        return Tick(now=max(now, due) if due is not None else now, wall_time=wall)
    if name == "tick":
        return Tick(now=now, wall_time=wall)
    return Stop(now=now, reason="host")


def _outcome(machine: ConnectionMachine, event: Any) -> tuple[str, Any]:
    try:
        return ("actions", machine.handle(event))
    except (IllegalEventError, ValueError) as exc:
        return (type(exc).__name__, str(exc))


def _view(machine: ConnectionMachine) -> dict[str, Any]:
    """Everything observable: the machine's own state and python-statemachine's."""
    return {
        "snapshot": machine.snapshot(),
        "configuration": list(machine.configuration_values),
        "active": [s.id for s in type(machine).states if s.is_active],
        "terminated": machine.is_terminated,
        "next_deadline": machine.next_deadline,
        "stats": machine.stats(),
    }


@settings(max_examples=300, deadline=None)
@given(cfg=connection_configs(), seed=st.integers(0, 2**16), script=st.lists(steps, max_size=80))
def test_table_and_send_agree(cfg: ConnectionConfig, seed: int, script: list[Any]) -> None:
    """Random event sequences (legal and illegal) give identical states, actions and errors
    through the table and through send(); an illegal event changes nothing on either."""
    fast = ConnectionMachine(cfg, rng=random.Random(seed))
    slow = ViaSend(cfg, rng=random.Random(seed))
    assert fast.engine == "compiled" and slow.engine == "send"
    now = 0.0
    for step in script:
        now += step[1]
        event = _event(fast, step, now)
        before = _view(fast)
        got, expected = _outcome(fast, event), _outcome(slow, event)
        assert got == expected
        assert _view(fast) == _view(slow)
        if got[0] != "actions":
            assert _view(fast) == before


def test_subclass_with_callbacks_stays_on_the_engine() -> None:
    """A subclass declaring a convention callback runs on the compiled engine, and its
    callback runs, as python-statemachine promises."""
    entered: list[str] = []

    class Observed(ConnectionMachine):
        def on_enter_live(self) -> None:
            entered.append("live")

    machine = Observed()
    assert machine.engine == "compiled"
    for event in (Start(now=0.0), TransportConnected(now=0.1), HandshakeSucceeded(now=0.2)):
        machine.handle(event)
    assert entered == ["live"] and machine.state == "live"


def test_a_listener_sees_every_transition() -> None:
    """python-statemachine listeners (the property suites' transition coverage uses one) see
    the transitions, on the compiled engine."""
    seen: list[tuple[str, str, str]] = []

    class Recorder:
        def after_transition(self, event: Any, source: Any, target: Any) -> None:
            seen.append((source.id, str(event), target.id))

    machine = ConnectionMachine(ConnectionConfig(jitter=0.0))
    machine.add_listener(Recorder())
    assert machine._fast
    machine.handle(Start(now=0.0))
    machine.handle(TransportConnected(now=0.05))
    machine.handle(ConnectionFailed(now=0.1, kind="network", reason="reset"))
    assert seen == [
        ("idle", "start", "connecting"),
        ("connecting", "transport_connected", "handshaking"),
        ("handshaking", "fail", "backing_off"),
    ]


def test_what_the_engine_cannot_run_goes_through_send_with_a_warning() -> None:
    """A feature the engine does not run exactly is named at class creation, once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class Prepared(ConnectionMachine):
            def prepare_event(self) -> dict[str, int]:
                return {"x": 1}

    assert [str(w.message) for w in caught if w.category is EngineFallbackWarning] == [
        "Prepared runs through python-statemachine's send(), not the compiled engine:"
        " it uses a prepare_event callback"
    ]
    assert Prepared.engine == "send" and ConnectionMachine.engine == "compiled"
    machine = Prepared()
    machine.handle(Start(now=0.0))
    assert machine.state == "connecting"


def test_python_statemachine_sees_the_state_after_fast_transitions() -> None:
    """configuration, is_active and the diagram's highlight follow the table's transitions."""
    machine = ConnectionMachine(ConnectionConfig(jitter=0.0))
    assert machine.engine == "compiled"
    machine.handle(Start(now=0.0))
    machine.handle(TransportConnected(now=0.05))
    machine.handle(HandshakeSucceeded(now=0.2))
    assert machine.live.is_active and list(machine.configuration_values) == ["live"]
    text = mermaid(machine)
    assert "class live active" in text and "class idle active" not in text
    machine.handle(ConnectionFailed(now=1.0, kind="ssl", reason="mac"))
    assert machine.backing_off.is_active
    assert "class backing_off active" in mermaid(machine)
    assert not machine.is_terminated
    machine.handle(Stop(now=2.0, reason="done"))
    assert machine.closed.is_active and machine.is_terminated
    assert "class closed active" in mermaid(machine)


@pytest.mark.parametrize("machine_cls", [ConnectionMachine, ViaSend])
def test_illegal_event_changes_nothing(machine_cls: type[ConnectionMachine]) -> None:
    machine = machine_cls()
    machine.handle(Start(now=0.0))
    before = (machine.snapshot(), list(machine.configuration_values))
    with pytest.raises(IllegalEventError):
        machine.handle(HandshakeSucceeded(now=1.0))
    assert (machine.snapshot(), list(machine.configuration_values)) == before


def test_failure_records_keep_every_field() -> None:
    """Records are kept as tuples and built when read: every field lands where it belongs."""
    machine = ConnectionMachine(ConnectionConfig(jitter=0.0, stable_after=0.0))
    machine.handle(Start(now=0.0))
    machine.handle(TransportConnected(now=1.0))
    machine.handle(HandshakeSucceeded(now=2.0, wall_time=1.7e9))
    machine.handle(
        ConnectionFailed(now=5.0, kind="rate_limited", reason="429", detail="tb", retry_after=7.5)
    )
    expected = FailureRecord(
        at=5.0,
        kind="rate_limited",
        reason="429",
        detail="tb",
        state="live",
        attempt=1,
        consecutive=1,
        since_previous=None,
        delay=7.5,
        retry_after=7.5,
        wall_time=1.7e9 + 3.0,
        attempt_failed=False,
    )
    assert machine.history == (expected,)
    assert machine.stats()["last_failure"] == expected.as_dict()
    assert machine.snapshot()["history"] == [expected.as_dict()]
    restored = ConnectionMachine.restore(machine.snapshot())
    assert restored.history == (expected,)
