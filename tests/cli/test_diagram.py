"""`regulator diagram`: every format, highlighting, and a clear word when Graphviz is missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from regulator.adapters.cli import main
from regulator.adapters.cli._diagram import DiagramError, render_diagram
from regulator.fsm import CONNECTION_STATES
from regulator.fsm._scaler import SCALER_STATES

ROOT = Path(__file__).resolve().parents[2]
HAS_DOT = shutil.which("dot") is not None


@pytest.mark.parametrize(
    ("machine", "states"), [("connection", CONNECTION_STATES), ("scaler", SCALER_STATES)]
)
def test_mermaid_and_dot_show_every_state_and_the_guards(
    machine: str, states: tuple[str, ...]
) -> None:
    mermaid = render_diagram(machine, "mermaid")
    dot = render_diagram(machine, "dot")
    assert isinstance(mermaid, str) and isinstance(dot, str)
    for state in states:
        assert f"as {state}" in mermaid
        assert state in dot
    guard = "fatal_or_exhausted" if machine == "connection" else "auto_reset_enabled"
    assert f"[{guard}]" in mermaid and guard in dot


def test_events_replay_and_highlight_the_state_reached() -> None:
    text = render_diagram(
        "connection", events=["start", "transport_connected", "handshake_succeeded", "fail"]
    )
    assert "class backing_off active" in text
    assert "class over_threshold active" in str(render_diagram("scaler", state="over_threshold"))


def test_unknown_event_or_state_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(
        DiagramError, match=r"'fail' is not allowed in state 'idle' \(allowed: start, stop\)"
    ):
        render_diagram("connection", events=["fail"])
    assert main(["diagram", "scaler", "--state", "exploded"]) == 2
    assert "--state: must be one of warmup" in capsys.readouterr().err


def test_without_graphviz_svg_says_how_to_install_it() -> None:
    env = {"PATH": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, "-m", "regulator.adapters.cli", "diagram", "scaler", "--format", "svg"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 2
    assert (
        "needs Graphviz's `dot` program" in result.stderr
        and "apt-get install graphviz" in result.stderr
    )
    ok = subprocess.run(
        [sys.executable, "-m", "regulator.adapters.cli", "diagram", "scaler", "--format", "dot"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("digraph ScalerMachine")


@pytest.mark.skipif(
    not HAS_DOT, reason="Graphviz `dot` is not installed (apt-get install graphviz)"
)
@pytest.mark.parametrize("machine", ["connection", "scaler"])
def test_svg_and_png_render_with_graphviz(machine: str, tmp_path: Path) -> None:
    svg = render_diagram(machine, "svg", state="closed" if machine == "connection" else "reset")
    png = render_diagram(machine, "png")
    assert (
        isinstance(svg, bytes) and b"<svg" in svg and b"turquoise" in svg.lower()
    ) or b"#40e0d0" in svg.lower()
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
    assert main(["diagram", machine, "--format", "svg", "--output", str(tmp_path / "d.svg")]) == 0
    assert (tmp_path / "d.svg").stat().st_size > 1000


def test_live_views_return_mermaid_with_the_current_state() -> None:
    from regulator.fsm import ConnectionMachine, Start

    machine = ConnectionMachine()
    machine.handle(Start(now=0.0))
    assert "connecting:::active" in format(machine, "mermaid")  # the library's own form
    # what the wings' diagram() return: the highlight as a class line, which mermaid-cli 11 draws
    from regulator.fsm._diagram import mermaid

    assert "class connecting active" in mermaid(machine)


def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():
        pytest.skip("mkdocs-material is not installed (dev extra)")
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "quickstart.html").exists()
    page = (tmp_path / "site" / "quickstart.html").read_text(encoding="utf-8")
    assert "refusals" in page and "RestoreSubscriptions" in page  # the tested example, included
