"""The renderer shared by `regulator diagram`, the demo's report and the docs site: the
pure-Python layout used without Graphviz never draws a label over another label or a state."""

from __future__ import annotations

import itertools

import pytest
from regulator.fsm import ConnectionMachine
from regulator.fsm._diagram import diagram_svg, layout, layout_svg, render_diagram
from regulator.fsm._scaler import ScalerMachine
from statemachine import StateMachine


@pytest.mark.parametrize("machine", [ConnectionMachine, ScalerMachine])
def test_every_label_has_its_own_place(machine: type[StateMachine]) -> None:
    plan = layout(machine)
    labels = [e.label_box for e in plan.edges]
    for a, b in itertools.combinations(labels, 2):
        assert not a.overlaps(b), (a, b)
    for label, state in itertools.product(labels, plan.states.values()):
        assert not label.overlaps(state)
    for box in [*labels, *plan.states.values()]:
        assert box.x >= 0 and box.x + box.w <= plan.width
        assert box.y >= 0 and box.y + box.h <= plan.height
    drawn = " ".join(e.label for e in plan.edges)
    for state in machine.states:
        for t in state.transitions:
            assert str(t.event).replace("_", " ").lower() in drawn.lower()


def test_the_self_loop_is_labelled() -> None:
    loops = [e for e in layout(ScalerMachine).edges if e.source == e.target]
    assert [(e.source, e.label) for e in loops] == [("overflow_halved", "Halve")]


def test_layout_svg_fills_the_state_and_writes_the_caption() -> None:
    svg = layout_svg("connection", state="closed", caption="final state: closed, stopped by host")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    closed = svg[svg.index('id="state-closed"') :].split("</g>")[0]
    assert "#40e0d0" in closed and 'font-weight="bold"' in closed
    idle = svg[svg.index('id="state-idle"') :].split("</g>")[0]
    assert "#40e0d0" not in idle
    assert "final state: closed, stopped by host" in svg
    assert "Fail [fatal_or_exhausted], Stop" in svg


def test_without_graphviz_the_svg_comes_from_the_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    svg = diagram_svg("scaler", state="reset")
    assert 'id="state-reset"' in svg and "Reset scale [auto_reset_enabled]" in svg


def test_mermaid_highlight_is_a_class_line() -> None:
    # `reset:::active` is not applied by mermaid-cli 11 to a labelled state; `class` is
    text = str(render_diagram("scaler", state="reset"))
    assert "    class reset active" in text and ":::" not in text
    assert "classDef active" in text
