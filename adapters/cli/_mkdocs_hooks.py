"""mkdocs hook (``hooks:`` in mkdocs.yml): the generated diagram pages carry a placeholder
comment, replaced here at build time by the diagram as inline SVG, so the site shows it offline
and needs no JavaScript (Mermaid in the browser would be fetched from a CDN).

mkdocs loads this file by path, not as part of the package: imports are absolute.
"""

from __future__ import annotations

import re
from typing import Any

from regulator.adapters.cli._docgen import PLACEHOLDER
from regulator.fsm._diagram import diagram_svg

__all__ = ["on_page_content"]


def on_page_content(html: str, **_: Any) -> str:
    def figure(match: re.Match[str]) -> str:
        name = match.group(1)
        return f'<figure class="regulator-diagram" id="diagram-{name}">{diagram_svg(name)}</figure>'

    return PLACEHOLDER.sub(figure, html)
