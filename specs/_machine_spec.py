"""A model-based property suite for any :class:`regulator.fsm.Machine`, like XState's test
models: the host gives its plain reference model and the arguments its events take; Hypothesis
drives the machine and checks it against the model after every step.

The machine runs the engine production runs (the compiled engine; the coverage listener does
not switch it to ``send()``, and the suite asserts so), and a twin of the same class on
python-statemachine's ``send()`` gets every event too: the two must agree on each result, each
refusal and each state. Steps are random, and a second rule steers toward the declared
transitions not yet taken (the first event of a shortest path, as
:func:`regulator.specs.next_transition` computes), so a short run covers the whole diagram;
:func:`regulator.specs.coverage_report` reads the returned class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ..fsm import Machine
from ._coverage import TransitionRecorder, next_transition

__all__ = ["ReferenceModel", "machine_spec"]


class ReferenceModel(Protocol):
    """What ``machine_spec`` needs of a host's model: the state id, and one step."""

    state: str

    def step(self, event: str, **kwargs: Any) -> str | None:
        """Apply ``event``; return the new state id, or None for an event the machine must
        refuse (the model then stays as it was)."""
        ...


M = TypeVar("M", bound=Machine)


def twin_on_send(machine_class: type[M]) -> type[M]:
    """``machine_class`` run by python-statemachine's ``send()`` (the differential twin)."""
    twin: type[M] = type(f"{machine_class.__name__}OnSend", (machine_class,), {"use_engine": False})
    return twin


def _outcome(machine: Machine, event: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
    try:
        return ("result", machine.send(event, **kwargs))
    except Exception as exc:  # a refusal or a callback's error: compared with the twin's
        return ("raised", (type(exc).__name__, str(exc)))


def machine_spec(
    machine_class: type[Machine],
    *,
    model: Callable[[], ReferenceModel],
    events: Mapping[str, Mapping[str, st.SearchStrategy[Any]]],
    build: Callable[[type[Machine]], Machine] | None = None,
) -> type[RuleBasedStateMachine]:
    """A Hypothesis ``RuleBasedStateMachine`` checking ``machine_class`` against ``model``;
    its ``.TestCase`` runs under pytest or unittest.

    Args:
        machine_class: the host's :class:`~regulator.fsm.Machine` subclass.
        model: a zero-argument factory of the host's plain reference model (an object with
            ``.state``, a state id, and ``.step(event, **kwargs)`` returning the new state id,
            or None where the machine must refuse the event).
        events: each event name to check, with a dict of strategies for its keyword arguments
            (``{}`` for none).
        build: makes an instance from a class (default: ``cls()``); called for the machine
            and for its twin on python-statemachine's ``send()``.

    After every step: the machine's state equals the model's; a refused event raised and
    changed nothing; the twin gave the same result or error and is in the same state. Once
    the machine terminates (a final state), a fresh machine and model start.

    .. versionadded:: 0.2.0
    """
    names = sorted(events)
    if not names:
        raise ValueError("events: must name at least one event")
    unknown = [name for name in names if name not in machine_class._events]
    if unknown:
        known = ", ".join(str(e) for e in machine_class._events)
        raise ValueError(
            f"events: {unknown[0]!r} is not an event of {machine_class.__name__}"
            f" (its events: {known})"
        )
    make = build if build is not None else (lambda cls: cls())
    twin_class = twin_on_send(machine_class)
    recorder = TransitionRecorder(machine_class)
    arguments = {name: st.fixed_dictionaries(dict(events[name])) for name in names}
    ids = {s.value: s.id for s in machine_class.states}

    class MachineSpec(RuleBasedStateMachine):
        transitions = recorder

        def __init__(self) -> None:
            super().__init__()
            self.taken: set[tuple[str, str, str]] = set()

        @initialize()
        def start(self) -> None:
            self.machine = make(machine_class)
            engine = self.machine._fast
            self.machine.add_listener(recorder)
            # The recorder observes the engine production runs; it never switches to send().
            assert self.machine._fast == engine
            assert type(self.machine).engine == machine_class.engine
            self.twin = make(twin_class)
            self.model = model()
            assert self._state() == self.model.state, (self._state(), self.model.state)

        def _state(self) -> str:
            state: str = ids[self.machine.current_state_value]
            return state

        def _send(self, event: str, kwargs: dict[str, Any]) -> None:
            source = self._state()
            expected = self.model.step(event, **kwargs)
            got = _outcome(self.machine, event, kwargs)
            assert got == _outcome(self.twin, event, kwargs), (event, kwargs)
            state = self._state()
            assert state == ids[self.twin.current_state_value]
            if expected is None:
                assert got[0] == "raised", (
                    f"{event}({kwargs}) from {source!r}: the model refuses it, the machine"
                    f" moved to {state!r}"
                )
                assert state == source, (event, kwargs, state)
            else:
                assert got[0] == "result", (
                    f"{event}({kwargs}) from {source!r}: the model moves to {expected!r},"
                    f" the machine raised {got[1]}"
                )
                assert state == expected, (event, kwargs, state, expected)
                self.taken.add((source, event, state))

        @rule(data=st.data(), event=st.sampled_from(names))
        def send(self, data: st.DataObject, event: str) -> None:
            self._send(event, data.draw(arguments[event], label=f"{event} kwargs"))

        @rule(data=st.data(), pick=st.integers(0, 7))
        def steer(self, data: st.DataObject, pick: int) -> None:
            """The first event of a shortest path to a declared transition not yet taken."""
            # (this example's own transitions only: what is drawn must not depend on the
            # examples before it, or Hypothesis cannot replay it)
            step = next_transition(recorder.declared, self.taken, self._state(), pick)
            if step is None or step[1] not in arguments:
                return
            self._send(step[1], data.draw(arguments[step[1]], label=f"{step[1]} kwargs"))

        @precondition(lambda self: self.machine.is_terminated)
        @rule()
        def restart(self) -> None:
            self.start()

        @invariant()
        def agrees(self) -> None:
            assert self._state() == self.model.state
            assert self.machine.is_terminated == self.twin.is_terminated

    MachineSpec.__name__ = MachineSpec.__qualname__ = f"{machine_class.__name__}Spec"
    return MachineSpec
