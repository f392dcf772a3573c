"""The docs stay true: generated pages are fresh, examples run, README shows the reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from regulator.adapters.cli._docgen import write_pages
from regulator.fsm import config_reference_markdown

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))


def test_generated_pages_are_fresh() -> None:
    stale = write_pages(ROOT / "docs", check=True)
    assert stale == [], f"stale generated docs {stale}: run `regulator docs generate`"


def test_stale_page_is_detected(tmp_path: Path) -> None:
    write_pages(tmp_path)
    (tmp_path / "diagrams" / "scaler.md").write_text("old", encoding="utf-8")
    assert write_pages(tmp_path, check=True) == [str(tmp_path / "diagrams" / "scaler.md")]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_run(example: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_carries_the_generated_config_reference() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert config_reference_markdown() in readme, "README's config tables are stale"
