"""Every log record is one line and inert, whatever a server wrote (issue 27 item 5): format_kv
escapes every C0 and C1 control character, DEL, U+2028 and U+2029; parse_kv reads every line
back and raises only ValueError on a line format_kv never wrote."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.fsm import format_kv, parse_kv
from regulator.fsm._logfmt import escape_controls

CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]] + ["\u2028", "\u2029"]
# anything Python's splitlines, a terminal or a line-oriented log shipper treats specially
HOSTILE = st.text(
    alphabet=st.one_of(
        st.sampled_from([*CONTROLS, '"', "\\", "=", " ", "[", "]", "/", "\u00a0", "\u3000"]),
        st.characters(),
    ),
    max_size=60,
)


def _inert(line: str) -> None:
    assert len(line.splitlines()) <= 1, line
    assert not any(c in line for c in CONTROLS), line


@pytest.mark.spec("R5.2")
@pytest.mark.parametrize("control", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
def test_each_control_character_is_escaped(control: str) -> None:
    line = format_kv(event="failure", reason=f"x{control}event=give_up name=prod kind=fatal")
    _inert(line)
    assert parse_kv(line) == {
        "event": "failure",
        "reason": f"x{control}event=give_up name=prod kind=fatal",
    }


@pytest.mark.spec("R5.2")
def test_a_forged_record_stays_inside_its_value() -> None:
    line = format_kv(event="failure", reason="x\revent=give_up name=prod kind=fatal")
    assert line == 'event=failure reason="x\\revent=give_up name=prod kind=fatal"'
    assert format_kv(reason="\x1b[31m\x07\x00") == 'reason="\\x1b[31m\\x07\\x00"'
    assert format_kv(reason="a\u2028b\x85") == 'reason="a\\u2028b\\x85"'


@pytest.mark.spec("R5.2")
@settings(max_examples=300)
@given(
    fields=st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), HOSTILE, max_size=5),
    number=st.floats(),
)
def test_any_record_is_one_inert_line_and_reads_back(fields: dict[str, str], number: float) -> None:
    line = format_kv(**fields, zz_number=number)
    _inert(line)
    assert parse_kv(line) == {**fields, "zz_number": format_kv(x=number)[2:]}


@given(fields=st.dictionaries(HOSTILE, HOSTILE, max_size=5))
def test_hostile_keys_are_written_inert_too(fields: dict[str, str]) -> None:
    line = format_kv(**fields)
    _inert(line)
    assert len(parse_kv(line)) <= len(fields)


@pytest.mark.spec("R5.2")
@settings(max_examples=500)
@given(line=st.text(alphabet=st.sampled_from(['"', "\\", "=", " ", "a", "x", "u", "0", "f"])))
def test_parse_kv_raises_only_value_error(line: str) -> None:
    error = ""
    try:
        parsed = parse_kv(line)
    except ValueError as exc:  # anything else fails the test
        error = str(exc)
        parsed = {}
    assert error == "" or error.startswith("parse_kv: ")
    assert all(isinstance(v, str) for v in parsed.values())


@pytest.mark.parametrize(
    "line",
    ['reason="unterminated', 'reason="ends in \\', "noequals", "a b=c", 'r="\\x4"', 'r="\\u12"'],
)
def test_parse_kv_names_what_is_wrong(line: str) -> None:
    with pytest.raises(ValueError, match=r"^parse_kv: .*(column|quoted)"):
        parse_kv(line)


@given(text=HOSTILE)
def test_escape_controls_leaves_printable_text_alone(text: str) -> None:
    out = escape_controls(text)
    _inert(out)
    if not any(c in text for c in CONTROLS):
        assert out == text
    assert escape_controls(string.printable.replace("\n", "")[:90]) == (
        string.printable.replace("\n", "")[:90]
        .replace("\t", "\\t")
        .replace("\r", "\\r")
        .replace("\x0b", "\\x0b")
        .replace("\x0c", "\\x0c")
    )
