"""regulator.specs.machine_spec: a host's machine checked against its own reference model,
on the engine production runs, with a twin on python-statemachine's send()."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test
from regulator.specs import coverage_report, machine_spec

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
        events=EVENTS,
        build=lambda cls: cls(items=2, total=25.0),
        **kw,
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
