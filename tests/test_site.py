"""The docs site as a reader opens it: built strictly, offline, each diagram an SVG with its
states, links where pages are referenced."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _browser import needs_chromium, rendered_dom, screenshot
from regulator.fsm import CONNECTION_STATES, ConnectionMachine
from regulator.fsm._scaler import SCALER_STATES, ScalerMachine

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs-material is not installed (dev extra)")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_no_page_loads_anything_from_the_network(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        text = page.read_text(encoding="utf-8")
        remote = re.findall(r"<(?:script|link|img)\b[^>]*(?:src|href)=\"(https?://[^\"]+)\"", text)
        # <a href> links out are fine; a script, stylesheet, font or image fetched is not
        assert remote == [], f"{page.relative_to(site)} fetches {remote}"
        assert "mermaid" not in re.sub(r"<pre.*?</pre>|<code>.*?</code>", "", text, flags=re.S)


def test_the_index_links_the_pages_it_names(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    for target in ("connection/", "scaler/", "diagrams/connection/", "diagrams/scaler/"):
        assert f'href="{target}"' in index
    assert "<code>connection.md</code>" not in index


@needs_chromium
@pytest.mark.parametrize(
    ("name", "machine", "states"),
    [
        ("connection", ConnectionMachine, CONNECTION_STATES),
        ("scaler", ScalerMachine, SCALER_STATES),
    ],
)
def test_each_diagram_renders_as_an_svg_with_its_states(
    site: Path, name: str, machine: type, states: tuple[str, ...]
) -> None:
    page = site / "diagrams" / name / "index.html"
    dom = rendered_dom(page)
    figure = re.search(rf'<figure[^>]*id="diagram-{name}"[^>]*>(.*?)</figure>', dom, re.S)
    assert figure is not None and "<svg" in figure.group(1)
    text = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", figure.group(1)))
    labels = {s.id: s.name for s in machine.states}
    for state in states:
        assert labels[state] in text, f"{labels[state]!r} missing from the {name} diagram"
    screenshot(page, f"docs-diagrams-{name}", "1400,1400")


@needs_chromium
def test_the_index_renders(site: Path) -> None:
    page = site / "index.html"
    dom = rendered_dom(page)
    assert 'href="diagrams/connection/"' in dom
    screenshot(page, "docs-index", "1400,1600")
