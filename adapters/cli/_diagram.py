"""``regulator diagram``: the renderer lives in ``regulator.fsm._diagram`` so the demo's report
and the docs site draw the same diagrams without importing the command line."""

from __future__ import annotations

from ...fsm._diagram import FORMATS, GRAPHVIZ_HELP, MACHINES, DiagramError, render_diagram

__all__ = ["FORMATS", "GRAPHVIZ_HELP", "MACHINES", "DiagramError", "render_diagram"]
