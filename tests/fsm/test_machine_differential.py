"""regulator.fsm.Machine's compiled engine against python-statemachine's own ``send()``.

The same class body runs twice: as declared (the engine) and with ``use_engine = False``
(python-statemachine's ``send()``). Random event sequences with random arguments must give
the same observable behaviour: the result or the exception of each event, the state after
it, ``is_terminated``, and every callback that ran, in order, with the arguments it got.
The shipped machines have their own side-by-side tests (test_connection_engine.py,
test_scaler_engine.py); this one covers what a host declares.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.fsm import EngineFallbackWarning, Machine
from statemachine import State
from statemachine.exceptions import InvalidDefinition, TransitionNotAllowed
from statemachine.model import Model
from statemachine.orderedset import OrderedSet
from statemachine.transition import Transition

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "order_lifecycle.py"


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("order_lifecycle_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


OrderLifecycle = _load_example().OrderLifecycle


def _ids(value: Any) -> Any:
    """A comparable view of an injected argument (State and Event objects by id)."""
    if isinstance(value, State):
        return ("state", value.id)
    if isinstance(value, Machine):
        return ("machine", type(value).__name__.removesuffix("Twin"))
    if isinstance(value, dict):
        return {k: _ids(v) for k, v in sorted(value.items()) if k != "event_data"}
    if isinstance(value, list | tuple):
        return [_ids(v) for v in value]
    if hasattr(value, "is_same_event"):
        return ("event", str(value), value.name)
    if isinstance(value, Transition):
        target = value.target.id if value.target is not None else None  # None: a targetless one
        return ("transition", value.source.id, target, str(value.event))
    if isinstance(value, OrderedSet):
        return ("configuration", [_ids(v) for v in value])
    if isinstance(value, Model):
        return ("model", repr(value))
    assert value is None or isinstance(value, int | float | str | bool), value
    return value


def inline_guard(amount: int = 0) -> bool:
    """A guard given as a callable (not a name)."""
    return amount != 13


class Recorder:
    """A listener: python-statemachine resolves its methods as callbacks too."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def after_transition(self, event: Any, source: State, target: State) -> None:
        self.log.append(("listener.after_transition", str(event), source.id, target.id))

    def on_enter_state(self, state: State, **kwargs: Any) -> None:
        self.log.append(("listener.on_enter_state", state.id, _ids(kwargs)))


class Probe(Machine):
    """Every kind of callback python-statemachine runs on a flat machine, each recording what
    it was given; some raise or send another event when asked to by an argument."""

    idle = State("Idle", initial=True)
    working = State("Working")
    paused = State("Paused")
    done = State("Done", final=True)
    failed = State("Failed", final=True)

    begin = idle.to(working, cond="ready", before="inline_before", on="inline_on")
    pause = working.to(paused, unless="busy", validators="check") | working.to(
        working, cond=inline_guard, after="inline_after"
    )
    resume = paused.to(working)
    poke = working.to.itself(on="poked")  # type: ignore[no-untyped-call]
    finish = working.to(done, cond=["ready", "has_amount"]) | paused.to(failed)
    abort = idle.to(failed) | working.to(failed) | paused.to(failed)

    def __init__(self, **kwargs: Any) -> None:
        self.log: list[Any] = []
        super().__init__(**kwargs)

    def _note(self, name: str, *values: Any) -> None:
        self.log.append((name, *(_ids(v) for v in values)))

    # guards and validators
    def ready(self, event: Any, flag: bool = True) -> bool:
        self._note("ready", event, flag)
        return flag

    def busy(self, amount: int = 0) -> bool:
        self._note("busy", amount)
        return amount > 5

    def has_amount(self, amount: int | None = None) -> bool:
        return amount is not None

    def check(self, amount: int = 0, **rest: Any) -> None:
        self._note("check", amount, rest)
        if amount < 0:
            raise ValueError(f"amount: must be >= 0 (got {amount})")

    # transition actions
    def inline_before(self, source: State, target: State) -> str:
        self._note("inline_before", source, target)
        return "inline_before"

    def inline_on(self, *args: Any, **kwargs: Any) -> str:
        self._note("inline_on", args, kwargs)
        return "inline_on"

    def inline_after(self, state: State, model: Any) -> None:
        self._note("inline_after", state, type(model).__name__)

    def poked(self, amount: int = 0, machine: Any = None) -> int:
        self._note("poked", amount, machine)
        if amount == 7:
            self.send("abort")  # run to completion: after this event, returns None
        return amount

    # convention callbacks
    def before_transition(self, event: Any, state: State) -> None:
        self._note("before_transition", event, state)

    def on_transition(self, transition: Any) -> None:
        self._note("on_transition", transition.source.id, transition.target.id)

    def after_transition(self, event: Any, source: State, target: State, state: State) -> str:
        self._note("after_transition", event, source, target, state)
        return "ignored: after results are not returned"

    def on_exit_state(self, state: State, event_data: Any) -> None:
        self._note("on_exit_state", state, event_data.state, event_data.target)

    def on_enter_state(self, state: State, source: State, target: State) -> None:
        self._note("on_enter_state", state, source, target)

    def before_pause(self, amount: int = 0) -> None:
        self._note("before_pause", amount)
        if amount == 4:
            raise RuntimeError("before_pause refuses 4")

    def on_pause(self, event: Any) -> str:
        self._note("on_pause", event)
        return "paused it"

    def after_pause(self, amount: int = 0) -> None:
        self._note("after_pause", amount)
        if amount == 3:
            raise RuntimeError("after_pause fails on 3: the move stays")

    def on_enter_working(self, amount: int = 0) -> None:
        self._note("on_enter_working", amount)
        if amount == 2:
            raise RuntimeError("on_enter_working fails on 2: the move is undone")

    def on_exit_paused(self, event: Any, source: State) -> None:
        self._note("on_exit_paused", event, source)

    def on_enter_done(self) -> str:
        self._note("on_enter_done")
        return "not returned either"

    def on_finish(self, amount: int, flag: bool = True) -> int:
        return amount * 10


class ProbeTwin(Probe):
    use_engine = False


class OrderTwin(OrderLifecycle):  # type: ignore[misc,valid-type]
    use_engine = False


PROBE_EVENTS = ("begin", "pause", "resume", "poke", "finish", "abort", "nope")
ORDER_EVENTS = ("place", "pay", "refund", "ship", "cancel")
# Event arguments: each key drawn or left out; "event" is reserved (dropped by both).
arguments = st.fixed_dictionaries(
    {},
    optional={
        "amount": st.sampled_from([0, 2, 3, 4, 5, 6, 7, 13, 25.0, -1]),
        "flag": st.booleans(),
        "customer": st.sampled_from(["alice", "blocked"]),
        "address": st.sampled_from(["", "1 Main St"]),
        "event": st.just("spoofed"),
    },
)


def _outcome(machine: Any, event: str, kwargs: dict[str, Any], as_method: bool) -> Any:
    try:
        if as_method and event in type(machine)._events:
            result = getattr(machine, event)(**kwargs)
        else:
            result = machine.send(event, **kwargs)
    except (TransitionNotAllowed, ValueError, RuntimeError, TypeError) as exc:
        return ("raised", type(exc).__name__, str(exc))
    return ("result", _ids(result))


def _view(machine: Any) -> Any:
    return (
        machine.current_state_value,
        machine.is_terminated,
        [s.id for s in type(machine).states if s.is_active],
        list(machine.log),
    )


@settings(max_examples=250, deadline=None)
@given(
    script=st.lists(
        st.tuples(st.sampled_from(PROBE_EVENTS), arguments, st.booleans()), max_size=25
    ),
    listen=st.booleans(),
)
def test_probe_machine_agrees_with_send(script: list[Any], listen: bool) -> None:
    """Every callback kind, guards with injected arguments, validators, exceptions before and
    after the move, a self-transition, run to completion, final states, a listener."""
    fast, slow = Probe(), ProbeTwin()
    assert Probe.engine == "compiled" and ProbeTwin.engine == "send"
    listeners = (Recorder(), Recorder())
    if listen:
        fast.add_listener(listeners[0])
        slow.add_listener(listeners[1])
    for event, kwargs, as_method in script:
        before = _view(fast)[:2]
        got = _outcome(fast, event, kwargs, as_method)
        expected = _outcome(slow, event, kwargs, as_method)
        assert got == expected, (event, kwargs)
        assert _view(fast) == _view(slow), (event, kwargs)
        assert listeners[0].log == listeners[1].log
        if got[0] == "raised" and got[1] == "TransitionNotAllowed":
            assert _view(fast)[:2] == before


@settings(max_examples=200, deadline=None)
@given(
    script=st.lists(
        st.tuples(st.sampled_from(ORDER_EVENTS), arguments, st.booleans()), max_size=12
    ),
    items=st.integers(0, 2),
)
def test_order_lifecycle_agrees_with_send(script: list[Any], items: int) -> None:
    """The docs' host machine: named guards taking injected arguments, unless, validators,
    convention callbacks, a self-transition, two final states."""
    fast, slow = OrderLifecycle(items=items, total=25.0), OrderTwin(items=items, total=25.0)
    assert OrderLifecycle.engine == "compiled"
    for event, kwargs, as_method in script:
        assert _outcome(fast, event, kwargs, as_method) == _outcome(slow, event, kwargs, as_method)
        assert (fast.current_state_value, fast.is_terminated, fast.log, fast.charged) == (
            slow.current_state_value,
            slow.is_terminated,
            slow.log,
            slow.charged,
        )


def test_the_engine_is_what_runs() -> None:
    """send() and the event methods of a compiled Machine never reach python-statemachine's
    engine (its processing loop), and the fallback twin always does."""
    calls: list[str] = []

    class Counted(Probe):
        def _processing_loop(self, caller_future: Any = None) -> Any:
            calls.append("send()")
            return super()._processing_loop(caller_future)

    machine = Counted()
    machine.begin()
    machine.send("pause", amount=1)
    assert calls == [] and machine.current_state_value == "paused"
    machine.send("resume", 1)  # a positional argument: python-statemachine binds it
    assert calls == ["send()"]


def test_unsupported_features_fall_back_with_one_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        class Eventless(Machine):
            a = State(initial=True)
            b = State(final=True)
            a.to(b, cond="always")

            def always(self) -> bool:
                return True

    messages = [str(w.message) for w in caught if w.category is EngineFallbackWarning]
    assert messages == [
        "Eventless runs through python-statemachine's send(), not the compiled engine:"
        " it uses an eventless transition from 'a'"
    ]
    assert Eventless.engine == "send"


def test_a_subclass_cannot_change_its_parent() -> None:
    """Redeclaring an event from the parent's states is refused, naming the event, and the
    parent keeps working."""
    with pytest.raises(InvalidDefinition, match=r"Broken\.resume: declared as Probe\.paused"):

        class Broken(Probe):
            resume = Probe.paused.to(Probe.working, cond="never")

    machine = Probe()
    machine.begin()
    machine.pause()
    machine.resume()
    assert machine.current_state_value == "working"


def test_a_subclass_adds_callbacks_and_guards_by_overriding() -> None:
    """The supported way: override a guard or add a convention callback; the parent's
    behaviour is unchanged."""

    class Strict(Probe):
        def busy(self, amount: int = 0) -> bool:
            return True

        def on_enter_paused(self) -> None:
            self.log.append(("strict",))

    strict, plain = Strict(), Probe()
    for machine in (strict, plain):
        machine.begin()
    strict.send("pause", amount=1)  # busy: the second branch (a self-transition) is taken
    plain.send("pause", amount=1)
    assert strict.current_state_value == "working" and plain.current_state_value == "paused"
    assert Strict.engine == Probe.engine == "compiled"


class Valued(Machine):
    """States whose values are not their ids (what python-statemachine stores on the model),
    and a custom model carrying a callback of its own."""

    low = State("Low", initial=True, value=1)
    high = State("High", value=2)
    off = State("Off", value=0, final=True)

    up = low.to(high, cond="allowed")
    down = high.to(low)
    halt = low.to(off) | high.to(off)

    def allowed(self, level: int = 1) -> bool:
        return level > 0


class ValuedTwin(Valued):
    use_engine = False


class Record:
    """A model: python-statemachine resolves callbacks on it too."""

    def __init__(self) -> None:
        self.state: Any = None
        self.seen: list[Any] = []

    def on_enter_high(self, level: int = 0) -> None:
        self.seen.append(("high", level))


@settings(max_examples=60, deadline=None)
@given(
    script=st.lists(
        st.tuples(st.sampled_from(["up", "down", "halt"]), st.integers(-1, 2)), max_size=10
    )
)
def test_state_values_and_a_model_agree_with_send(script: list[tuple[str, int]]) -> None:
    fast, slow = Valued(model=Record()), ValuedTwin(model=Record())
    for event, level in script:
        got = _outcome(fast, event, {"level": level}, False)
        assert got == _outcome(slow, event, {"level": level}, False)
        assert fast.model.state == slow.model.state and fast.model.seen == slow.model.seen
        assert fast.is_terminated == slow.is_terminated
