"""The demo's report from a recorded run (no market, no training: seconds): the timeline's ticks
on the wall clock, failures named as docs/connection.md names them, market dates explained."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

from regulator.adapters.demo._market import MarketRecord, is_failure
from regulator.adapters.demo._report import (
    timeline_figure,
    timeline_ticks,
    write_report,
)
from regulator.fsm._diagram import layout

# a start 0.87 s past a whole second: where the old ticks sat 0.87 s off their labels
STARTED = 1_796_000_000.87


def _record() -> MarketRecord:
    record = MarketRecord(started_at=STARTED, duration=26.3)
    record.transitions = [
        (0.05, "binance", "idle", "connecting", "started by host"),
        (0.2, "binance", "connecting", "handshaking", "tcp connected"),
        (0.3, "binance", "handshaking", "live", "handshake completed"),
        (2.01, "binance", "live", "backing_off", "ssl: DECRYPTION_FAILED_OR_BAD_RECORD_MAC"),
        (2.4, "binance", "backing_off", "connecting", "backoff of 0.2 s elapsed"),
        (2.5, "binance", "connecting", "backing_off", "network: connection refused"),
        (3.0, "binance", "backing_off", "connecting", "backoff of 0.4 s elapsed"),
        (3.2, "binance", "connecting", "handshaking", "tcp connected"),
        (3.3, "binance", "handshaking", "live", "handshake completed"),
        (9.5, "binance", "live", "backing_off", "server_closed: serverShutdown"),
        (9.6, "binance", "backing_off", "connecting", "backoff of 0 s elapsed"),
        (9.7, "binance", "connecting", "handshaking", "tcp connected"),
        (9.8, "binance", "handshaking", "live", "handshake completed"),
        (26.2, "binance", "live", "closed", "stopped by host"),
    ]
    record.faults = [(2.0, "bad record MAC (one flipped TLS byte)"), (9.43, "serverShutdown")]
    record.failure_types = {2.01: "drop", 9.5: "planned close"}
    record.failures = [
        {
            "t": t,
            "connection": leg,
            "state": source,
            "reason": reason,
            "failure": record.failure_types.get(t, "failed attempt"),
        }
        for t, leg, source, target, reason in record.transitions
        if is_failure(source, target, reason)
    ]
    record.final_state, record.final_reason = "closed", "stopped by host"
    record.market_start_ms, record.market_speed = 1_767_571_200_000, 3000.0
    return record


def _seconds_of_day(clock: str) -> float:
    h, m, s = clock.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_ticks_sit_at_their_labelled_clock_times() -> None:
    ticks = timeline_ticks(STARTED, 26.3)
    assert len(ticks) >= 3
    for x, label in ticks:
        assert (STARTED + x) % 86400 == pytest.approx(_seconds_of_day(label), abs=1e-6)


def test_faults_are_drawn_at_the_times_the_fault_table_gives(tmp_path: Path) -> None:
    """Read the plot's ticks and fault lines, interpolate the fault's clock time from the tick
    labels as a reader does, and compare it with the fault table of the report."""
    record = _record()
    page = write_report(tmp_path, record, None, patterns=[], simulated_patterns=[]).read_text(
        encoding="utf-8"
    )
    faults = page[page.index("id='faults'") : page.index("id='failures'")]
    table = re.findall(r"<td>(\d\d:\d\d:\d\d\.\d\d)</td><td>([^<]+)</td>", faults)
    assert [name for _, name in table] == [name for _, name in record.faults]
    ax = timeline_figure(record).axes[0]
    xs = list(ax.get_xticks())
    labels = [_seconds_of_day(t.get_text()) for t in ax.get_xticklabels()]
    per_second = (labels[1] - labels[0]) / (xs[1] - xs[0])
    drawn = [
        line.get_xdata()[0]
        for line in ax.get_lines()
        if line.get_linestyle() == ":" and len(set(line.get_xdata())) == 1
    ]
    assert len(drawn) == len(table)
    for x, (clock, _) in zip(drawn, table, strict=True):
        read = labels[0] + (x - xs[0]) * per_second  # what the axis says the line's time is
        assert read == pytest.approx(_seconds_of_day(clock), abs=0.006)


def test_failures_are_named_as_the_docs_define_them(tmp_path: Path) -> None:
    page = write_report(tmp_path, _record(), None, patterns=[], simulated_patterns=[])
    text = page.read_text(encoding="utf-8")
    totals = text[text.index("<h3>Totals</h3>") : text.index("id='faults'")]
    head = re.findall(r"<th>([^<]+)</th>", totals)
    row = re.findall(r"<td>([^<]*)</td>", totals)
    values = dict(zip(head, row, strict=False))
    # a drop, a refused attempt, a planned close; the host's stop is not a failure
    assert (values["failures"], values["failed attempts"]) == ("3", "1")
    assert (values["drops"], values["planned closes"]) == ("1", "1")
    failures = text[text.index("id='failures'") : text.index("id='gaps'")]
    kinds = re.findall(r"<td>(drop|failed attempt|planned close)</td>", failures)
    assert kinds == ["drop", "failed attempt", "planned close"]
    patterns = text[text.index("id='patterns'") :]
    assert "no recurring pattern in 2 failures of live connections (1 drops" in patterns


def test_the_host_stop_is_not_a_failure_in_the_view_or_the_report() -> None:
    assert not is_failure("live", "closed", "stopped by host")
    assert not is_failure("backing_off", "closed", "stopped by host")
    assert is_failure("live", "closed", "fatal: HTTP 403: the upgrade was refused")
    assert is_failure("handshaking", "alarmed", "timeout: handshake not completed within 1.5 s")


def test_market_dates_are_explained(tmp_path: Path) -> None:
    text = write_report(tmp_path, _record(), None, patterns=[], simulated_patterns=[]).read_text(
        encoding="utf-8"
    )
    run_date = datetime.fromtimestamp(STARTED, UTC).strftime("%Y-%m-%d")
    assert run_date in text
    assert "market clock, not the wall clock: its market starts at 2026-01-05 00:00 UTC" in text
    assert "3000 times faster than real time" in text


def test_the_built_in_layout_fits_the_report_page() -> None:
    from regulator.fsm import ConnectionMachine
    from regulator.fsm._scaler import ScalerMachine

    # the report's body is 1,150 px wide; the built-in layout was 1,186 px, cutting off Closed
    assert layout(ConnectionMachine).width <= 1150
    assert layout(ScalerMachine).width <= 1150
