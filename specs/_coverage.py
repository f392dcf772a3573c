"""Transition coverage of a property suite, like XState's model-based testing: which declared
transitions (source, event, target) of a machine the suite's examples exercised."""

from __future__ import annotations

from typing import Any

from statemachine import StateMachine

__all__ = [
    "Transition",
    "TransitionRecorder",
    "coverage_report",
    "declared_transitions",
    "next_transition",
]

#: (source state, event, target state), by state id.
Transition = tuple[str, str, str]


def declared_transitions(machine_class: type[StateMachine]) -> frozenset[Transition]:
    """Every transition declared in ``machine_class``'s body, one per event it answers."""
    return frozenset(
        (transition.source.id, str(event), transition.target.id)
        for state in machine_class.states
        for transition in state.transitions
        for event in transition.events
    )


def next_transition(
    declared: frozenset[Transition], taken: set[Transition], state: str, pick: int = 0
) -> Transition | None:
    """The first transition of a shortest path from ``state`` to a declared transition not in
    ``taken`` (breadth first, guards ignored); ``pick`` chooses among the nearest such
    transitions. None when every reachable one was taken."""
    paths: dict[str, Transition | None] = {state: None}
    frontier = [state]
    while frontier:
        following: list[str] = []
        nearest: list[Transition] = []
        for here in frontier:
            for transition in sorted(t for t in declared if t[0] == here):
                first = paths[here] or transition
                if transition not in taken:
                    nearest.append(first)
                if transition[2] not in paths:
                    paths[transition[2]] = first
                    following.append(transition[2])
        if nearest:
            return nearest[pick % len(nearest)]
        frontier = following
    return None


class TransitionRecorder:
    """A python-statemachine listener that collects the transitions a suite exercised.

    One recorder belongs to one spec class and accumulates over all its examples.
    """

    def __init__(self, machine_class: type[StateMachine]) -> None:
        self.machine_class = machine_class
        self.declared = declared_transitions(machine_class)
        self.exercised: set[Transition] = set()

    def after_transition(self, event: Any, source: Any, target: Any) -> None:
        self.exercised.add((source.id, str(getattr(event, "id", event)), target.id))

    @property
    def missed(self) -> frozenset[Transition]:
        """Declared transitions no example exercised."""
        return self.declared - self.exercised

    def clear(self) -> None:
        self.exercised.clear()


def coverage_report(spec: Any) -> str:
    """A text report of the transitions ``spec`` (a class returned by
    ``connection_lifecycle_spec`` or ``scaler_lifecycle_spec``) exercised so far."""
    recorder: TransitionRecorder = spec.transitions
    declared = sorted(recorder.declared)
    lines = [
        f"{recorder.machine_class.__name__}: {len(declared) - len(recorder.missed)}"
        f"/{len(declared)} declared transitions exercised"
    ]
    for source, event, target in declared:
        mark = "x" if (source, event, target) in recorder.exercised else " "
        lines.append(f"  [{mark}] {source} --{event}--> {target}")
    return "\n".join(lines)
