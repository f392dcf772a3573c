"""The docs site as a reader opens it: built strictly, offline, each diagram an SVG with its
states, links where pages are referenced."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from _browser import layout_problems, needs_chromium, rendered_dom, screenshot
from regulator.fsm import CONNECTION_STATES, ConnectionMachine, Machine
from regulator.fsm._scaler import SCALER_STATES, ScalerMachine

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as `make docs` builds it (Graphviz draws the diagrams when it is installed)."""
    return build_site(
        tmp_path_factory.mktemp("site"), f"{Path(sys.executable).parent}:/usr/bin:/bin"
    )


def build_site(out: Path, path: str) -> Path:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs-material is not installed (dev extra)")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": path},
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
    for target in (
        "connection.html",
        "scaler.html",
        "diagrams/connection.html",
        "diagrams/scaler.html",
    ):
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
    site: Path, name: str, machine: type[Machine], states: tuple[str, ...]
) -> None:
    page = site / "diagrams" / f"{name}.html"
    dom = rendered_dom(page)
    figure = re.search(rf'<figure[^>]*id="diagram-{name}"[^>]*>(.*?)</figure>', dom, re.S)
    assert figure is not None and "<svg" in figure.group(1)
    # a label's text, its lines (tspans) joined by a space
    texts = re.findall(r"<text[^>]*>(.*?)</text>", figure.group(1), re.S)
    text = " ".join(" ".join(re.findall(r">?([^<>]+)<?", t)) for t in texts)
    labels = {s.id: s.name for s in machine.states}
    for state in states:
        assert labels[state] in text, f"{labels[state]!r} missing from the {name} diagram"
    screenshot(page, f"docs-diagrams-{name}", "1400,1400")


@needs_chromium
def test_the_index_renders(site: Path) -> None:
    page = site / "index.html"
    dom = rendered_dom(page)
    assert 'href="diagrams/connection.html"' in dom
    screenshot(page, "docs-index", "1400,1600")


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


def _links(page: Path) -> list[str]:
    """The page's relative links to other pages and files (not anchors, not other sites)."""
    text = page.read_text(encoding="utf-8")
    hrefs = re.findall(r'<(?:a|link)\b[^>]*\bhref="([^"#]+)(?:#[^"]*)?"', text)
    return sorted({h for h in hrefs if not re.match(r"[a-z]+:", h)})


def test_every_link_opens_a_file_from_disk(site: Path) -> None:
    """Opened as file://, a link to a folder shows a directory listing: every link names a
    file (mkdocs.yml: use_directory_urls: false)."""
    for page in _pages(site):
        for href in _links(page):
            target = (page.parent / href).resolve()
            assert target.is_file(), f"{page.relative_to(site)}: {href} is not a file"


def test_every_link_works_served(site: Path) -> None:
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    try:
        for page in _pages(site):
            url = base + page.relative_to(site).as_posix()
            for href in _links(page):
                target = urllib.parse.urljoin(url, href)
                with urllib.request.urlopen(target, timeout=10) as answer:
                    assert answer.status == 200, target
                    if target.endswith(".html") or target.endswith("/"):
                        assert b"<title>Index of" not in answer.read(2000), target
    finally:
        server.shutdown()
        server.server_close()


@needs_chromium
def test_no_page_overflows_or_clips_a_diagram(site: Path) -> None:
    """Every page at 1280 px (100 % zoom): nothing past the right edge that no container
    scrolls (the performance page's wide tables scroll inside the column), no SVG cut off,
    every diagram label at least 11 px on screen."""
    found = {str(p.relative_to(site)): layout_problems(p) for p in _pages(site)}
    assert {page: problems for page, problems in found.items() if problems} == {}


@needs_chromium
def test_the_diagrams_fit_without_graphviz(tmp_path: Path) -> None:
    """Without Graphviz (only the venv on PATH) the built-in layout draws them: they fit too."""
    built = build_site(tmp_path / "site", str(Path(sys.executable).parent))
    for name in ("connection", "scaler"):
        page = built / "diagrams" / f"{name}.html"
        assert "regulator-layout" in page.read_text(encoding="utf-8")
        assert layout_problems(page) == []
