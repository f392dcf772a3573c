"""How ScalerMachine executes a transition: the compiled table against python-statemachine's
``send()``, side by side, and python-statemachine's view of the state kept in sync."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.fsm import IllegalEventError, ScalerConfig
from regulator.fsm._diagram import mermaid
from regulator.fsm._scaler import SCALER_STATES, ScalerMachine
from regulator.specs import scaler_configs


class ViaSend(ScalerMachine):
    """The same declaration, every transition through python-statemachine's ``send()``."""

    use_engine: ClassVar[bool] = False


EVENTS = sorted({t.event for s in ScalerMachine.states for t in s.transitions} | {"nonsense"})

# One host call: a step (overflowed?, the scale as a multiple of the threshold), an epoch end,
# a resync, or a raw event (legal or not) sent to the engine itself.
calls = st.one_of(
    st.tuples(st.just("step"), st.booleans(), st.floats(0.0, 4.0)),
    st.tuples(st.just("end_epoch"), st.none(), st.none()),
    st.tuples(st.just("resync"), st.none(), st.floats(0.0, 4.0)),
    st.tuples(st.just("event"), st.sampled_from(EVENTS), st.none()),
)


def _outcome(machine: ScalerMachine, call: tuple[Any, ...]) -> tuple[str, Any]:
    name, arg, factor = call
    scale = None if factor is None else factor * machine.config.max_scale_threshold
    try:
        if name == "step":
            assert scale is not None  # a step always draws a factor
            return ("actions", machine.step(arg, max(scale, machine.config.min_scale * 0.5)))
        if name == "end_epoch":
            return ("actions", machine.end_epoch())
        if name == "resync":
            assert scale is not None  # so does a resync
            machine.resync(scale)  # returns nothing
            return ("actions", None)
        machine._go(arg)  # returns nothing
        return ("actions", None)
    except IllegalEventError as exc:
        return (type(exc).__name__, str(exc))


def _view(machine: ScalerMachine) -> dict[str, Any]:
    """Everything observable: the machine's own state and python-statemachine's."""
    return {
        "snapshot": machine.snapshot(),
        "statistics": machine.statistics(),
        "state": machine.state,
        "configuration": list(machine.configuration_values),
        "active": [s.id for s in type(machine).states if s.is_active],
    }


@settings(max_examples=300, deadline=None)
@given(cfg=scaler_configs(), script=st.lists(calls, max_size=80))
def test_table_and_send_agree(cfg: ScalerConfig, script: list[Any]) -> None:
    """Random host calls and raw events (legal and illegal) give identical states, actions and
    errors through the table and through send(); an illegal event changes nothing on either."""
    fast = ScalerMachine(cfg, initial_scale=cfg.max_scale_threshold)
    slow = ViaSend(cfg, initial_scale=cfg.max_scale_threshold)
    assert fast.engine == "compiled" and slow.engine == "send"
    for call in script:
        before = _view(fast)
        got, expected = _outcome(fast, call), _outcome(slow, call)
        assert got == expected
        assert _view(fast) == _view(slow)
        if got[0] != "actions":
            assert _view(fast) == before


@pytest.mark.parametrize("machine_cls", [ScalerMachine, ViaSend])
@pytest.mark.parametrize("state", SCALER_STATES)
def test_illegal_event_raises_and_changes_nothing(
    machine_cls: type[ScalerMachine], state: str
) -> None:
    machine = machine_cls(_start_value=state)
    allowed = {t.event for t in getattr(type(machine), state).transitions}
    for event in EVENTS:
        if event in allowed:
            continue
        before = _view(machine)
        with pytest.raises(IllegalEventError):
            machine._go(event)
        assert _view(machine) == before


def test_python_statemachine_sees_the_state_after_fast_transitions() -> None:
    machine = ScalerMachine(ScalerConfig(), initial_scale=2.0**16)
    assert machine.engine == "compiled"
    machine.step(False, 2.0**16)
    assert machine.state == "stable" and machine.stable.is_active
    assert list(machine.configuration_values) == ["stable"]
    assert "class stable active" in mermaid(machine)
    machine.step(False, 2.0**17)
    assert machine.over_threshold.is_active and "class over_threshold active" in mermaid(machine)


def test_a_subclass_with_callbacks_or_a_listener_stays_on_the_engine() -> None:
    """A convention callback and a listener run on the compiled engine (no send())."""
    entered: list[str] = []
    seen: list[tuple[str, str, str]] = []

    class Observed(ScalerMachine):
        def on_enter_stable(self) -> None:
            entered.append("stable")

    class Recorder:
        def after_transition(self, event: Any, source: Any, target: Any) -> None:
            seen.append((source.id, str(event), target.id))

    assert Observed.engine == "compiled"
    observed = Observed(initial_scale=2.0**16)
    observed.step(False, 2.0**16)
    assert entered == ["stable"] and observed.state == "stable"
    listened = ScalerMachine(initial_scale=2.0**16)
    listened.add_listener(Recorder())
    assert listened._fast
    listened.step(False, 2.0**16)
    assert seen == [("warmup", "calibrated", "stable")] and listened.state == "stable"
