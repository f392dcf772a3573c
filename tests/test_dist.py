"""The wheel installs and works without the repository: every public module imports from it."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _public_modules(wheel: Path) -> list[str]:
    """Every module of the wheel whose dotted name has no private (``_``) part."""
    names = set()
    for name in zipfile.ZipFile(wheel).namelist():
        if not name.endswith(".py"):
            continue
        parts = name.removesuffix(".py").split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts and not any(p.startswith("_") for p in parts):
            names.add(".".join(parts))
    return sorted(names)


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_imports(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp_path, ROOT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = tmp_path.glob("regulator-*.whl")
    contents = zipfile.ZipFile(wheel).namelist()
    assert "regulator/specs/requirements.md" in contents
    assert {"regulator/fsm/py.typed", "regulator/adapters/py.typed"} <= set(contents)
    assert not [n for n in contents if n.split("/")[0] in ("fsm", "adapters", "specs")]
    modules = _public_modules(wheel)
    assert {"regulator.fsm", "regulator.adapters.torch", "regulator.specs.exchange"} <= set(modules)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies (torch, optuna, ...) come from the test venv, so nothing is downloaded;
    # a .pth line adds that folder without running its own .pth files, so the editable
    # install of the repository stays out of sight and regulator comes from the wheel only.
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__ and module.__file__.startswith({site!r}), module.__file__\n"
        "print('imported', len(sys.argv) and " + repr(len(modules)) + ")\n"
    )
    done = subprocess.run(
        [python, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == f"imported {len(modules)}"
    script = subprocess.run(
        [venv / "bin" / "regulator", "diagram", "scaler", "--state", "reset"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert script.returncode == 0 and "class reset active" in script.stdout
