"""The stable ``key=value`` log line format shared by the machines' adapters and tools.

``format_kv(event="state", source="live", reason="ssl: BAD")`` gives
``event=state source=live reason="ssl: BAD"``: keys in the given order; values that contain
whitespace (any Unicode space), a quote, ``=``, a control character or a line separator are
double-quoted; floats use ``repr`` up to 6 significant digits; None is ``-``.
Log parsers may rely on this format (R5.2).

One record is one line, whatever a server wrote (issue 27): inside quotes ``\\`` and ``"`` are
escaped, newline, carriage return and tab are written ``\\n``, ``\\r``, ``\\t``, and every other
C0 or C1 control character, DEL, U+2028 and U+2029 as ``\\xHH`` or ``\\uHHHH``; a key is
written with the same characters replaced by ``_``. So a close reason
``x\\revent=give_up`` stays inside its own quoted value, and no terminal receives a raw ESC.
:func:`parse_kv` reads every line :func:`format_kv` writes back to the same strings, and
raises :class:`ValueError` (and nothing else) for a line it did not write.
"""

from __future__ import annotations

import re

__all__ = ["format_kv", "parse_kv"]

# C0, DEL, C1 and the two Unicode line separators: each would end or rewrite a line for a
# line-oriented reader (Python's splitlines splits on \x1c-\x1e and \x85 too) or a terminal.
_CONTROL = "\x00-\x1f\x7f-\x9f\u2028\u2029"
# One regex search instead of a generator over the characters (the simulator writes a line
# per lifecycle transition): a plain value is written as it is.
_NEEDS_QUOTES = re.compile(f'[\\s"={_CONTROL}]')
_BAD_KEY = re.compile(f'[\\s"={_CONTROL}]')
_NAMED = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES = str.maketrans(
    {
        **{c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]},
        0x2028: "\\u2028",
        0x2029: "\\u2029",
        **{ord(c): e for c, e in _NAMED.items()},
    }
)
# a quoted value's body: runs without quote or backslash, each backslash with the character
# it escapes (possessive: linear, nothing to backtrack into)
_QUOTED_BODY = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+', re.S)
# any escape format_kv never writes (then the slow path decides, or raises)
_BAD_ESCAPE = re.compile(r'\\(?![nrt\\"]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})', re.S)
_ANY_CONTROL = re.compile(f"[{_CONTROL}]")
_CONTROL_ESCAPES = {k: v for k, v in _ESCAPES.items() if k not in (ord("\\"), ord('"'))}
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"'}


def escape_controls(text: str) -> str:
    """``text`` with every control character and line separator written as an escape, the
    rest as it is: what a terminal or a line reader is given is inert and on one line."""
    return text.translate(_CONTROL_ESCAPES) if _ANY_CONTROL.search(text) else text


def echo(value: object, limit: int = 200) -> str:
    """``repr(value)`` as an error message quotes what a user or a server gave: at most
    ``limit`` characters (saying how many more there were), controls escaped, and never an
    exception of its own (a value nested 50,000 deep cannot be repr'd)."""
    try:
        text = repr(value)
    except (RecursionError, MemoryError):
        return f"<a {type(value).__name__} too deeply nested to show>"
    if len(text) > limit:
        text = f"{text[:limit]}...({len(text) - limit} more characters)"
    return escape_controls(text)


def _value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        return f'"{text.translate(_ESCAPES)}"'
    return text


def format_kv(**fields: object) -> str:
    """One log line: ``key=value`` pairs separated by single spaces (always one line)."""
    return " ".join(
        f"{_BAD_KEY.sub('_', key) if _BAD_KEY.search(key) else key}={_value(value)}"
        for key, value in fields.items()
    )


def _hex(text: str, i: int, width: int, column: int) -> str:
    digits = text[i : i + width]
    if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
        raise ValueError(
            f"parse_kv: a \\x or \\u escape needs {width} hex digits at column {column + i}"
        )
    return chr(int(digits, 16))


def _unescape(body: str, column: int) -> str:
    if "\\" not in body:
        return body
    if _BAD_ESCAPE.search(body) is None:
        # only the escapes format_kv writes, all of which Python's codec reads the same way:
        # decoded in C (a megabyte of escaped control characters in milliseconds)
        return body.encode("raw_unicode_escape").decode("unicode_escape")
    chars: list[str] = []
    i, n = 0, len(body)
    while i < n:
        j = body.find("\\", i)
        if j < 0:
            chars.append(body[i:])
            break
        chars.append(body[i:j])
        e = body[j + 1]  # the body pattern pairs every backslash with a character
        if e == "x":
            chars.append(_hex(body, j + 2, 2, column))
            i = j + 4
        elif e == "u":
            chars.append(_hex(body, j + 2, 4, column))
            i = j + 6
        else:  # the named escapes; an unknown one stands for its character
            chars.append(_UNESCAPE.get(e, e))
            i = j + 2
    return "".join(chars)


def parse_kv(line: str) -> dict[str, str]:
    """Parse a line written by :func:`format_kv` back into strings (for log tooling and tests).

    Raises :class:`ValueError` naming the column for anything :func:`format_kv` never writes:
    a word without ``=``, an unterminated quote, a bad escape.
    """
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        eq = line.find("=", i)
        space = line.find(" ", i)
        if eq < 0 or (0 <= space < eq):
            raise ValueError(f"parse_kv: expected key=value at column {i}")
        key = line[i:eq]
        i = eq + 1
        if i < n and line[i] == '"':
            body = _QUOTED_BODY.match(line, i + 1)
            assert body is not None  # the pattern matches the empty string
            i = body.end()
            if i >= n or line[i] != '"':
                raise ValueError(f"parse_kv: unterminated quoted value of {key!r}")
            out[key] = _unescape(body.group(0), body.start())
            i += 1
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            out[key] = line[i:end]
            i = end
    return out
