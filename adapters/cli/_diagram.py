"""``regulator diagram``: render a machine from its declaration (python-statemachine draws it).

Mermaid, DOT and Markdown tables are pure Python; SVG and PNG run Graphviz's ``dot``.
``--events`` replays event names from the initial state (a guarded event takes its default,
unguarded branch; use ``--state`` to show any state) and highlights the state reached.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

from statemachine import StateMachine
from statemachine.contrib.diagram import DotGraphMachine

from ...fsm import ConnectionMachine, RegulatorError
from ...fsm._scaler import ScalerMachine

__all__ = ["FORMATS", "MACHINES", "DiagramError", "render_diagram"]

MACHINES: dict[str, type[StateMachine]] = {
    "connection": ConnectionMachine,
    "scaler": ScalerMachine,
}
FORMATS = ("mermaid", "dot", "svg", "png", "md")
GRAPHVIZ_HELP = (
    "needs Graphviz's `dot` program, which is not on PATH. Install Graphviz"
    " (Debian/Ubuntu: apt-get install graphviz; Fedora: dnf install graphviz;"
    " macOS: brew install graphviz). mermaid, dot and md output work without it."
)


class DiagramError(RegulatorError, ValueError):
    """A diagram request names an unknown machine, format, state or event."""


def _move(machine: StateMachine, state: str) -> None:
    machine.current_state_value = state
    if isinstance(machine, ScalerMachine):
        machine._state = state


def _replay(machine: StateMachine, events: Sequence[str]) -> None:
    states = {s.id: s for s in type(machine).states}
    for event in events:
        current = str(machine.current_state_value)
        options = [t for t in states[current].transitions if t.event == event]
        if not options:
            allowed = sorted({t.event for t in states[current].transitions})
            raise DiagramError(
                f"--events: {event!r} is not allowed in state {current!r}"
                f" (allowed: {', '.join(allowed) or 'none'})"
            )
        # Guarded branches are declared first; the last one is the default branch.
        _move(machine, options[-1].target.id)


def render_diagram(
    name: str, fmt: str = "mermaid", *, events: Sequence[str] = (), state: str | None = None
) -> str | bytes:
    """The diagram of machine ``name`` in ``fmt``; text for mermaid/dot/md, bytes for svg/png."""
    if name not in MACHINES:
        raise DiagramError(f"machine: must be one of {', '.join(MACHINES)} (got {name!r})")
    if fmt not in FORMATS:
        raise DiagramError(f"--format: must be one of {', '.join(FORMATS)} (got {fmt!r})")
    machine = MACHINES[name]()
    _replay(machine, events)
    if state is not None:
        known = [s.id for s in type(machine).states]
        if state not in known:
            raise DiagramError(f"--state: must be one of {', '.join(known)} (got {state!r})")
        _move(machine, state)
    if fmt in ("mermaid", "md"):
        return format(machine, fmt)
    graph = DotGraphMachine(machine).get_graph()  # type: ignore[no-untyped-call]
    dot = str(graph.to_string())
    if fmt == "dot":
        return dot
    binary = shutil.which("dot")
    if binary is None:
        raise DiagramError(f"--format {fmt} {GRAPHVIZ_HELP}")
    result = subprocess.run(
        [binary, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=False, timeout=60
    )
    if result.returncode != 0:
        raise DiagramError(f"dot -T{fmt} failed: {result.stderr.decode(errors='replace').strip()}")
    output: bytes = result.stdout
    return output
