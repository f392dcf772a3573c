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
