"""regulator.specs.machine_spec: a host's machine checked against its own reference model,
on the engine production runs, with a twin on python-statemachine's send()."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, run_state_machine_as_test
from regulator.fsm import ConnectionMachine
from regulator.fsm._scaler import ScalerMachine
from regulator.specs import (
    ConnectionModel,
    MachineSpec,
    connection_lifecycle_spec,
    coverage_report,
    machine_spec,
    scaler_lifecycle_spec,
)

sys.path.insert(0, str(Path(__file__).parents[2] / "docs" / "examples"))
from order_lifecycle import OrderLifecycle, OrderModel

SETTINGS = settings(
    max_examples=60,
    stateful_step_count=30,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    print_blob=False,
)

EVENTS: dict[str, dict[str, Any]] = {
    "place": {},
    "pay": {
        "amount": st.sampled_from([25.0, 10.0]),
        "customer": st.sampled_from(["alice", "blocked"]),
    },
    "refund": {"amount": st.sampled_from([5.0, 30.0])},
    "ship": {"address": st.sampled_from(["", "1 Main St"])},
    "cancel": {},
}


def _spec(machine_class: type[Any] = OrderLifecycle, **kw: Any) -> Any:
    return machine_spec(
        machine_class,
        model=lambda: OrderModel(items=2, total=25.0),
        build=lambda cls: cls(items=2, total=25.0),
        **{"events": EVENTS, **kw},
    )


def test_the_order_lifecycle_passes_and_covers_every_transition() -> None:
    spec = _spec()
    run_state_machine_as_test(spec, settings=SETTINGS)
    assert spec.transitions.missed == frozenset(), coverage_report(spec)
    assert coverage_report(spec).startswith("OrderLifecycle: 6/6")


class RefundsTooMuch(OrderLifecycle):
    """A host's bug in a guard written the python-statemachine way: refunds up to the total,
    not up to what was charged."""

    def refundable(self, amount: float = 0.0, state: Any = None) -> bool:
        return 0.0 < amount <= self.total + 10.0


class ServesBlockedCustomers(OrderLifecycle):
    def is_blocked(self, customer: str = "") -> bool:
        return False


@pytest.mark.parametrize("mutant", [RefundsTooMuch, ServesBlockedCustomers])
def test_a_broken_host_machine_fails_the_suite(mutant: type[Any]) -> None:
    with pytest.raises(AssertionError):
        run_state_machine_as_test(_spec(mutant), settings=SETTINGS)


def test_events_must_be_the_machines() -> None:
    with pytest.raises(ValueError, match="'deliver' is not an event of OrderLifecycle"):
        machine_spec(OrderLifecycle, model=OrderModel, events={"deliver": {}})


def test_an_argument_drawn_from_the_running_model() -> None:
    """An event argument may be a function of the running spec: refunds of exactly what is
    still charged (or 1 more) reach the refund guard's edge in every example."""
    events = dict(EVENTS)
    events["refund"] = {
        "amount": lambda spec: st.sampled_from([spec.model.charged, spec.model.charged + 1.0])
    }
    spec = _spec(events=events)
    run_state_machine_as_test(spec, settings=SETTINGS)
    assert spec.transitions.missed == frozenset(), coverage_report(spec)
    refund_edge = _spec(RefundsTooMuch, events=events)
    with pytest.raises(AssertionError):
        run_state_machine_as_test(refund_edge, settings=SETTINGS)


class NeverShips:
    """Extra checks a host adds with ``rules=``: an invariant of its own."""

    model: Any  # the MachineSpec it is mixed into holds the model

    @invariant()
    def never_shipped(self) -> None:
        assert self.model.state != "shipped", "shipped"


def test_rules_add_invariants_to_the_generated_suite() -> None:
    spec = _spec(rules=NeverShips)
    assert issubclass(spec, NeverShips) and issubclass(spec, MachineSpec)
    with pytest.raises(AssertionError, match="shipped"):
        run_state_machine_as_test(spec, settings=SETTINGS)


def test_events_may_be_empty_only_with_rules() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        machine_spec(OrderLifecycle, model=OrderModel, events={})


class LinearModel(ConnectionModel):
    pass


def test_the_shipped_suites_are_machine_spec_suites() -> None:
    """connection_lifecycle_spec and scaler_lifecycle_spec are built by machine_spec: its base,
    its recorder, its twin on send(), and the host's model passed through."""
    connection = connection_lifecycle_spec(model=LinearModel)
    scaler = scaler_lifecycle_spec()
    for spec, machine in ((connection, ConnectionMachine), (scaler, ScalerMachine)):
        assert issubclass(spec, MachineSpec)
        assert spec.machine_class is machine
        assert issubclass(spec.twin_class, machine) and not spec.twin_class.use_engine
        assert spec.transitions.machine_class is machine
        assert "agrees_with_model_and_twin" in dir(spec)
    assert connection.model_factory is LinearModel
    assert connection.__name__ == "ConnectionLifecycle" and scaler.__name__ == "ScalerLifecycle"
