"""The key=value log format is stable: parsers of the old system's logs keep working."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from regulator.fsm import format_kv, parse_kv


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
