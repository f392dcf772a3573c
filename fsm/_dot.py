"""DOT text of a machine, written here in pure Python from python-statemachine's extracted
graph: ``regulator diagram --format dot`` needs nothing but the core install (python-statemachine's
own DOT renderer needs pydot), and SVG/PNG need only Graphviz's ``dot`` program.

The text is sized for a page: labels 14/12 pt, which Graphviz's SVG writes as 14/12 user
units; a diagram shown at its natural size (the docs site and the report never shrink one)
keeps its edge labels at 12 px or more.
"""

from __future__ import annotations

from statemachine import StateMachine
from statemachine.contrib.diagram.extract import extract

from ._logfmt import escape_controls

__all__ = ["EDGE_FONT", "NODE_FONT", "dot_source"]

#: Point sizes of state names and of transition labels (Graphviz's SVG unit: 1 pt = 1 px).
NODE_FONT = 14
EDGE_FONT = 12
#: The highlight of the current state (python-statemachine's own colour).
ACTIVE_FILL = "#40e0d0"


def _quote(text: str) -> str:
    """A DOT double-quoted string: backslashes and quotes escaped, line breaks as ``\\n``."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def dot_source(
    machine: StateMachine | type[StateMachine],
    *,
    active: str | None = None,
    rankdir: str = "LR",
    caption: str = "",
    compact: bool = False,
) -> str:
    """The DOT text of ``machine`` (a class or an instance); ``active`` names the state to fill.

    ``rankdir`` is ``LR`` (the command line's default, as python-statemachine draws it) or
    ``TB``; ``compact`` packs it for a page column: top to bottom, close together, parallel
    edges concentrated, the connection machine is about 750 px wide at 12 px labels (left to
    right it is about 1,500).
    """
    graph = extract(machine)
    name = machine.__name__ if isinstance(machine, type) else type(machine).__name__
    spacing = (
        "nodesep=0.15, ranksep=0.3, concentrate=true" if compact else "nodesep=0.35, ranksep=0.45"
    )
    lines = [
        f"digraph {name if name.isidentifier() else _quote(name)} {{",
        f"  graph [rankdir={rankdir}, fontname=Helvetica, fontsize={NODE_FONT},"
        f" {spacing}, label={_quote(escape_controls(caption) if caption else name)}, labelloc=b];",
        f'  node [shape=box, style="rounded,filled", fillcolor=white, fontname=Helvetica,'
        f" fontsize={NODE_FONT}, penwidth=1.5];",
        f'  edge [fontname=Helvetica, fontsize={EDGE_FONT}, color="#555555"];',
        '  "__initial" [label="", shape=point, width=0.15, style=filled, fillcolor=black];',
    ]
    initial = next((s.id for s in graph.states if s.is_initial), graph.states[0].id)
    lines.append(f'  "__initial" -> {_quote(initial)};')
    for state in graph.states:
        attrs = [f"label={_quote(state.name)}"]
        if state.id == active:
            attrs += [f'fillcolor="{ACTIVE_FILL}"', "penwidth=2.5"]
        if str(getattr(state.type, "value", state.type)) == "final":
            attrs.append("peripheries=2")
        lines.append(f"  {_quote(state.id)} [{', '.join(attrs)}];")
    # One edge per pair of states, its transitions' labels one under the other (``Fail
    # [fatal_or_exhausted]`` and ``Stop`` both lead to closed): fewer edges to route.
    labels: dict[tuple[str, str], list[str]] = {}
    for t in graph.transitions:
        if t.is_initial:
            continue
        label = t.event + "".join(f" [{g}]" for g in t.guards)
        for target in t.targets:
            labels.setdefault((t.source, target), []).append(label)
    for (source, target), texts in labels.items():
        lines.append(
            f"  {_quote(source)} -> {_quote(target)} [label={_quote(chr(10).join(texts))}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
