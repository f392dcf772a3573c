"""A host customises ConnectionMachine through its public hooks, and checks the change with
its own reference model; the parent class is never touched."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from regulator.fsm import (
    ConnectionConfig,
    ConnectionFailed,
    ConnectionMachine,
    FailureDecision,
    Start,
    Tick,
    Wait,
)
from regulator.specs import ConnectionModel, connection_lifecycle_spec
from statemachine.exceptions import InvalidDefinition

SETTINGS = settings(
    max_examples=40,
    stateful_step_count=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    print_blob=False,
)


class LinearBackoff(ConnectionMachine):
    """A host's rule: wait initial_delay * n, capped, jittered (instead of exponential)."""

    def retry_delay(self, consecutive: int, unit: float) -> float:
        cfg = self.config
        base = min(cfg.initial_delay * consecutive, cfg.max_delay)
        return min(base * (1.0 + cfg.jitter * (2.0 * unit - 1.0)), cfg.max_delay)


class LinearModel(ConnectionModel):
    """The host's reference model with the same rule."""

    def base_delay(self, n: int) -> float:
        return min(self.cfg.initial_delay * n, self.cfg.max_delay)


CONFIG = ConnectionConfig(initial_delay=1.0, max_delay=30.0, backoff_factor=2.0, jitter=0.0)


@pytest.mark.spec("R1.1")
def test_a_linear_backoff_subclass_passes_with_its_own_model() -> None:
    spec = connection_lifecycle_spec(CONFIG, machine_class=LinearBackoff, model=LinearModel)
    run_state_machine_as_test(spec, settings=SETTINGS)


@pytest.mark.spec("R1.1")
def test_the_default_model_rejects_the_linear_rule() -> None:
    """The suite is not vacuous: the linear machine against the exponential model fails."""
    spec = connection_lifecycle_spec(CONFIG, machine_class=LinearBackoff)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(spec, settings=SETTINGS)


def test_the_hooks_decide() -> None:
    machine = LinearBackoff(CONFIG)
    machine.handle(Start(now=0.0))
    delays = []
    for _ in range(3):
        now = machine.last_event_at or 0.0
        actions = machine.handle(ConnectionFailed(now=now, kind="network", reason="x"))
        delays += [a.delay for a in actions if isinstance(a, Wait)]
        machine.handle(_tick(machine))
    assert delays == [1.0, 2.0, 3.0]


def _tick(machine: ConnectionMachine) -> Any:
    assert machine.next_deadline is not None
    return Tick(now=machine.next_deadline)


def test_decide_failure_is_the_decision_the_guards_read() -> None:
    seen: list[FailureDecision] = []

    class Watching(ConnectionMachine):
        def decide_failure(self, event: ConnectionFailed) -> FailureDecision:
            decision = super().decide_failure(event)
            seen.append(decision)
            return decision

    machine = Watching(CONFIG)
    machine.handle(Start(now=0.0))
    machine.handle(ConnectionFailed(now=0.5, kind="fatal", reason="bad key"))
    assert [d.target for d in seen] == ["closed"] and machine.state == "closed"


def test_redeclaring_an_event_is_refused_and_the_parent_keeps_working() -> None:
    """python-statemachine would add the subclass's transition to the parent's State object;
    the class is refused, naming the event, and ConnectionMachine() still works."""
    with pytest.raises(InvalidDefinition, match=r"Picky\.retry"):

        class Picky(ConnectionMachine):
            retry = ConnectionMachine.backing_off.to(ConnectionMachine.connecting, cond="ok")

            def ok(self) -> bool:
                return True

    machine = ConnectionMachine(CONFIG)
    machine.handle(Start(now=0.0))
    machine.handle(ConnectionFailed(now=0.5, kind="network", reason="x"))
    machine.handle(_tick(machine))
    assert machine.state == "connecting"
    assert len(ConnectionMachine.backing_off.transitions.transitions) == 2  # retry and stop


def test_simulate_and_the_websocket_take_a_machine_class() -> None:
    from regulator.adapters.websocket import ResilientWebSocket
    from regulator.fsm import load_schedule, simulate

    schedule = load_schedule("outage")
    linear = simulate(schedule, CONFIG, machine_class=LinearBackoff)
    default = simulate(schedule, CONFIG)
    assert type(linear.machine) is LinearBackoff
    assert linear.lines != default.lines  # the host rule decided the waits
    ws = ResilientWebSocket("wss://127.0.0.1:9/s", config=CONFIG, machine_class=LinearBackoff)
    assert type(ws.machine) is LinearBackoff
    with pytest.raises(TypeError, match="machine_class: must be ConnectionMachine"):
        simulate(schedule, CONFIG, hours=1.0, machine_class=dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="machine_class: must be ConnectionMachine"):
        ResilientWebSocket("wss://127.0.0.1:9/s", machine_class=object)  # type: ignore[arg-type]
