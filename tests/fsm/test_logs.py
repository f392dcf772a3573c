"""The key=value log format is stable: parsers of the old system's logs keep working."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.fsm import _simulator, format_kv, load_schedule, parse_kv, simulate


@pytest.mark.spec("R5.2")
def test_format_is_pinned() -> None:
    line = format_kv(
        event="state",
        source="live",
        target="backing_off",
        reason='ssl: DECRYPTION_FAILED_OR_BAD_RECORD_MAC "x"',
        delay=4.0,
        rtt=0.0123456789,
        alarm=True,
        last=None,
        empty="",
    )
    assert line == (
        "event=state source=live target=backing_off"
        ' reason="ssl: DECRYPTION_FAILED_OR_BAD_RECORD_MAC \\"x\\"" delay=4 rtt=0.0123457'
        ' alarm=true last=- empty=""'
    )


@pytest.mark.spec("R5.2")
@given(
    fields=st.dictionaries(
        st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(max_size=20), max_size=6
    )
)
def test_any_line_parses_back(fields: dict[str, str]) -> None:
    assert parse_kv(format_kv(**fields)) == fields


@pytest.mark.spec("R5.2")
def test_lines_formatted_when_read_equal_the_lines_emitted() -> None:
    # simulate() formats its log lines when .lines is first read; with emit= it formats each
    # as it happens: the two paths write the same lines, in the same order.
    emitted: list[str] = []
    schedule = load_schedule("outage", seed=3)
    live = simulate(schedule, seed=3, emit=emitted.append)
    later = simulate(schedule, seed=3)
    assert live.lines == emitted
    assert later.lines == emitted and later.lines is later.lines
    for event in ("state", "backoff", "alarm", "resolved"):
        assert any(f" event={event} " in line for line in emitted), event


@pytest.mark.spec("R5.2")
@settings(max_examples=200, deadline=None)
@given(
    t=st.floats(0.0, 1e7),
    values=st.lists(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text()),
        min_size=5,
        max_size=5,
    ),
)
def test_the_simulators_lines_are_format_kv_lines(t: float, values: list[object]) -> None:
    # The simulator writes its lines without format_kv's checks that cannot fire for its own
    # keys and clock; whatever the values (a schedule's reasons are a user's text), the line
    # is format_kv's.
    for keys in (
        _simulator._STATE_KEYS,
        _simulator._BACKOFF_KEYS,
        _simulator._ALARM_KEYS,
        _simulator._RESOLVED_KEYS,
        _simulator._PATTERN_KEYS,
        _simulator._GIVE_UP_KEYS,
    ):
        picked = tuple(values[: len(keys)])
        expected = format_kv(t=_simulator._clock(t), **dict(zip(keys, picked, strict=True)))
        assert _simulator._format_line(t, keys, picked) == expected
