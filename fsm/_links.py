"""Linking: a :class:`regulator.fsm.Machine`'s transition, ready to run on the engine.

For one ``(state, event)`` of one instance, python-statemachine has already resolved every
callback spec (names, callables, ``unless``, listeners, the model) into its callback
registry. :class:`Candidate` reads those resolved lists once per declared transition and
keeps, for each, the target callable with the names of the parameters it takes, so that a
call passes exactly the arguments python-statemachine's ``SignatureAdapter`` would pass
(``fsm/_machine.py`` says why and how the engine runs them).
"""

from __future__ import annotations

import inspect
from typing import Any

from statemachine import State
from statemachine.callbacks import allways_true

__all__ = [
    "ALL",
    "NAMED",
    "NOARGS",
    "NO_ARGUMENTS",
    "WRAPPED",
    "Call",
    "Candidate",
    "Plan",
    "call",
    "link_call",
    "run",
]

# How a linked callable is called: (callable, mode, parameter names, expected value).
NOARGS, NAMED, ALL, WRAPPED = range(4)
Call = tuple[Any, int, tuple[str, ...], Any]
#: The arguments of a candidate whose callables take none (never changed).
NO_ARGUMENTS: dict[str, Any] = {}


def link_call(wrapper: Any) -> Call:
    """The target callable of one of python-statemachine's resolved callback wrappers, with
    the names of the parameters it takes; the wrapper itself when the binding is not plain."""
    slow: Call = (wrapper, WRAPPED, (), wrapper.expected_value)
    if wrapper.condition is not allways_true:
        return slow
    adapter = wrapper._callback
    code = getattr(adapter, "__code__", None)
    closure = getattr(adapter, "__closure__", None)
    if code is None or closure is None or code.co_name != "signature_adapter":
        return slow  # an expression, an attribute's value, a property ...
    cells = dict(zip(code.co_freevars, (cell.cell_contents for cell in closure), strict=True))
    target = cells.get("a_callable")
    if target is None or getattr(adapter, "is_coroutine", False):
        return slow
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return slow
    names: list[str] = []
    every = False
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            every = True
        elif parameter.kind is inspect.Parameter.POSITIONAL_ONLY:
            return slow
        elif parameter.kind is not inspect.Parameter.VAR_POSITIONAL:
            names.append(parameter.name)
    mode = ALL if every else (NAMED if names else NOARGS)
    return (target, mode, tuple(names), wrapper.expected_value)


def call(entry: Call, kw: dict[str, Any]) -> Any:
    fn, mode, names, expected = entry
    if mode == NOARGS:
        value = fn()
    elif mode == NAMED:
        value = fn(**{name: kw[name] for name in names if name in kw})
    elif mode == ALL:
        value = fn(**kw)
    else:
        return fn.call(**kw)  # python-statemachine's wrapper applies expected_value itself
    if expected is not None:
        return bool(value) == expected
    return value


def run(calls: tuple[Call, ...], kw: dict[str, Any], results: list[Any] | None) -> None:
    for entry in calls:
        if entry[1] == WRAPPED and not entry[0].condition(**kw):
            continue
        value = call(entry, kw)
        if results is not None:
            results.append(value)


class Candidate:
    """One declared transition for a ``(state, event)``, linked for one instance."""

    __slots__ = (
        "after",
        "after_move",
        "bare",
        "base",
        "base_target",
        "before",
        "enter",
        "exit",
        "final",
        "guard_names",
        "guards",
        "guards_only",
        "needs_data",
        "needs_kw",
        "on",
        "on_config",
        "source",
        "target",
        "target_value",
        "transition",
        "validators",
    )

    def __init__(self, machine: Any, transition: Any, event: Any) -> None:
        registry = machine._callbacks._registry

        def calls(key: str) -> tuple[Call, ...]:
            executor = registry.get(key)
            return tuple(link_call(w) for w in executor) if executor is not None else ()

        self.transition = transition
        self.source: State = transition.source
        self.target: State = transition.target
        self.target_value = self.target.value
        self.final = bool(self.target.final and self.target.parent is None)
        self.validators = calls(transition.validators.key)
        self.guards = calls(transition.cond.key)
        self.before = calls(transition.before.key)
        self.exit = calls(self.source.exit.key)
        self.on = calls(transition.on.key)
        self.enter = calls(self.target.enter.key)
        self.after = calls(transition.after.key)
        every = (
            self.validators + self.guards + self.before + self.exit + self.on + self.enter
        ) + self.after
        self.needs_kw = any(entry[1] != NOARGS for entry in every)
        self.bare = not every
        self.after_move = bool(self.enter or self.after)
        others = self.validators + self.before + self.exit + self.on + self.enter + self.after
        self.guards_only = not others and all(
            entry[1] in (NOARGS, NAMED) and "event_data" not in entry[2] for entry in self.guards
        )
        self.guard_names = frozenset(name for entry in self.guards for name in entry[2])
        self.needs_data = any(
            entry[1] in (ALL, WRAPPED) or "event_data" in entry[2] for entry in every
        )
        # What python-statemachine injects besides the event's kwargs, before the move and
        # after it (built once per link: the machine, its model and the event are fixed).
        self.base = {
            "machine": machine,
            "event": event,
            "model": machine.model,
            "transition": transition,
            "state": self.source,
            "source": self.source,
            "target": self.target,
        }
        self.base_target = {**self.base, "state": self.target}
        self.on_config = any(
            entry[1] in (ALL, WRAPPED)
            or "previous_configuration" in entry[2]
            or "new_configuration" in entry[2]
            for entry in self.on
        )


class Plan(tuple[Candidate, ...]):
    """The candidates of one ``(state, event)``, in declaration order; ``simple``: each is
    bare or has plain guards only (``Machine._move`` runs those without ``_step``)."""

    simple: bool

    def __new__(cls, candidates: Any) -> Plan:
        plan = super().__new__(cls, candidates)
        plan.simple = all(c.bare or c.guards_only for c in plan)
        return plan
