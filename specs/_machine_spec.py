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
from typing import Any, ClassVar, Protocol, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ..fsm import Machine
from ._coverage import TransitionRecorder, next_transition

__all__ = ["MachineSpec", "ReferenceModel", "machine_spec"]


class ReferenceModel(Protocol):
    """What ``machine_spec`` needs of a host's model: the state id, and one step."""

    state: str

    def step(self, event: str, **kwargs: Any) -> str | None:
        """Apply ``event``; return the new state id, or None for an event the machine must
        refuse (the model then stays as it was)."""
        ...


M = TypeVar("M", bound=Machine)

#: A keyword argument's strategy, or a function of the running spec that returns one (an
#: argument drawn from the model: the current time, an amount still refundable, ...).
Argument = st.SearchStrategy[Any] | Callable[[Any], st.SearchStrategy[Any]]


def twin_on_send(machine_class: type[M]) -> type[M]:
    """``machine_class`` run by python-statemachine's ``send()`` (the differential twin)."""
    twin: type[M] = type(f"{machine_class.__name__}OnSend", (machine_class,), {"use_engine": False})
    return twin


def _outcome(machine: Machine, event: str, kwargs: dict[str, Any]) -> tuple[str, Any]:
    try:
        return ("result", machine.send(event, **kwargs))
    except Exception as exc:  # a refusal or a callback's error: compared with the twin's
        return ("raised", (type(exc).__name__, str(exc)))


class MachineSpec(RuleBasedStateMachine):
    """The base of every class :func:`machine_spec` returns (``connection_lifecycle_spec``
    and ``scaler_lifecycle_spec`` included): ``issubclass(spec, MachineSpec)`` tells a
    machine_spec suite. It holds the checks every suite makes, whatever drives its events.

    Class attributes (set by :func:`machine_spec`): ``machine_class``, ``twin_class`` (the same
    class on python-statemachine's ``send()``), ``transitions`` (the coverage recorder that
    :func:`~regulator.specs.coverage_report` reads) and ``model_factory`` (the ``model``
    given). A ``rules`` class passed to :func:`machine_spec` starts each machine with
    :meth:`begin` and may call :meth:`checked_send`.

    .. versionadded:: 0.2.0
    """

    machine_class: ClassVar[type[Machine]]
    twin_class: ClassVar[type[Machine]]
    transitions: ClassVar[TransitionRecorder]
    model_factory: ClassVar[Callable[..., Any]]

    def __init__(self) -> None:
        super().__init__()
        #: the declared transitions this example took (what steering aims away from)
        self.taken: set[tuple[str, str, str]] = set()
        self.machine: Machine | None = None
        self.twin: Machine | None = None
        self.model: Any = None

    def begin(self, machine: Machine, twin: Machine, model: Any) -> None:
        """Check ``machine`` (and its twin on ``send()``) against ``model`` from now on."""
        engine = machine._fast
        machine.add_listener(self.transitions)
        # The recorder observes the engine production runs; it never switches to send().
        assert machine._fast == engine
        assert type(machine).engine == self.machine_class.engine
        assert not type(twin).use_engine
        self.machine, self.twin, self.model = machine, twin, model
        self._check_states()

    def state_id(self, machine: Machine) -> str:
        """``machine``'s current state id."""
        ids = {s.value: s.id for s in type(machine).states}
        state: str = ids[machine.current_state_value]
        return state

    def _check_states(self) -> None:
        machine, twin, model = self.machine, self.twin, self.model
        if machine is None or twin is None:
            return
        state = self.state_id(machine)
        assert state == model.state, (state, model.state)
        assert self.state_id(twin) == state, (self.state_id(twin), state)
        assert machine.is_terminated == twin.is_terminated

    def checked_send(self, event: str, kwargs: dict[str, Any]) -> None:
        """Send ``event`` to the machine, its twin and the model (``.step(event,
        **kwargs)``), and check the three agree."""
        machine, twin, model = self.machine, self.twin, self.model
        assert machine is not None and twin is not None
        source = self.state_id(machine)
        expected = model.step(event, **kwargs)
        got = _outcome(machine, event, kwargs)
        assert got == _outcome(twin, event, kwargs), (event, kwargs)
        state = self.state_id(machine)
        assert state == self.state_id(twin)
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

    @invariant()
    def agrees_with_model_and_twin(self) -> None:
        """After every step: the machine's state is the model's and the twin's."""
        self._check_states()


def machine_spec(
    machine_class: type[Machine],
    *,
    model: Callable[..., Any],
    events: Mapping[str, Mapping[str, Argument]],
    build: Callable[[type[Machine]], Machine] | None = None,
    rules: type | None = None,
) -> type[MachineSpec]:
    """A Hypothesis ``RuleBasedStateMachine`` checking ``machine_class`` against ``model``;
    its ``.TestCase`` runs under pytest or unittest.

    Args:
        machine_class: the host's :class:`~regulator.fsm.Machine` subclass.
        model: a zero-argument factory of the host's plain reference model (an object with
            ``.state``, a state id, and ``.step(event, **kwargs)`` returning the new state id,
            or None where the machine must refuse the event). With ``rules`` that start the
            machines themselves, whatever factory those rules call (``self.model_factory``).
        events: each event name to check, with a dict of its keyword arguments: a strategy,
            or a function of the running spec returning one (an argument drawn from the model
            or the machine: ``lambda spec: st.just(spec.model.now)``). ``{}`` is allowed
            only with ``rules``.
        build: makes an instance from a class (default: ``cls()``); called for the machine
            and for its twin on python-statemachine's ``send()``.
        rules: a class of extra Hypothesis rules, invariants and initializers (a
            :class:`MachineSpec` subclass, typed for the machine, or a plain mixin placed
            before :class:`MachineSpec`), the returned class's base. If it defines ``setup``, that
            starts the machines (a drawn configuration, say) by calling
            :meth:`MachineSpec.begin`, and the default start and restart are left out.

    After every step: the machine's state equals the model's; a refused event raised and
    changed nothing; the twin gave the same result or error and is in the same state. Once
    the machine terminates (a final state), a fresh machine and model start.

    .. versionadded:: 0.2.0
    """
    names = sorted(events)
    if not names and rules is None:
        raise ValueError("events: must name at least one event")
    unknown = [name for name in names if name not in machine_class._events]
    if unknown:
        known = ", ".join(str(e) for e in machine_class._events)
        raise ValueError(
            f"events: {unknown[0]!r} is not an event of {machine_class.__name__}"
            f" (its events: {known})"
        )
    make = build if build is not None else (lambda cls: cls())

    def arguments(spec: MachineSpec, event: str) -> st.SearchStrategy[dict[str, Any]]:
        return st.fixed_dictionaries(
            {
                key: value if isinstance(value, st.SearchStrategy) else value(spec)
                for key, value in events[event].items()
            }
        )

    body: dict[str, Any] = {
        "machine_class": machine_class,
        "twin_class": twin_on_send(machine_class),
        "transitions": TransitionRecorder(machine_class),
        "model_factory": staticmethod(model),
    }

    def start(self: MachineSpec) -> None:
        self.begin(make(self.machine_class), make(self.twin_class), model())

    if rules is None or not hasattr(rules, "setup"):
        body["start"] = initialize()(start)
        # once the machine terminates (a final state), a fresh machine and model start
        body["restart"] = precondition(
            lambda self: self.machine is not None and self.machine.is_terminated
        )(rule()(start))

    def send(self: MachineSpec, data: st.DataObject, event: str) -> None:
        self.checked_send(event, data.draw(arguments(self, event), label=f"{event} kwargs"))

    def steer(self: MachineSpec, data: st.DataObject, pick: int) -> None:
        """The first event of a shortest path to a declared transition not yet taken."""
        # (this example's own transitions only: what is drawn must not depend on the
        # examples before it, or Hypothesis cannot replay it)
        assert self.machine is not None
        state = self.state_id(self.machine)
        step = next_transition(self.transitions.declared, self.taken, state, pick)
        if step is None or step[1] not in events:
            return
        self.checked_send(step[1], data.draw(arguments(self, step[1]), label=f"{step[1]} kwargs"))

    if names:
        body["send"] = rule(data=st.data(), event=st.sampled_from(names))(send)
        body["steer"] = rule(data=st.data(), pick=st.integers(0, 7))(steer)

    bases: tuple[type, ...] = (MachineSpec,)
    if rules is not None:
        bases = (rules,) if issubclass(rules, MachineSpec) else (rules, MachineSpec)
    spec: type[MachineSpec] = type(f"{machine_class.__name__}Spec", bases, body)
    spec.__qualname__ = spec.__name__
    return spec
