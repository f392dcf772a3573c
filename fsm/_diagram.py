"""Diagrams of the machines, drawn from their declarations (python-statemachine extracts them).

One renderer for every reader: ``regulator diagram``, the demo's report and the docs site.
Mermaid, DOT (``fsm/_dot.py``) and Markdown tables are pure Python; SVG and PNG run
Graphviz's ``dot`` when it is on PATH. Without Graphviz, :func:`diagram_svg` falls back to
:func:`layout_svg`, a pure-Python layout that gives every transition label its own place, so
no two labels are ever drawn on top of each other.

It lives in ``regulator.fsm`` so that both hosts (the command line and the demo) can use it
without importing each other; it imports python-statemachine only (no pydot: the core install
renders every format, SVG and PNG with Graphviz).
"""

from __future__ import annotations

import copy
import html
import importlib
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import attrs
from statemachine import StateMachine
from statemachine.exceptions import TransitionNotAllowed

from ._connection import ConnectionMachine
from ._dot import dot_source
from ._errors import IllegalEventError, RegulatorError
from ._logfmt import escape_controls
from ._scaler import ScalerMachine

__all__ = [
    "FORMATS",
    "GRAPHVIZ_HELP",
    "MACHINES",
    "DiagramError",
    "DiagramLayout",
    "diagram_svg",
    "has_graphviz",
    "layout",
    "layout_svg",
    "mermaid",
    "render_diagram",
]

#: The shipped machines, by the names the command line and the docs use.
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
#: python-statemachine's own highlight colour (DOT ``turquoise``, Mermaid ``#40E0D0``).
ACTIVE_FILL = "#40e0d0"


class DiagramError(RegulatorError, ValueError):
    """A diagram request names an unknown machine, format, state or event."""


def dot_string(text: str) -> str:
    """``text`` as a quoted DOT string that Graphviz draws as written: backslashes and quotes
    escaped (pydot escapes neither, so a caption ending in ``\\`` made the DOT source
    unparsable), control characters shown as escapes. Quoted here, pydot passes it through."""
    inert = escape_controls(text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{inert}"'


def has_graphviz() -> bool:
    return shutil.which("dot") is not None


def _import_class(path: str) -> type[StateMachine]:
    module_name, _, attr = path.partition(":") if ":" in path else path.rpartition(".")
    if not module_name or not attr:
        raise DiagramError(
            f"machine: must be {', '.join(MACHINES)} or a dotted path pkg.module:Class"
            f" (got {path!r})"
        )
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise DiagramError(f"machine: cannot import {path!r} ({exc})") from None
    if not (isinstance(found, type) and issubclass(found, StateMachine)):
        raise DiagramError(f"machine: {path!r} is not a python-statemachine machine class")
    return found


def _machine_class(machine: Any) -> type[StateMachine]:
    if isinstance(machine, StateMachine):
        return type(machine)
    if isinstance(machine, type) and issubclass(machine, StateMachine):
        return machine
    if isinstance(machine, str):
        if machine in MACHINES:
            return MACHINES[machine]
        return _import_class(machine)
    raise DiagramError(f"machine: must be a machine class, instance or name (got {machine!r})")


def _fresh(cls: type[StateMachine]) -> StateMachine:
    try:
        return cls()
    except Exception as exc:  # a host's constructor may need arguments
        raise DiagramError(
            f"machine: {cls.__name__}() cannot be built without arguments ({exc});"
            " pass an instance to draw it, or draw the class without --events/--state"
        ) from None


def _move(machine: StateMachine, state: str) -> None:
    machine.current_state_value = next(s.value for s in type(machine).states if s.id == state)
    if isinstance(machine, ScalerMachine):
        machine._state = state


def _replay(machine: StateMachine, events: Sequence[str]) -> None:
    """Send ``events`` one by one through the machine's real guards (a machine with typed
    events, like ConnectionMachine, takes them through ``replay_event``)."""
    states = {s.id: s for s in type(machine).states}
    for event in events:
        current = str(machine.current_state_value)
        replay = getattr(machine, "replay_event", None)
        try:
            if replay is not None:
                replay(event)
            else:
                machine.send(event)
        except (TransitionNotAllowed, IllegalEventError):
            allowed = sorted({t.event for t in states[current].transitions})
            raise DiagramError(
                f"--events: {event!r} is not allowed in state {current!r}"
                f" (allowed: {', '.join(allowed) or 'none'})"
            ) from None
        except TypeError as exc:  # a guard or action needs the event's arguments
            raise DiagramError(f"--events: {event!r} cannot be replayed: {exc}") from None


def _machine(target: Any, events: Sequence[str], state: str | None) -> StateMachine | None:
    """The instance to draw (None: the class, nothing highlighted)."""
    cls = _machine_class(target)
    if isinstance(target, StateMachine) and not events:
        if state is None:
            return target
        machine: StateMachine | None = copy.deepcopy(target)  # the host's instance stays put
    elif events or state is not None:
        machine = _fresh(cls)
    else:
        return None
    assert machine is not None
    _replay(machine, events)
    if state is not None:
        known = [s.id for s in cls.states]
        if state not in known:
            raise DiagramError(f"--state: must be one of {', '.join(known)} (got {state!r})")
        _move(machine, state)
    return machine


def mermaid(machine: StateMachine | type[StateMachine]) -> str:
    """python-statemachine's Mermaid text of ``machine``, the current state highlighted by a
    ``class`` line (what a wing's ``diagram()`` should return too)."""
    # python-statemachine writes the highlight as `idle:::active`, which mermaid-cli 11 does
    # not apply to a state declared with a label; a `class idle active` line is applied.
    lines = []
    for line in format(machine, "mermaid").splitlines():
        stripped = line.strip()
        if stripped.endswith(":::active") and " " not in stripped:
            indent = line[: len(line) - len(line.lstrip())]
            line = f"{indent}class {stripped.removesuffix(':::active')} active"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _graphviz(dot: str, fmt: str) -> bytes:
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


def render_diagram(
    machine: Any,
    format: str = "mermaid",
    *,
    state: str | None = None,
    events: Sequence[str] = (),
) -> str | bytes:
    """The state diagram of ``machine``: text for mermaid/dot/md, bytes for svg/png.

    ``machine`` is a machine class or instance (any python-statemachine machine, a
    :class:`~regulator.fsm.Machine` included), ``"connection"``/``"scaler"``, or a dotted
    path ``"pkg.module:Class"``. An instance is drawn with its current state highlighted;
    ``events`` replays event names on a fresh instance from the initial state, through the
    machine's real guards; ``state`` highlights any state. A class alone is drawn with
    nothing highlighted.

    .. versionadded:: 0.2.0
    """
    if format not in FORMATS:
        raise DiagramError(f"--format: must be one of {', '.join(FORMATS)} (got {format!r})")
    drawn = _machine(machine, events, state)
    source: Any = drawn if drawn is not None else _machine_class(machine)
    if format == "mermaid":
        return mermaid(source)
    if format == "md":
        return format_md(source)
    # our own DOT writer: pure Python (python-statemachine's needs pydot)
    active = str(drawn.current_state_value) if drawn is not None else None
    dot = dot_source(source, active=active)
    if format == "dot":
        return dot
    return _graphviz(dot, format)


def format_md(source: Any) -> str:
    return str(format(source, "md"))


def diagram_svg(machine: Any, *, state: str | None = None, caption: str = "") -> str:
    """An ``<svg>`` element (no XML prolog, ready to inline in HTML) of ``machine`` (as
    :func:`render_diagram` takes it).

    Graphviz lays it out when ``dot`` is on PATH; otherwise :func:`layout_svg` does. ``state``
    is filled (none when ``None``); ``caption`` is written under the drawing.
    """
    _machine(machine, (), state)  # checks the machine and the state, as render_diagram does
    if has_graphviz():
        # Top to bottom: left to right, the connection machine is about twice as wide as a
        # page column; the class is drawn with nothing highlighted when no state is given.
        dot = dot_source(
            _machine_class(machine), active=state, rankdir="TB", caption=caption, compact=True
        )
        svg = _graphviz(dot, "svg").decode()
        svg = svg[svg.index("<svg") :]
        # Graphviz sizes the drawing in pt (1.33 px): in px, a 12 pt label is 12 px on screen
        # and the connection machine fits a page column without being shrunk
        return re.sub(r'(width|height)="([\d.]+)pt"', r'\1="\2"', svg, count=2)
    return layout_svg(machine, state=state, caption=caption)


# -- the pure-Python layout ------------------------------------------------------------------

FONT = 12.0  # px: label text
CHAR = 0.62 * FONT  # px: a generous average glyph width of a sans-serif font at FONT
BOX_H = 34.0
BOX_GAP = 34.0  # px between states: the connection machine stays under 1,150 px wide
LANE_H = FONT + 10.0  # px between lanes: a label box is FONT + 6 high, so lanes never touch
PAD = 16.0


@attrs.frozen
class Box:
    x: float
    y: float
    w: float
    h: float

    def overlaps(self, other: Box) -> bool:
        return (
            self.x < other.x + other.w
            and other.x < self.x + self.w
            and self.y < other.y + other.h
            and other.y < self.y + self.h
        )


@attrs.frozen
class Edge:
    source: str
    target: str
    label: str
    lane: int  # > 0: above the row of states, < 0: below
    x1: float  # where the edge leaves the source box
    x2: float  # where it enters the target box
    label_box: Box


@attrs.frozen
class DiagramLayout:
    """States in one row, each transition on a lane of its own side (above: forward, below:
    backward and self-loops); edges that share a lane never share any horizontal extent, so
    no label can overlap another label or a state."""

    width: float
    height: float
    row_y: float
    states: dict[str, Box]
    names: dict[str, str]
    initial: str
    edges: list[Edge]


def _text_width(text: str) -> float:
    return len(text) * CHAR


def _name_lines(name: str) -> list[str]:
    """A state's name on at most two lines, its parenthesis on the second ("Handshaking" /
    "(TLS + upgrade)"): narrower boxes, so the one row fits a page."""
    head, sep, tail = name.partition(" (")
    return [head, f"({tail}"] if sep else [name]


def layout(machine_cls: type[StateMachine]) -> DiagramLayout:
    from statemachine.contrib.diagram.extract import extract

    graph = extract(machine_cls)
    names = {s.id: s.name for s in graph.states}
    order = [s.id for s in graph.states]
    initial = next((s.id for s in graph.states if s.is_initial), order[0])
    labels: dict[tuple[str, str], list[str]] = {}
    for t in graph.transitions:
        if t.is_initial:
            continue
        text = t.event + "".join(f" [{g}]" for g in t.guards)
        for target in t.targets:
            labels.setdefault((t.source, target), []).append(text)
    boxes: dict[str, Box] = {}
    x = PAD + 30.0  # room for the initial-state dot
    for sid in order:
        w = max(max(map(_text_width, _name_lines(names[sid]))) + 20.0, 70.0)
        boxes[sid] = Box(x, 0.0, w, BOX_H)
        x += w + BOX_GAP
    # endpoints are spread over each box's top (forward edges) or bottom (others)
    ports: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a, b in labels:
        side = "top" if order.index(a) < order.index(b) else "bottom"
        ports.setdefault((a, side), []).append((a, b))
        ports.setdefault((b, side), []).append((a, b))

    def port(state: str, side: str, edge: tuple[str, str], end: int) -> float:
        users = ports[(state, side)]
        slot = users.index(edge) if edge[0] != edge[1] else users.index(edge) + end * 0.5
        box = boxes[state]
        return box.x + box.w * (slot + 1) / (len(users) + 1)

    pending = []
    for (a, b), texts in labels.items():
        side = "top" if order.index(a) < order.index(b) else "bottom"
        x1, x2 = port(a, side, (a, b), 0), port(b, side, (a, b), 1)
        if a == b:
            x1, x2 = x1 - 12.0, x1 + 12.0
        text = ", ".join(texts)
        pending.append((side, a, b, text, x1, x2))
    # shortest spans nearest the row: fewer crossings
    pending.sort(key=lambda e: (e[0], abs(e[5] - e[4])))
    lanes: dict[str, list[list[tuple[float, float]]]] = {"top": [], "bottom": []}
    placed: list[tuple[str, str, str, str, int, float, float, float]] = []
    for side, a, b, text, x1, x2 in pending:
        mid = (x1 + x2) / 2
        tw = _text_width(text) + 8.0
        lo = min(x1, x2, mid - tw / 2) - 6.0
        hi = max(x1, x2, mid + tw / 2) + 6.0
        free = [
            i
            for i, used in enumerate(lanes[side])
            if all(hi <= u_lo or lo >= u_hi for u_lo, u_hi in used)
        ]
        if not free:
            lanes[side].append([])
            free = [len(lanes[side]) - 1]
        lanes[side][free[0]].append((lo, hi))
        placed.append((side, a, b, text, free[0] + 1, x1, x2, tw))
    above = len(lanes["top"]) * LANE_H + PAD + 10.0
    row_y = above + 28.0  # room for the title
    below = len(lanes["bottom"]) * LANE_H + PAD + 10.0
    boxes = {sid: attrs.evolve(box, y=row_y) for sid, box in boxes.items()}
    edges = []
    for side, a, b, text, k, x1, x2, tw in placed:
        y = row_y - k * LANE_H - 6.0 if side == "top" else row_y + BOX_H + k * LANE_H + 6.0
        mid = (x1 + x2) / 2
        label_box = Box(mid - tw / 2, y - (FONT + 6.0) / 2, tw, FONT + 6.0)
        edges.append(Edge(a, b, text, k if side == "top" else -k, x1, x2, label_box))
    right = max(
        [b.x + b.w for b in boxes.values()] + [e.label_box.x + e.label_box.w for e in edges]
    )
    return DiagramLayout(
        width=right + PAD,
        height=row_y + BOX_H + below + 24.0,
        row_y=row_y,
        states=boxes,
        names=names,
        initial=initial,
        edges=edges,
    )


def _tspans(name: str, x: float) -> str:
    lines = _name_lines(name)
    if len(lines) == 1:
        return html.escape(name)
    first, second = (html.escape(line) for line in lines)
    return (
        f'<tspan x="{x:.1f}" dy="-0.6em">{first}</tspan>'
        f'<tspan x="{x:.1f}" dy="1.2em">{second}</tspan>'
    )


def layout_svg(machine: Any, *, state: str | None = None, caption: str = "") -> str:
    """``machine`` (as :func:`render_diagram` takes it) drawn by :func:`layout` as an
    ``<svg>`` element; ``state`` filled."""
    cls = _machine_class(machine)
    if state is not None and state not in [s.id for s in cls.states]:
        known = ", ".join(s.id for s in cls.states)
        raise DiagramError(f"--state: must be one of {known} (got {state!r})")
    plan = layout(cls)
    esc = html.escape
    out = [
        # the class lets a page keep it at its natural size (labels stay 12 px) and scroll
        f'<svg xmlns="http://www.w3.org/2000/svg" class="regulator-layout" width="{plan.width:.0f}"'
        f' height="{plan.height:.0f}" viewBox="0 0 {plan.width:.0f} {plan.height:.0f}"'
        f' font-family="Helvetica, Arial, sans-serif" font-size="{FONT:.0f}">',
        "<defs><marker id='arrow' viewBox='0 0 10 10' refX='10' refY='5' markerWidth='7'"
        " markerHeight='7' orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z'"
        " fill='#555'/></marker></defs>",
        f'<text x="{PAD}" y="18" font-weight="bold">{esc(cls.__name__)}</text>',
    ]
    for edge in plan.edges:
        top = edge.lane > 0
        y_box = plan.row_y if top else plan.row_y + BOX_H
        y = edge.label_box.y + edge.label_box.h / 2
        out.append(
            f'<path class="edge" d="M{edge.x1:.1f},{y_box:.1f} V{y:.1f} H{edge.x2:.1f}'
            f' V{y_box:.1f}" fill="none" stroke="#555" marker-end="url(#arrow)"/>'
        )
    for edge in plan.edges:  # labels last: their backgrounds cover the lines they cross
        b = edge.label_box
        out.append(
            f'<g class="edge-label"><rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}"'
            f' height="{b.h:.1f}" fill="white" opacity="0.9"/><text x="{b.x + b.w / 2:.1f}"'
            f' y="{b.y + b.h / 2:.1f}" text-anchor="middle" dominant-baseline="central"'
            f' fill="#333">{esc(edge.label)}</text></g>'
        )
    init = plan.states[plan.initial]
    out.append(
        f'<circle cx="{init.x - 24:.1f}" cy="{init.y + BOX_H / 2:.1f}" r="5" fill="black"/>'
        f'<path d="M{init.x - 19:.1f},{init.y + BOX_H / 2:.1f} H{init.x:.1f}" stroke="black"'
        ' marker-end="url(#arrow)"/>'
    )
    for sid, box in plan.states.items():
        active = sid == state
        out.append(
            f'<g class="state" id="state-{esc(sid)}"><rect x="{box.x:.1f}" y="{box.y:.1f}"'
            f' width="{box.w:.1f}" height="{box.h:.1f}" rx="8"'
            f' fill="{ACTIVE_FILL if active else "white"}" stroke="#222"'
            f' stroke-width="{2.5 if active else 1.2}"/><text x="{box.x + box.w / 2:.1f}"'
            f' y="{box.y + box.h / 2:.1f}" text-anchor="middle" dominant-baseline="central"'
            f"{' font-weight=' + chr(34) + 'bold' + chr(34) if active else ''}>"
            f"{_tspans(plan.names[sid], box.x + box.w / 2)}</text></g>"
        )
    if caption:
        out.append(
            f'<text x="{plan.width / 2:.1f}" y="{plan.height - 8:.1f}"'
            f' text-anchor="middle">{esc(escape_controls(caption))}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
