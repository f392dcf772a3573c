"""regulator.fsm.render_diagram draws any machine: a host's class or instance, a dotted path,
the shipped names; --events replays through the machine's real guards."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from regulator.adapters.cli import main
from regulator.fsm import ConnectionMachine, DiagramError, render_diagram

EXAMPLES = Path(__file__).parents[2] / "docs" / "examples"


@pytest.fixture
def order_module(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import order_lifecycle

    return order_lifecycle


def test_a_host_class_is_drawn_without_highlight(order_module: object) -> None:
    cls = order_module.OrderLifecycle  # type: ignore[attr-defined]
    text = render_diagram(cls)
    assert isinstance(text, str)
    assert "placed --> paid : Pay [amount_matches, !is_blocked]" in text
    assert "active" not in text.replace("classDef active", "")


def test_an_instance_is_drawn_in_its_state(order_module: object) -> None:
    order = order_module.OrderLifecycle(items=1, total=5.0)  # type: ignore[attr-defined]
    order.place()
    order.send("pay", amount=5.0)
    assert "class paid active" in str(render_diagram(order))
    assert "class shipped active" in str(render_diagram(order, state="shipped"))
    assert order.current_state_value == "paid"  # drawing another state moved a copy only
    dot = render_diagram(order, "dot")
    assert isinstance(dot, str)
    assert '"paid" [label="Paid", fillcolor="#40e0d0"' in dot  # python-statemachine's turquoise


def test_events_replay_through_the_real_guards(order_module: object) -> None:
    """OrderLifecycle(items=1) by default: place's guard has_items passes; pay's guard
    amount_matches needs the event's amount, so replaying it bare is refused by the guard."""
    path = "order_lifecycle:OrderLifecycle"
    assert "class placed active" in str(render_diagram(path, events=["place"]))
    with pytest.raises(DiagramError, match=r"'pay' is not allowed in state 'placed'"):
        render_diagram(path, events=["place", "pay"])


def test_connection_events_take_the_branch_the_rules_pick() -> None:
    """A replayed failure goes where the rules send it: backing off on the defaults."""
    text = str(render_diagram("connection", events=["start", "transport_connected", "fail"]))
    assert "class backing_off active" in text
    text = str(render_diagram(ConnectionMachine, events=["start", "fail", "retry", "stop"]))
    assert "class closed active" in text


def test_the_command_line_takes_a_dotted_path(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(EXAMPLES)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["diagram", "order_lifecycle:OrderLifecycle", "--events", "place", "cancel"]) == 0
    assert "class cancelled active" in capsys.readouterr().out
    assert main(["diagram", "order_lifecycle:Missing"]) == 2
    assert "cannot import 'order_lifecycle:Missing'" in capsys.readouterr().err
    assert main(["diagram", "json:dumps"]) == 2
    assert "is not a python-statemachine machine class" in capsys.readouterr().err
