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


def test_relative_imports_never_climb_above_regulator() -> None:
    # `from ...fsm import X` is the only cross-folder spelling that works both in the
    # repository and installed: the dots may climb to `regulator`, never above it.
    for path in _sources(*PACKAGES):
        depth = len(path.relative_to(ROOT).parts)  # fsm/x.py: `..` is regulator, `...` above
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level > depth:
                raise AssertionError(f"{path}: relative import above regulator")


# The layers of `regulator`, by the first two parts below it. Each part may import only
# the parts listed (and itself); `adapters._*` modules are helpers shared by the wings.
SHARED = "adapters._shared"
ALLOWED: dict[str, set[str]] = {
    "fsm": set(),
    "specs": {"fsm"},
    SHARED: set(),
    "adapters.websocket": {"fsm", SHARED},
    "adapters.binance": {"fsm", SHARED, "adapters.websocket"},
    "adapters.torch": {"fsm"},
    "adapters.optuna": {"fsm"},
    "adapters.lightning": {"fsm", "adapters.torch"},
    "adapters.prometheus": {"fsm", SHARED},
    "adapters.demo": {
        "fsm",
        "specs",
        SHARED,
        "adapters.websocket",
        "adapters.binance",
        "adapters.torch",
        "adapters.optuna",
        "adapters.lightning",
        "adapters.prometheus",
    },
}
ALLOWED["adapters.cli"] = ALLOWED["adapters.demo"] | {"adapters.demo"}
HOSTS = ("adapters.cli", "adapters.demo")


def _part(dotted: str) -> str:
    """The layer of a module path below `regulator` (`adapters.binance._stream` ...)."""
    parts = dotted.split(".")
    if parts[0] != "adapters" or len(parts) == 1:
        return parts[0]
    if parts[1].startswith("_"):
        return SHARED
    return f"adapters.{parts[1]}"


def _regulator_imports(path: Path, source: str | None = None) -> list[str]:
    """Every `regulator.*` module `path` imports, relative imports resolved."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1])  # the package of x.py and of x/__init__.py alike
    if source is None:
        source = path.read_text(encoding="utf-8")
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            names = [node.module] if node.module else [a.name for a in node.names]
            found += [".".join([*base, name]) for name in names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("regulator."):
            found.append(node.module.removeprefix("regulator."))  # type: ignore[union-attr]
        elif isinstance(node, ast.Import):
            found += [
                a.name.removeprefix("regulator.")
                for a in node.names
                if a.name.startswith("regulator.")
            ]
    return found


def test_every_import_edge_points_down() -> None:
    offenders = []
    for path in _sources(*PACKAGES):
        rel = path.relative_to(ROOT).with_suffix("")
        own = _part(".".join(rel.parts))
        for target in _regulator_imports(path):
            other = _part(target)
            if other != own and other not in ALLOWED[own]:
                offenders.append(f"{rel}: {own} imports {target}")
    assert offenders == []


def test_no_binding_imports_a_host() -> None:
    # Stated on its own because it is the rule a newcomer is most likely to break.
    for path in _sources("adapters"):
        own = _part(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if own in HOSTS:
            continue
        hosts = [t for t in _regulator_imports(path) if _part(t) in HOSTS]
        assert hosts == [], f"{path}: a binding imports the host {hosts}"


def test_the_edge_checker_sees_relative_imports() -> None:
    # The checker must flag a bad edge, not pass on anything: resolve known spellings.
    probe = ROOT / "adapters" / "torch" / "_probe.py"  # never written: only its path is used
    source = "from ..cli import main\nfrom ...fsm import ScalerConfig\nfrom . import _finite\n"
    found = _regulator_imports(probe, source)
    assert found == ["adapters.cli", "fsm", "adapters.torch._finite"]
    assert [_part(t) for t in found] == ["adapters.cli", "fsm", "adapters.torch"]
    assert "adapters.cli" not in ALLOWED["adapters.torch"]
    init = ROOT / "adapters" / "binance" / "__init__.py"
    assert _regulator_imports(init, "from ..websocket import X\n") == ["adapters.websocket"]


def test_every_wing_opens_with_its_header() -> None:
    for wing in ("websocket", "binance", "torch", "cli", "demo"):
        doc = ast.get_docstring(ast.parse((ROOT / "adapters" / wing / "__init__.py").read_text()))
        assert doc is not None, wing
        for heading in ("What it binds", "May import", "Data flow"):
            assert heading in doc, f"adapters/{wing}/__init__.py lacks {heading!r}"


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
