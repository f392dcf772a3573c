"""Headless Chromium for the tests that look at pages as a person would (the docs site, the
demo's report). Chromium comes from the system packages; the tests skip, saying so, without it.

Every run gets a fresh profile and a proxy that refuses everything, so a page that needs the
network (a CDN script, a web font) shows it by failing here as it would offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

BINARY = next(
    (b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None
)
needs_chromium = pytest.mark.skipif(
    BINARY is None, reason="Chromium is not installed (Debian/Ubuntu: apt-get install chromium)"
)
#: Set to a folder to keep screenshots of the pages the tests open (`make docs-check` does).
SCREENSHOTS = os.environ.get("DOCS_CHECK_SCREENSHOTS")


def _run(url: str, *args: str) -> str:
    assert BINARY is not None
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                BINARY,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--proxy-server=http://127.0.0.1:9",  # offline: nothing may be fetched
                f"--user-data-dir={profile}",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def rendered_dom(path: Path) -> str:
    """The page's DOM after its scripts ran (5 s of virtual time)."""
    return _run(path.resolve().as_uri(), "--virtual-time-budget=5000", "--dump-dom")


def screenshot(path: Path, name: str, size: str = "1400,3000") -> None:
    """Keep a screenshot of the page under $DOCS_CHECK_SCREENSHOTS, when it is set."""
    if not SCREENSHOTS:
        return
    folder = Path(SCREENSHOTS)
    folder.mkdir(parents=True, exist_ok=True)
    out = (folder / f"{name}.png").resolve()
    _run(
        path.resolve().as_uri(),
        "--virtual-time-budget=5000",
        "--hide-scrollbars",
        f"--window-size={size}",
        f"--screenshot={out}",
    )
    assert out.stat().st_size > 0


# A script appended to a copy of the page: after load it lists what a reader would find broken
# (elements past the right edge that nothing scrolls, SVG drawn outside its box or cut by a
# clipping parent, SVG text smaller than MIN_TEXT_PX on screen) in <pre id="layout-report">.
_CHECK = """
<script>
window.addEventListener('load', () => {
  const vw = document.documentElement.clientWidth, problems = [];
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
    (typeof el.className === 'string' && el.className.trim()
      ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const shown = el => !el.checkVisibility ||
    el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true});
  // the nearest parent that scrolls or clips (overflow-x other than visible)
  const scroller = el => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if (o !== 'visible') return a;
    }
    return null;
  };
  // whether a parent that scrolls, itself within the viewport, holds the element: then a
  // reader scrolls it into view
  const held = el => {
    for (let a = scroller(el); a; a = scroller(a))
      if (a.getBoundingClientRect().right <= vw + 1) return true;
    return false;
  };
  const root = document.documentElement;
  if (root.scrollWidth > vw + 1)
    problems.push(`page scrolls sideways: ${root.scrollWidth} > ${vw}`);
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('svg') && el.tagName.toLowerCase() !== 'svg') continue;
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height || !shown(el) || r.right <= vw + 1) continue;
    if (!held(el))
      problems.push(`past the right edge (${Math.round(r.right)} > ${vw}): ${name(el)}`);
  }
  for (const svg of document.querySelectorAll('svg')) {
    const r = svg.getBoundingClientRect();
    if (r.width < 60 || !shown(svg)) continue;  // icons
    const vb = svg.viewBox.baseVal, b = svg.getBBox();
    if (vb && vb.width && (b.x < vb.x - 1 || b.y < vb.y - 1 ||
        b.x + b.width > vb.x + vb.width + 1 || b.y + b.height > vb.y + vb.height + 1))
      problems.push(`svg drawn outside its viewBox: ${name(svg)}`);
    const s = scroller(svg);
    if (s && ['hidden', 'clip'].includes(getComputedStyle(s).overflowX) &&
        r.right > s.getBoundingClientRect().right + 1)
      problems.push(`svg cut off by ${name(s)}: ${name(svg)}`);
    if (r.height + 1 < svg.scrollHeight) problems.push(`svg cut at the bottom: ${name(svg)}`);
    for (const t of svg.querySelectorAll('text')) {
      const px = parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a;
      if (px < MIN_TEXT_PX)
        problems.push(`svg text ${JSON.stringify(t.textContent)} at ${px.toFixed(1)} px`);
    }
  }
  const pre = document.createElement('pre');
  pre.id = 'layout-report';
  pre.textContent = JSON.stringify(problems);
  document.body.appendChild(pre);
});
</script>
"""
#: The smallest legible label at 100 % zoom.
MIN_TEXT_PX = 11.0


def layout_problems(path: Path, width: int = 1280) -> list[str]:
    """What a reader at ``width`` px (100 % zoom) would find broken on the page: elements past
    the right edge that no container scrolls, clipped SVG, SVG text under 11 px."""
    import json
    import re

    html = path.read_text(encoding="utf-8")
    script = _CHECK.replace("MIN_TEXT_PX", str(MIN_TEXT_PX))
    checked = html.replace("</body>", script + "</body>") if "</body>" in html else html + script
    # beside the page, so its relative links (stylesheets, images) resolve as they do for it
    copy = path.with_name(f".layout-check-{path.name}")
    copy.write_text(checked, encoding="utf-8")
    try:
        dom = _run(
            copy.resolve().as_uri(),
            "--virtual-time-budget=3000",
            "--hide-scrollbars",
            f"--window-size={width},900",
            "--dump-dom",
        )
    finally:
        copy.unlink()
    found = re.search(r'<pre id="layout-report">(.*?)</pre>', dom, re.S)
    assert found is not None, "the layout check did not run"
    import html as html_module

    problems: list[str] = json.loads(html_module.unescape(found.group(1)))
    return problems
