"""The wheel installs and works without the repository: every public module imports from it,
and every command works, or says in one line what to install, with the bare wheel and with each
extra alone."""

from __future__ import annotations

import email.parser
import shutil
import socket
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once for every install below."""
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, ROOT],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    [found] = out.glob("regulator-*.whl")
    return found


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_imports(wheel: Path, tmp_path: Path) -> None:
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


# -- every command on every install ------------------------------------------------------------

#: The extras a user may install alone (pyproject.toml), and the union.
EXTRAS = ["ws", "torch", "optuna", "lightning", "diagrams", "metrics", "specs", "demo", "all"]


def _requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        [name] = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.Parser().parsestr(z.read(name).decode())
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


def _wanted(requirement: Requirement, extras: set[str]) -> bool:
    marker = requirement.marker
    return marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""})


def closure(wheel: Path, extra: str | None) -> tuple[set[str], set[str]]:
    """The distributions the wheel's metadata pulls for ``extra`` (None: the bare wheel), as
    pip would resolve them, and the set of regulator's extras that includes (``all`` and
    ``demo`` name others)."""
    own = _requires(wheel)
    extras: set[str] = set()
    todo = [extra] if extra else []
    while todo:  # regulator[demo] -> regulator[ws,optuna,specs]
        e = todo.pop()
        if e in extras:
            continue
        extras.add(e)
        for r in own:
            if r.name == "regulator" and _wanted(r, {e}) and r.marker is not None:
                todo += sorted(r.extras)
    names: set[str] = set()
    pending = [(r, set[str]()) for r in own if r.name != "regulator" and _wanted(r, extras)]
    while pending:
        requirement, _ = pending.pop()
        key = canonicalize_name(requirement.name)
        if key in names:
            continue
        names.add(key)
        dist = metadata.distribution(requirement.name)
        for text in dist.requires or []:
            nested = Requirement(text)
            if _wanted(nested, set(requirement.extras)):
                pending.append((nested, set()))
    return names, extras


def make_install(root: Path, wheel: Path, extra: str | None) -> tuple[Path, set[str]]:
    """A fresh venv with the wheel installed and, beside it, exactly the distributions its
    metadata pulls for ``extra``: linked from this test's venv (the pinned torch included,
    so nothing is downloaded and pip's resolver is not in the loop; ``pip check`` then proves
    that what the extra declares is consistent). Returns the venv's bin folder."""
    names, extras = closure(wheel, extra)
    venv = root / f"venv-{extra or 'bare'}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    deps = root / f"deps-{extra or 'bare'}"
    deps.mkdir()
    site = Path(sysconfig.get_paths()["purelib"])
    for name in names:
        for top in {f.parts[0] for f in metadata.distribution(name).files or []}:
            if top != ".." and not (deps / top).exists() and (site / top).exists():
                (deps / top).symlink_to(site / top)
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "deps.pth").write_text(f"{deps}\n", encoding="utf-8")
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python]
    done = subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--no-index", wheel],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    checked = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, f"regulator[{extra}]: {checked.stdout}{checked.stderr}"
    return venv / "bin", extras


def run(
    bin_: Path, *args: str, cwd: Path, graphviz: bool = False
) -> subprocess.CompletedProcess[str]:
    # Only the venv on PATH (and the system's, for Graphviz, when asked): nothing else leaks in.
    path = f"{bin_}:/usr/bin:/bin" if graphviz else str(bin_)
    return subprocess.run(
        [bin_ / "regulator", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": path, "HOME": str(cwd), "LC_ALL": "C.UTF-8"},
    )


def one_line(done: subprocess.CompletedProcess[str], install: str) -> None:
    """Exit 2, one line on stderr that names what to install, never a traceback."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    assert install in done.stderr and "Traceback" not in done.stderr


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_every_command_on_the_bare_wheel(wheel: Path, tmp_path: Path) -> None:
    bin_, _ = make_install(tmp_path, wheel, None)
    work = tmp_path / "work"
    work.mkdir()
    version = run(bin_, "--version", cwd=work)
    assert version.returncode == 0 and version.stdout.strip() == "regulator 0.1.0"
    for args in (["config", "show"], ["config", "schema"], ["config", "docs"]):
        done = run(bin_, *args, cwd=work)
        assert done.returncode == 0 and done.stdout and not done.stderr, (args, done.stderr)
    (work / "r.toml").write_text("[connection]\ninitial_delay = 2.0\n", encoding="utf-8")
    assert run(bin_, "config", "check", "r.toml", cwd=work).returncode == 0
    simulated = run(bin_, "simulate", "flaky-tls", "--hours", "0.5", "--summary", cwd=work)
    assert simulated.returncode == 0 and "event=totals" in simulated.stdout
    # diagrams: mermaid, md and DOT text are pure Python (no pydot in this install)
    for fmt, start in (("mermaid", "stateDiagram"), ("md", "|"), ("dot", "digraph")):
        done = run(bin_, "diagram", "connection", "--format", fmt, cwd=work)
        assert done.returncode == 0 and done.stdout.lstrip().startswith(start), done.stderr
    one_line(run(bin_, "diagram", "scaler", "--format", "svg", cwd=work), "Graphviz")
    if shutil.which("dot"):
        svg = run(bin_, "diagram", "scaler", "--format", "svg", cwd=work, graphviz=True)
        assert svg.returncode == 0 and "<svg" in svg.stdout, svg.stderr
    # docs generate writes only where told: an installed wheel has no docs/ of its own
    one_line(run(bin_, "docs", "generate", cwd=work), "--out")
    done = run(bin_, "docs", "generate", "--out", "pages", cwd=work)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["pages", "r.toml"]
    assert (work / "pages" / "diagrams" / "connection.md").is_file()
    # the commands of the extras say which extra, in one line
    port = str(refused_port())
    one_line(
        run(bin_, "stream", "btcusdt@trade", "--url", f"wss://127.0.0.1:{port}", cwd=work),
        'pip install "regulator[ws]"',
    )
    one_line(
        run(bin_, "demo", "--quick", "--report", "r", cwd=work), 'pip install "regulator[demo]"'
    )
    assert not (work / "r").exists()


#: What each extra must make importable, beyond the commands (the wings a user imports).
MODULES = {
    "ws": ["regulator.adapters.websocket", "regulator.adapters.binance"],
    "torch": ["regulator.adapters.torch"],
    "optuna": ["regulator.adapters.optuna"],
    "lightning": ["regulator.adapters.lightning"],
    "metrics": ["regulator.adapters.prometheus"],
    "specs": ["regulator.specs", "regulator.specs.exchange"],
    # everything `regulator demo` imports as it runs (the run itself: tests/demo/)
    "demo": [
        "regulator.adapters.demo._market",
        "regulator.adapters.demo._training",
        "regulator.adapters.demo._informer",
        "regulator.adapters.demo._report",
        "regulator.specs.exchange",
        "rich.live",
        "matplotlib.pyplot",
        "trustme",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("extra", EXTRAS)
def test_every_command_with_each_extra_alone(wheel: Path, tmp_path: Path, extra: str) -> None:
    """The commands whose needs depend on the install (the rest need only the bare wheel,
    above): each works or exits 2 naming the extra to add."""
    bin_, extras = make_install(tmp_path, wheel, extra)
    work = tmp_path / "work"
    work.mkdir()
    modules = [m for e in sorted(extras) for m in MODULES.get(e, [])]
    imported = subprocess.run(
        [
            bin_ / "python",
            "-c",
            f"import importlib\nfor m in {modules!r}: importlib.import_module(m)",
        ],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": str(bin_), "MPLBACKEND": "Agg", "HOME": str(work)},
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert run(bin_, "diagram", "connection", "--format", "dot", cwd=work).returncode == 0
    port = str(refused_port())
    stream = ["stream", "btcusdt@trade", "--url", f"wss://127.0.0.1:{port}", "--max-retries", "0"]
    done = run(bin_, *stream, cwd=work)
    if "ws" in extras:
        assert done.returncode == 1 and "cannot reach 127.0.0.1" in done.stderr, done.stderr
        with_metrics = run(bin_, *stream, "--metrics-port", "0", cwd=work)
        if "metrics" in extras:
            assert with_metrics.returncode == 1, with_metrics.stderr[-2000:]
        else:
            one_line(with_metrics, 'pip install "regulator[metrics]"')
    else:
        one_line(done, 'pip install "regulator[ws]"')
    demo = run(bin_, "demo", "--storage", "nosuchdb://x", "--report", "r", cwd=work)
    if "demo" in extras:  # the command starts and checks its arguments
        assert demo.returncode == 2 and "--storage" in demo.stderr, demo.stderr[-2000:]
    else:
        one_line(demo, 'pip install "regulator[demo]"')
    assert not (work / "r").exists()
