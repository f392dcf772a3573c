"""A host's own machine on regulator's engine: an order lifecycle.

Declared exactly as python-statemachine documents it (named guards that take injected
arguments, convention callbacks, final states, a self-transition); subclassing
``regulator.fsm.Machine`` instead of ``StateMachine`` runs its events on the compiled engine.
``tests/docs/test_order_lifecycle_example.py`` runs this file.
"""

from __future__ import annotations

from typing import Any

from regulator.fsm import Machine
from statemachine import State


class OrderLifecycle(Machine):
    """draft -> placed -> paid -> shipped; cancelled from draft or placed; refunds while paid."""

    draft = State("Draft", initial=True)
    placed = State("Placed")
    paid = State("Paid")
    shipped = State("Shipped", final=True)
    cancelled = State("Cancelled", final=True)

    place = draft.to(placed, cond="has_items")
    pay = placed.to(paid, cond="amount_matches", unless="is_blocked", on="charge")
    refund = paid.to.itself(cond="refundable")  # type: ignore[no-untyped-call]
    ship = paid.to(shipped, validators="address_known")
    cancel = draft.to(cancelled) | placed.to(cancelled, cond="not_charged")

    #: what Machine.snapshot() keeps beside the state (Machine.restore sets it back)
    snapshot_fields = ("items", "total", "charged")

    def __init__(self, items: int = 1, total: float = 10.0, **kwargs: Any) -> None:
        self.items = items
        self.total = total
        self.charged = 0.0
        self.log: list[str] = []
        super().__init__(**kwargs)

    # -- guards: arguments injected by name, as python-statemachine does ---------------------
    def has_items(self) -> bool:
        return self.items > 0

    def amount_matches(self, amount: float = 0.0) -> bool:
        return amount == self.total

    def is_blocked(self, customer: str = "") -> bool:
        return customer == "blocked"

    def refundable(self, amount: float = 0.0) -> bool:
        return 0.0 < amount <= self.charged

    def not_charged(self) -> bool:
        return self.charged == 0.0

    def address_known(self, address: str | None = None) -> None:
        if not address:
            raise ValueError("ship: an address is required")

    # -- actions and convention callbacks ----------------------------------------------------
    def charge(self, amount: float) -> str:
        self.charged += amount
        return f"charged {amount:g}"

    def on_refund(self, amount: float) -> str:
        self.charged -= amount
        return f"refunded {amount:g}"

    def before_pay(self, event: Any, source: State, target: State) -> None:
        self.log.append(f"before {event} {source.id}->{target.id}")

    def on_enter_paid(self, state: State) -> None:
        self.log.append(f"enter {state.id}")

    def on_exit_placed(self) -> None:
        self.log.append("exit placed")

    def after_transition(self, event: Any, source: State, target: State) -> None:
        self.log.append(f"{source.id} --{event}--> {target.id}")


class OrderModel:
    """The host's plain reference model of the same rules, for ``machine_spec``: the state
    id, and one step that returns the new state id or None where the machine must refuse."""

    def __init__(self, items: int = 1, total: float = 10.0) -> None:
        self.state = "draft"
        self.items = items
        self.total = total
        self.charged = 0.0

    def step(self, event: str, **kwargs: Any) -> str | None:
        amount = kwargs.get("amount", 0.0)
        state = self.state
        if event == "place" and state == "draft" and self.items > 0:
            self.state = "placed"
        elif event == "pay" and state == "placed" and amount == self.total:
            if kwargs.get("customer") == "blocked":
                return None
            self.charged += amount
            self.state = "paid"
        elif event == "refund" and state == "paid" and 0.0 < amount <= self.charged:
            self.charged -= amount
        elif event == "ship" and state == "paid" and kwargs.get("address"):
            self.state = "shipped"
        elif event == "cancel" and (state == "draft" or (state == "placed" and not self.charged)):
            self.state = "cancelled"
        else:
            return None
        return self.state


def check_against_the_model(max_examples: int = 20) -> None:
    """The machine against OrderModel under Hypothesis (machine_spec), on the engine."""
    from hypothesis import settings
    from hypothesis import strategies as st
    from hypothesis.stateful import run_state_machine_as_test
    from regulator.specs import coverage_report, machine_spec

    spec = machine_spec(
        OrderLifecycle,
        model=lambda: OrderModel(items=2, total=25.0),
        events={
            "place": {},
            "pay": {
                "amount": st.sampled_from([25.0, 10.0]),
                "customer": st.sampled_from(["alice", "blocked"]),
            },
            "refund": {"amount": st.sampled_from([5.0, 30.0])},
            "ship": {"address": st.sampled_from(["", "1 Main St"])},
            "cancel": {},
        },
        build=lambda cls: cls(items=2, total=25.0),
    )
    run_state_machine_as_test(
        spec, settings=settings(max_examples=max_examples, deadline=None, database=None)
    )
    print(coverage_report(spec).splitlines()[0])


def main() -> None:
    from regulator.fsm import render_diagram

    order = OrderLifecycle(items=2, total=25.0)
    assert OrderLifecycle.engine == "compiled"
    order.place()
    print(order.send("pay", amount=25.0, customer="alice"))  # [None, 'charged 25']
    print(order.refund(amount=5.0))  # refunded 5
    saved = order.snapshot()
    order.ship(address="1 Main St")
    print(order.current_state_value, order.is_terminated)  # shipped True
    print("\n".join(order.log))
    print(render_diagram(order))  # Mermaid, "shipped" highlighted
    again = OrderLifecycle.restore(saved)
    assert isinstance(again, OrderLifecycle)  # restore is typed to return a Machine
    assert again.current_state_value == "paid" and again.charged == 20.0
    check_against_the_model()


if __name__ == "__main__":
    main()
