"""What a server wrote reaches a terminal, a report or a diagram inert (issue 27 item 5): the
live view shows rich markup as text (``[/]`` never raises, no OSC 8 link, no blink), DOT stays
parsable and SVG/HTML escape it, and the report renders any value, an impossible time shown
as such."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import xml.dom.minidom
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.adapters.binance._tracker import Gap
from regulator.adapters.demo._market import MarketRecord
from regulator.adapters.demo._report import write_report
from regulator.adapters.demo._view import LiveView, PlainView
from regulator.fsm._diagram import dot_string, layout_svg

REASONS = [
    "[/]",
    "[link=https://evil.example]click[/link]",
    "[blink]x[/blink] [bold red]y",
    "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
    "\x1b[5m\x1b]0;title\x07\x00\x7f\x9b2J",
    "x\revent=give_up name=prod kind=fatal\u2028\u2029\x85",
    "ends in a backslash \\",
    "<script>alert(1)</script> \" ' &amp;",
]


def _terminal() -> io.StringIO:
    out = io.StringIO()
    out.isatty = lambda: True  # type: ignore[method-assign]
    return out


@pytest.mark.parametrize("reason", REASONS)
def test_the_live_view_shows_markup_as_text(reason: str) -> None:
    out = _terminal()
    view = LiveView(out)
    # ANSI out, as on a real terminal: rich reads the private flag its force_terminal= sets
    # (an attribute named force_terminal would be ignored, leaving it to the environment)
    view.console._force_terminal = True
    with view:
        view.line(event="failure", reason=reason)
        view.phase = reason
        view.trials[0] = {"number": 0, "scenario": reason, "result": reason}
        view.refresh()
    drawn = out.getvalue()
    assert "\x1b]8;" not in drawn  # no OSC 8 hyperlink
    assert "\x1b[5m" not in drawn  # no blink
    assert "\x1b]0;" not in drawn and "\x07" not in drawn and "\x00" not in drawn
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)  # rich's own styling removed
    assert "\x1b" not in plain and "\x9b" not in plain
    if reason.startswith("[link"):
        assert "[link=https://evil.example]" in plain  # shown as written


def test_the_plain_view_writes_one_inert_line_per_event() -> None:
    out = io.StringIO()
    with PlainView(out) as view:
        for reason in REASONS:
            view.line(event="failure", reason=reason)
    lines = out.getvalue().split("\n")[:-1]
    assert len(lines) == len(REASONS)
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", "".join(lines))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_a_dot_string_parses_back_to_what_was_written(text: str) -> None:
    quoted = dot_string(text)
    # the DOT lexer: \\ and \" are pairs; the string ends at the first lone quote
    body = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', quoted, re.S)
    assert body is not None, quoted
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", quoted)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not on PATH")
@pytest.mark.parametrize("reason", REASONS)
def test_graphviz_parses_a_caption_ending_in_anything(reason: str) -> None:
    source = f"digraph G {{ label={dot_string(reason)}; a; }}"
    done = subprocess.run(
        ["dot", "-Tsvg"], input=source.encode(), capture_output=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    xml.dom.minidom.parseString(done.stdout)  # and the SVG is well-formed XML


@pytest.mark.parametrize("reason", REASONS)
def test_the_layout_svg_escapes_a_caption(reason: str) -> None:
    svg = layout_svg("connection", state="closed", caption=reason)
    xml.dom.minidom.parseString(svg)
    assert "<script>" not in svg and "\x1b" not in svg


def test_the_report_renders_hostile_reasons_and_impossible_times(tmp_path: Path) -> None:
    market = MarketRecord(
        duration=5.0,
        started_at=1.7e9,
        url="wss://127.0.0.1/stream",
        final_state="backing_off",
        final_reason=REASONS[-2],
        failures=[{"t": 1.0, "connection": "a", "state": "live", "reason": r} for r in REASONS]
        + [{"t": 1e300, "connection": "a", "state": "live", "reason": "far"}],
        gaps=[
            Gap("btcusdt@kline_1m", "k.t", 10**16, 10**16 + 60_000, 2, 1.0),
            Gap("btcusdt@kline_1m", "k.t", 10**400, 10**400, 1, 1.0),
            Gap("btcusdt@trade", "t", 1, 2, 2, 1.0),
        ],
        faults=[(float("nan"), "<b>fault</b>")],
    )
    page = write_report(tmp_path, market, None, patterns=["<i>"], simulated_patterns=[])
    html = page.read_text(encoding="utf-8")
    assert "out of range" in html
    assert "<script>" not in html and "<b>fault</b>" not in html and "<i>" not in html
    assert "\x1b" not in html
    assert html.count("&lt;script&gt;") >= 1
