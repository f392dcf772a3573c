"""Reads specs/requirements.md and the `spec` markers of the test files (by AST, so the check
does not depend on which tests a run selected)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "specs" / "requirements.md"
TESTS = ROOT / "tests"
_ROW = re.compile(r"^\| (R\d+\.\d+) \|(.*)\|(.*)\|(.*)\|\s*$")


def requirement_rows() -> dict[str, tuple[str, str]]:
    """ID -> (implemented-in cell, tests cell)."""
    rows: dict[str, tuple[str, str]] = {}
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            rows[match.group(1)] = (match.group(3).strip(), match.group(4).strip())
    return rows


def requirement_ids() -> set[str]:
    return set(requirement_rows())


def _is_spec_mark(node: ast.expr) -> bool:
    # pytest.mark.spec(...)
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "spec"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "mark"
    )


def markers_by_file() -> dict[str, set[str]]:
    """Test file (relative path) -> the requirement IDs its `spec` markers name."""
    found: dict[str, set[str]] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        ids: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _is_spec_mark(node.func):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        ids.add(arg.value)
        if ids:
            found[str(path.relative_to(ROOT))] = ids
    return found
