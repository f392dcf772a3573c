"""A python-statemachine declaration compiled into a dict table, to execute transitions fast.

python-statemachine stays the single declaration of each machine (states, transitions, guards,
final states, the diagrams). Its ``send()`` runs the SCXML algorithm for any machine: it queues
the event (run to completion), resolves a dozen convention callbacks per transition
(``before_<event>``, ``on_enter_<state>`` ...) by signature, selects transitions, and exits and
enters states; about 80 us for a transition whose only callbacks are two guards. For a flat
machine whose transitions carry nothing but named guards, the same transition is a dict lookup
and the guards called in declaration order; that is what :class:`TransitionTable` does.

:meth:`TransitionTable.compile` reads the declaration once per class and returns None (use
``send()``) for anything the table does not execute the way ``send()`` would: compound or
parallel states, eventless or internal transitions, validators, guard expressions, explicit
actions or invocations, class-level listeners, or a convention callback (``on_enter_live``,
``after_transition`` ...) the class defines. A machine that gets a listener at run time must
switch to ``send()`` itself (``ConnectionMachine.add_listener`` does; ``ScalerMachine``
checks for listeners on each lifecycle change).

The machine writes the new state to its model's state field, where python-statemachine keeps it
(what its low-level ``current_state_value`` setter writes, less 1.6 us of normalising the value
to a set and back; the configuration cache is keyed by the value, so it follows), so
``configuration``, ``is_active``, the diagrams and the exporters read the same state; entering
a top-level final state stops the engine as ``send()`` does, so ``is_terminated`` agrees too.
"""

from __future__ import annotations

from typing import Any

import attrs
from statemachine import StateChart
from statemachine.callbacks import CallbackGroup, SpecReference

__all__ = ["TransitionTable"]

_EVENT_GROUPS = ("before", "on", "after")


@attrs.frozen
class _Row:
    """One declared transition: its target, its guards ``(method name, expected value)``."""

    target: str
    guards: tuple[tuple[str, bool], ...]
    final: bool


@attrs.frozen
class TransitionTable:
    """``(source state id, event) -> rows`` in declaration order (the order ``send()``
    tries them in)."""

    rows: dict[tuple[str, str], tuple[_Row, ...]]
    #: the entries whose first row has no guard: that row is taken, nothing to call
    unguarded: dict[tuple[str, str], _Row] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        first = {key: rows[0] for key, rows in self.rows.items() if not rows[0].guards}
        object.__setattr__(self, "unguarded", first)

    @classmethod
    def compile(cls, machine: type[StateChart]) -> TransitionTable | None:  # type: ignore[type-arg]
        """The table for ``machine``'s declaration, or None when the table cannot execute it
        exactly as ``send()`` does."""
        rows: dict[tuple[str, str], list[_Row]] = {}
        for state in machine.states:
            if state.parent is not None or state.states:
                return None
            for spec in (*state.enter, *state.exit, *state.invoke):
                if not spec.is_convention or hasattr(machine, spec.attr_name):
                    return None
            for transition in state.transitions:
                event = transition.event
                if not event or " " in event or transition.internal:
                    return None
                if list(transition.validators):
                    return None
                for group in (transition.before, transition.on, transition.after):
                    for spec in group:
                        if not spec.is_convention or hasattr(machine, spec.attr_name):
                            return None
                guards: list[tuple[str, bool]] = []
                for spec in transition.cond:
                    if (
                        spec.group is not CallbackGroup.COND
                        or spec.reference is not SpecReference.NAME
                        or not spec.attr_name.isidentifier()
                        or spec.cond is not None
                        or not callable(getattr(machine, spec.attr_name, None))
                    ):
                        return None
                    guards.append((spec.attr_name, spec.expected_value is not False))
                target = transition.target
                rows.setdefault((state.id, event), []).append(
                    _Row(target.id, tuple(guards), bool(target.final and target.parent is None))
                )
        if any(hasattr(machine, name) for name in ("prepare_event", "on_transition")):
            return None
        if getattr(machine, "_class_listeners", None):  # listeners declared on the class
            return None
        return cls({key: tuple(value) for key, value in rows.items()})

    def target(self, machine: Any, source: str, event: str, kwargs: dict[str, Any]) -> _Row | None:
        """The row ``send(event, **kwargs)`` would take from ``source`` (None: not allowed).

        Guards are the machine's methods, called with the event's keyword arguments (the
        table's guards take exactly what the handler passes, so nothing is resolved by
        signature at run time)."""
        for row in self.rows.get((source, event), ()):
            for name, expected in row.guards:
                if bool(getattr(machine, name)(**kwargs)) is not expected:
                    break
            else:
                return row
        return None
