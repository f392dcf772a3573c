"""``Machine``: a python-statemachine ``StateMachine`` whose events run on a compiled engine.

A host declares its machine exactly as python-statemachine documents it (states, initial and
final; transitions and ``|`` chains; ``cond=``/``unless=``/``validators=`` by name or callable;
``before=``/``on=``/``after=``; the convention callbacks ``before_<event>``, ``on_enter_<state>``,
``after_transition`` ...; listeners) and subclasses :class:`Machine` instead of
``StateMachine``. ``send()`` and the event methods then run on this engine.

How it runs a transition
------------------------
python-statemachine's ``send()`` runs the SCXML algorithm for any chart: it builds a trigger,
queues it (run to completion), selects transitions, computes exit and entry sets, and binds
every callback's arguments by signature on each call: ~80 us for a guarded transition with
one action. For a flat machine the same transition is: look up ``(current state, event)``,
evaluate the candidates' validators and guards in declaration order, run ``before`` ->
``exit`` -> ``on`` -> write the new state -> ``enter`` -> ``after``.

*What* to call is not re-implemented: python-statemachine resolves, per instance, every
callback spec against the machine, its model and its listeners into its callback registry
(order, priorities, duplicates, ``unless`` ...). On the first use of a ``(state, event)``
pair the engine reads those resolved lists once and keeps each target callable with the
parameter names it takes (the *linking*). Only the argument binding is done here: each
callable gets, by name, the arguments it declares among the event's keyword arguments and
``event``, ``source``, ``target``, ``state``, ``model``, ``machine``, ``transition``,
``event_data`` (a ``**kwargs`` callable gets them all), as python-statemachine's
``SignatureAdapter`` does. Callables the engine cannot bind identically (boolean
expressions, properties, attribute values, per-callback conditions, positional-only
parameters) are called through python-statemachine's own wrapper: same result, its speed.
Adding a listener drops the links, so the next event re-links with the listener's callbacks.
A link whose candidates are bare or have plain guards only is also kept as a *route* for the
typed dispatch of the shipped machines (:meth:`Machine._move`): the target's value alone for
one bare transition, else the guards and targets as a tuple, run without ``_step``.

Observable behaviour equals ``send()``'s, and ``tests/fsm/test_machine_differential.py``
proves it on random event sequences: the state after each event; a refused event raises
``TransitionNotAllowed`` and changes nothing (``allow_event_without_transition`` returns
None instead); the order of callbacks and the arguments each receives; the return value
(the ``before``/``on`` results: None, the one result, or the list); an exception in
``before``/``exit``/``on``/``enter`` restores the source state and propagates, one in
``after`` propagates with the new state kept; a top-level final state stops the machine
(``is_terminated``) and later events are ignored (None); an event sent from a callback runs
after the current one (run to completion) and its ``send()`` returns None.

What it cannot run identically goes to python-statemachine's ``send()``, with one
:class:`EngineFallbackWarning` at class creation naming the feature: compound, parallel or
history states, eventless, internal, targetless or multi-target transitions, invocations,
delayed events, ``prepare_event``, async callbacks, ``catch_errors_as_events`` and
non-atomic configuration updates. A send with positional arguments or with ``delay=``,
``send_id=`` or ``internal=`` also takes ``send()`` (per call). :attr:`Machine.engine` says
which: ``"compiled"`` or ``"send"``; ``use_engine = False`` on a class asks for ``send()``.

Subclassing: python-statemachine shares ``State`` objects between a class and its
subclasses, so ``retry = Parent.backing_off.to(...)`` in a subclass body would add a
transition to the parent. The metaclass detects it, takes the transition back out of the
parent and raises ``InvalidDefinition`` naming the event: customise through overridable
methods (guards, hooks) instead.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any, ClassVar, Self

from statemachine import State, StateMachine
from statemachine.event import BoundEvent, Event
from statemachine.event_data import EventData, TriggerData
from statemachine.exceptions import InvalidDefinition, TransitionNotAllowed
from statemachine.factory import StateMachineMetaclass
from statemachine.model import Model
from statemachine.orderedset import OrderedSet

from ._links import NAMED, NO_ARGUMENTS, Candidate, Plan, call, run

__all__ = ["EngineFallbackWarning", "Machine"]

#: Keyword names python-statemachine reserves for itself (dropped from an event's kwargs).
_RESERVED = frozenset(
    ("event_data", "machine", "event", "model", "transition", "state", "source", "target")
)
#: ``send()`` options the engine leaves to python-statemachine.
_SEND_OPTIONS = frozenset(("delay", "send_id", "internal"))
#: The convention callbacks python-statemachine resolves on any machine.
_CLASS_FALLBACKS = (("prepare_event", "a prepare_event callback"),)


def _route(plan: Plan) -> Any:
    """A simple plan (every candidate bare or with plain guards only) as ``_move`` runs it:
    the target state's value alone for one bare, non-final transition (the common lifecycle
    step: nothing to call, the move is all of it), else per candidate ``(guards, the names
    they take, the reserved arguments, target value, final)``, read without attribute
    lookups."""
    if len(plan) == 1 and plan[0].bare and not plan[0].final:
        target = plan[0].target_value
        if target.__class__ is str:  # (a state's value may be anything; a str is unambiguous)
            return target
    return tuple((c.guards, c.guard_names, c.base, c.target_value, c.final) for c in plan)


class EngineFallbackWarning(UserWarning):
    """A :class:`Machine` subclass uses a feature the compiled engine does not run; its events
    go through python-statemachine's ``send()`` (correct, about 50x slower)."""


class _EngineBoundEvent(BoundEvent):
    """``machine.<event>(...)``: the event method, run by the machine's ``send()``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        assert self._sm is not None
        return self._sm.send(self.id, *args, **kwargs)


class _EngineEvent(Event):
    """A declared event whose method goes through :meth:`Machine.send` (the engine)."""

    def __get__(self, instance: Any, owner: Any) -> Any:
        if instance is None:
            return self
        bound = _EngineBoundEvent(
            id=self.id, name=self.name, delay=self.delay, internal=self.internal, _sm=instance
        )
        vars(instance)[self.id] = bound  # a non-data descriptor: the instance's copy wins now
        return bound


def _fallback_reason(cls: Any) -> str | None:
    """The first feature of ``cls`` that the compiled engine cannot run exactly."""
    if not getattr(cls, "use_engine", True) or getattr(cls, "_execute_with_send", False):
        return "use_engine = False"  # (_execute_with_send: the name before 0.2)
    if cls.catch_errors_as_events:
        return "catch_errors_as_events"
    if not cls.atomic_configuration_update:
        return "atomic_configuration_update = False"
    for name, feature in _CLASS_FALLBACKS:
        if callable(getattr(cls, name, None)):
            return feature
    for state in cls.states:
        if state.parent is not None or state.states or getattr(state, "history", None):
            return f"compound, parallel or history states ({state.id!r})"
        if any(not spec.is_convention or hasattr(cls, spec.attr_name) for spec in state.invoke):
            return f"invoke on state {state.id!r}"
        for transition in state.transitions:
            event = str(transition.event)
            if transition.is_eventless or not event:
                return f"an eventless transition from {state.id!r}"
            if " " in event:
                return f"a transition with several events ({event!r})"
            if transition.internal:
                return f"an internal transition ({event!r})"
            if transition.target is None or len(transition.targets) != 1:
                return f"a targetless or multi-target transition ({event!r})"
    for event in cls._events:
        if getattr(cls, str(event), event).delay:
            return f"a delayed event ({str(event)!r})"
    for name in dir(cls):
        if name.startswith("__"):
            continue
        value = inspect.getattr_static(cls, name, None)
        if inspect.iscoroutinefunction(value):
            return f"an async callback ({name!r})"
    return None


def _transitions_of(cls: Any) -> dict[State, tuple[Any, ...]]:
    return {state: tuple(state.transitions.transitions) for state in cls.states}


def _engine_runs(machine: Any) -> bool:
    """Whether this instance runs on the engine: its class compiled, and no async or
    ``prepare_event`` callback came with its model or listeners."""
    callbacks = machine._callbacks
    prepare = callbacks._registry.get(machine.prepare.key)
    return bool(
        type(machine).engine == "compiled"
        and not callbacks.has_async_callbacks
        and (prepare is None or not prepare.items)
    )


class _MachineMeta(StateMachineMetaclass):
    """python-statemachine's metaclass, plus: refuse a subclass body that changed a parent's
    states, compile the engine's view of the class, and route event methods to ``send()``."""

    def __init__(cls, name: str, bases: tuple[type, ...], attrs: dict[str, Any]) -> None:
        for base in bases:
            for parent in base.__mro__:
                _refuse_parent_change(parent, name, attrs)
        super().__init__(name, bases, attrs)  # type: ignore[arg-type]
        cls._declared = _transitions_of(cls)
        if not cls.states:  # Machine itself: nothing declared
            cls.engine = "send"
            cls._fallback = "no states"
            return
        reason = _fallback_reason(cls)
        cls._fallback = reason  # type: ignore[assignment]
        cls.engine = "send" if reason is not None else "compiled"
        if reason is not None and reason != "use_engine = False":
            warnings.warn(
                f"{name} runs through python-statemachine's send(), not the compiled engine:"
                f" it uses {reason}",
                EngineFallbackWarning,
                stacklevel=2,
            )
        for event in cls._events:
            declared = cls.__dict__.get(str(event))
            if isinstance(declared, Event) and type(declared) is Event:
                declared.__class__ = _EngineEvent


def _refuse_parent_change(parent: Any, name: str, attrs: dict[str, Any]) -> None:
    declared: dict[State, tuple[Any, ...]] | None = parent.__dict__.get("_declared")
    if not declared:
        return
    for state, transitions in declared.items():
        now = state.transitions.transitions
        if len(now) == len(transitions):
            continue
        added = [t for t in now if t not in transitions]
        state.transitions.transitions[:] = list(transitions)  # the parent is left untouched
        events = [
            key
            for key, value in attrs.items()
            if any(t in getattr(value, "transitions", ()) for t in added)
        ]
        event = events[0] if events else "?"
        raise InvalidDefinition(
            f"{name}.{event}: declared as {parent.__name__}.{state.id}.to(...), which would add"
            f" the transition to {parent.__name__} itself (python-statemachine shares State"
            f" objects with subclasses). Override the guard or hook method instead, or declare"
            f" the machine's states anew."
        )


class Machine(StateMachine, metaclass=_MachineMeta):
    """A python-statemachine ``StateMachine`` whose ``send()`` and event methods run on the
    compiled engine (see the module header); declare it exactly as python-statemachine does.

    .. versionadded:: 0.2.0
    """

    #: ``"compiled"`` (this engine) or ``"send"`` (python-statemachine's), per class.
    engine: ClassVar[str] = "send"
    #: False: run this class through python-statemachine's ``send()`` (a twin for tests).
    use_engine: ClassVar[bool] = True
    _fallback: ClassVar[str | None] = None
    _declared: ClassVar[dict[State, tuple[Any, ...]]] = {}
    # per instance (set in __init__): the links per (state value, event), the queue of events
    # sent from callbacks, whether one is being processed, the bound events, the engine on
    _links: dict[tuple[Any, str], Plan]
    #: the links whose plan is simple, precompiled for _move (see _route)
    _routes: dict[tuple[Any, str], Any]
    _queue: list[tuple[str, dict[str, Any]]]
    _busy: bool
    _events_bound: dict[str, Any]
    _fast: bool
    #: _fast and not _busy, kept as one flag: the typed dispatch reads it on every event
    _ready: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # python-statemachine's __setattr__ checks each set against the state names; the
        # engine's own fields are private, so set them plainly.
        vars(self).update(_links={}, _routes={}, _queue=[], _busy=False, _events_bound={})
        super().__init__(*args, **kwargs)
        vars(self)["_fast"] = vars(self)["_ready"] = _engine_runs(self)

    # -- persistence ----------------------------------------------------------------------
    #: The host's own plain attributes that :meth:`snapshot` keeps beside the state.
    snapshot_fields: ClassVar[tuple[str, ...]] = ()

    def snapshot(self) -> dict[str, Any]:
        """The machine as a JSON-able dict: its class, its state and :attr:`snapshot_fields`
        (see :meth:`restore`)."""
        return {
            "version": 1,
            "machine": type(self).__qualname__,
            "state": self.current_state_value,
            "fields": {name: getattr(self, name) for name in self.snapshot_fields},
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any], *args: Any, **kwargs: Any) -> Self:
        """A machine of this class in ``snapshot``'s state, built with ``*args, **kwargs``
        and a model that already holds the state (python-statemachine then enters no state:
        the constructor must pass ``model=`` on to ``Machine.__init__``), then
        :attr:`snapshot_fields` set back.

        Raises:
            ValueError: the snapshot is of another version or class, or names no state of it.
        """
        if snapshot.get("version") != 1:
            raise ValueError(f"snapshot.version: must be 1 (got {snapshot.get('version')!r})")
        if snapshot.get("machine") != cls.__qualname__:
            raise ValueError(
                f"snapshot.machine: must be {cls.__qualname__!r} (got {snapshot.get('machine')!r})"
            )
        state = snapshot.get("state")
        if state not in cls.states_map:
            known = ", ".join(repr(s.value) for s in cls.states)
            raise ValueError(f"snapshot.state: must be one of {known} (got {state!r})")
        # python-statemachine starts a machine whose model already holds a state there,
        # without entering it (start_value would run the state's entry callbacks).
        model = kwargs.setdefault("model", Model())  # type: ignore[no-untyped-call]
        setattr(model, kwargs.get("state_field", "state"), state)
        machine = cls(*args, **kwargs)
        for name, value in snapshot.get("fields", {}).items():
            if name in cls.snapshot_fields:
                setattr(machine, name, value)
        return machine

    def __getstate__(self) -> dict[str, Any]:
        # The engine's links hold callables bound to this instance: rebuilt, never copied.
        state: dict[str, Any] = super().__getstate__()  # type: ignore[no-untyped-call]
        for name in ("_links", "_routes", "_queue", "_busy", "_events_bound", "_fast", "_ready"):
            state.pop(name, None)
        for event in type(self)._events:
            state.pop(str(event), None)  # the cached event methods (bound to this instance)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(_links={}, _routes={}, _queue=[], _busy=False, _events_bound={})
        super().__setstate__(state)
        vars(self)["_fast"] = vars(self)["_ready"] = _engine_runs(self)

    def add_listener(self, *listeners: Any) -> Any:
        """python-statemachine's ``add_listener``; the engine re-links with the listeners'
        callbacks on the next event."""
        result = super().add_listener(*listeners)  # type: ignore[no-untyped-call]
        self._links.clear()
        self._routes.clear()
        vars(self)["_fast"] = _engine_runs(self)
        vars(self)["_ready"] = self._fast and not self._busy
        return result

    # -- the engine ------------------------------------------------------------------------
    def send(self, event: str, *args: Any, **kwargs: Any) -> Any:
        """python-statemachine's ``send()``, on the compiled engine where it runs exactly."""
        if not self._fast or args or (kwargs and not _SEND_OPTIONS.isdisjoint(kwargs)):
            return StateMachine.send(self, event, *args, **kwargs)
        if self._busy:  # sent from a callback: runs after the current event (RTC)
            self._queue.append((event, kwargs))
            return None
        return self._process(event, kwargs)

    def _move(self, event: str, kwargs: dict[str, Any], source: Any = None) -> bool:
        """Take ``event`` as ``send(event, **kwargs)`` does, for a subclass's own typed
        dispatch (``ConnectionMachine.handle``, ``ScalerMachine.step``): False when the event
        is refused (nothing changed). ``source``: the current state's value, when the caller
        has read it already. Written once, for every machine built on this class."""
        if self._ready:
            model = self.model
            if source is None:
                source = getattr(model, self.state_field)
            route = self._routes.get((source, event))
            if route is not None:
                if route.__class__ is str:  # one bare transition: the move is all of it
                    setattr(model, self.state_field, route)
                    return True
                # Candidates that are bare or have plain guards only (no other callback, no
                # reserved argument asked for): pick and move here, as _step would.
                for guards, names, base, target, final in route:
                    if guards:
                        kw = kwargs if names <= kwargs.keys() else {**kwargs, **base}
                        passed = True
                        for fn, mode, params, expected in guards:
                            if mode == NAMED:
                                if kw is kwargs and len(params) == len(kw):
                                    value = fn(**kw)  # it takes exactly the event's arguments
                                else:
                                    value = fn(**{n: kw[n] for n in params if n in kw})
                            else:
                                value = fn()
                            if expected is not None:
                                value = bool(value) == expected
                            if not value:
                                passed = False
                                break
                        if not passed:
                            continue
                    setattr(model, self.state_field, target)
                    if final:
                        self._engine.stop()
                    return True
                # refused (send() would raise; or return None where events may go unanswered)
                return bool(self.allow_event_without_transition)
        try:
            if self._fast and not self._busy:
                self._process(event, kwargs)
            else:
                self.send(event, **kwargs)
        except TransitionNotAllowed:
            return False
        return True

    def _process(self, event: str, kwargs: dict[str, Any]) -> Any:
        own = self.__dict__
        own["_busy"] = True
        own["_ready"] = False
        try:
            result = self._step(event, kwargs)
            queue = self._queue
            while queue and self._engine.running:
                queued, queued_kwargs = queue.pop(0)
                self._step(queued, queued_kwargs)
            queue.clear()  # a terminated machine drops what is left, as send() does
        except BaseException:
            self._queue.clear()
            raise
        finally:
            own["_busy"] = False
            own["_ready"] = self._fast
        return result

    def _bound_event(self, event: str) -> Any:
        bound = self._events_bound.get(event)
        if bound is None:
            known = type(self).__dict__.get(event) or getattr(type(self), event, None)
            name = known.name if isinstance(known, Event) else event
            bound = BoundEvent(id=event, name=name, _sm=self)
            if isinstance(known, Event):
                self._events_bound[event] = bound
        return bound

    def _candidates(self, source: Any, event: str) -> Plan:
        key = (source, event)
        found = self._links.get(key)
        if found is None:
            state = self.states_map[source]
            bound = self._bound_event(event)
            found = Plan(Candidate(self, t, bound) for t in state.transitions if t.match(event))
            if event in self._events_bound or found:  # unknown names are not cached
                self._links[key] = found
                if found.simple:
                    self._routes[key] = _route(found)
        return found

    def _step(self, event: str, kwargs: dict[str, Any]) -> Any:
        """One event: pick the transition, run its callbacks, move (see the module header)."""
        model = self.model
        field = self.state_field
        source = getattr(model, field)
        candidates = self._links.get((source, event))
        if candidates is None:
            self._bound_event(event)
            candidates = self._candidates(source, event)
        chosen = None
        kw: dict[str, Any] = NO_ARGUMENTS
        for candidate in candidates:
            if candidate.bare:
                chosen = candidate
                break
            if candidate.needs_kw:
                if candidate.needs_data or (kwargs and not _RESERVED.isdisjoint(kwargs)):
                    kw = self._arguments(event, kwargs, candidate, candidate.source)
                else:
                    kw = {**kwargs, **candidate.base}
            for entry in candidate.validators:
                call(entry, kw)
            for fn, mode, names, expected in candidate.guards:
                if mode == NAMED:  # the common guard, inline: its named arguments only
                    value = fn(**{name: kw[name] for name in names if name in kw})
                    if expected is not None:
                        value = bool(value) == expected
                else:
                    value = call((fn, mode, names, expected), kw)
                if not value:
                    break
            else:
                chosen = candidate
                break
        if chosen is None:
            if self.allow_event_without_transition:
                return None
            raise TransitionNotAllowed(self._bound_event(event), self.configuration)
        if chosen.bare:  # nothing to call: the whole transition is the move
            setattr(model, field, chosen.target_value)
            if chosen.final:
                self._engine.stop()
            return None
        results: list[Any] = []
        try:
            if chosen.before:
                run(chosen.before, kw, results)
            if chosen.exit:
                run(chosen.exit, kw, None)
            if chosen.on_config:
                kw["previous_configuration"] = self.configuration
                kw["new_configuration"] = OrderedSet([chosen.target])
            if chosen.on:
                run(chosen.on, kw, results)
            setattr(model, field, chosen.target_value)
            if chosen.after_move:  # callbacks after the move get state=target
                if chosen.needs_data or (kwargs and not _RESERVED.isdisjoint(kwargs)):
                    kw = self._arguments(event, kwargs, chosen, chosen.target)
                else:
                    kw = {**kwargs, **chosen.base_target}
                if chosen.enter:
                    run(chosen.enter, kw, None)
        except BaseException:
            setattr(model, field, source)  # as send(): the configuration is restored
            raise
        if chosen.final:
            self._engine.stop()
        if chosen.after:
            run(chosen.after, kw, None)
        if not results:
            return None
        return results[0] if len(results) == 1 else results

    def _arguments(
        self, event: str, kwargs: dict[str, Any], candidate: Candidate, state: State
    ) -> dict[str, Any]:
        """What python-statemachine injects: the event's kwargs, then its own names."""
        given = {key: value for key, value in kwargs.items() if key not in _RESERVED}
        bound = self._bound_event(event)
        kw = dict(given)
        if candidate.needs_data:
            trigger = TriggerData(machine=self, event=bound, kwargs=given)
            data = EventData(trigger_data=trigger, transition=candidate.transition)
            data.state = state
            if state is not candidate.source:
                data.target = state
            kw["event_data"] = data
        kw.update(candidate.base if state is candidate.source else candidate.base_target)
        return kw
