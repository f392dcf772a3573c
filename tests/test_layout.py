"""The repository folders install only under the `regulator` namespace."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fsm", "adapters", "specs")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _sources(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


@pytest.mark.parametrize("name", ["fsm", "adapters"])
def test_bare_folder_names_are_not_importable(name: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ModuleNotFoundError" in result.stderr


def test_nothing_imports_the_bare_folder_names() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _sources(*PACKAGES, "tests")
        for name in _imports(path)
        if name.split(".")[0] in ("fsm", "adapters", "specs")
    ]
    assert offenders == []


def test_fsm_imports_neither_adapters_anyio_nor_torch() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _sources("fsm")
        for name in _imports(path)
        if name.split(".")[0] in ("anyio", "torch", "httpx", "httpx_ws", "trio")
        or name.startswith("regulator.adapters")
    ]
    assert offenders == []
    code = (
        "import sys, regulator.fsm\n"
        "bad = [m for m in ('torch', 'anyio', 'trio', 'httpx', 'regulator.adapters')"
        " if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fsm_and_adapters_never_import_relative_above_regulator() -> None:
    # `from ..fsm import X` is the only cross-folder spelling that works in both layouts.
    for path in _sources(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > 2:
                raise AssertionError(f"{path}: relative import above regulator")


def test_every_package_is_typed() -> None:
    for folder in PACKAGES:
        assert (ROOT / folder / "py.typed").exists()


def test_no_tests_init() -> None:
    assert not (ROOT / "tests" / "__init__.py").exists()


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [Path(sys.executable).parent / "regulator", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "simulate" in result.stdout
