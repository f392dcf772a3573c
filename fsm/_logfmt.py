"""The stable ``key=value`` log line format shared by the machines' adapters and tools.

``format_kv(event="state", source="live", reason="ssl: BAD")`` gives
``event=state source=live reason="ssl: BAD"``: keys in the given order; values that contain a
space, a quote or ``=`` are double-quoted with ``\\`` escapes; floats use ``repr`` up to 6
significant digits; None is ``-``. Log parsers may rely on this format (R5.2).
"""

from __future__ import annotations

import re

__all__ = ["format_kv", "parse_kv"]


# One regex search instead of a generator over the five characters (the simulator writes a
# line per lifecycle transition).
_NEEDS_QUOTES = re.compile(r'[ "=\n\t]')


def _value(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


def format_kv(**fields: object) -> str:
    """One log line: ``key=value`` pairs separated by single spaces."""
    return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def parse_kv(line: str) -> dict[str, str]:
    """Parse a line written by :func:`format_kv` back into strings (for log tooling and tests)."""
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        eq = line.index("=", i)
        key = line[i:eq]
        i = eq + 1
        if i < n and line[i] == '"':
            i += 1
            chars: list[str] = []
            while line[i] != '"':
                if line[i] == "\\":
                    i += 1
                    chars.append({"n": "\n"}.get(line[i], line[i]))
                else:
                    chars.append(line[i])
                i += 1
            i += 1
            out[key] = "".join(chars)
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            out[key] = line[i:end]
            i = end
    return out
