"""Counters summed over the connections of a stream, so they never go back at a rotation."""

from __future__ import annotations

from typing import Any

__all__ = ["add_counters", "retired_counters"]


def retired_counters(final: dict[str, Any], at_retirement: dict[str, Any] | None) -> dict[str, Any]:
    """What a closed connection adds to the totals: its messages to the end, its failures
    only up to its retirement (what follows a planned rotation is not a failure)."""
    if at_retirement is None:
        return final
    return {
        **at_retirement,
        "messages_received": final["messages_received"],
        "messages_dropped": final["messages_dropped"],
    }


def add_counters(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a + b``, key by key: numbers added, dicts by key, lists element-wise."""
    out: dict[str, Any] = dict(a)
    for key, value in b.items():
        if key not in out:
            out[key] = (
                dict(value)
                if isinstance(value, dict)
                else (list(value) if isinstance(value, list) else value)
            )
        elif isinstance(value, dict):
            merged = dict(out[key])
            for kind, count in value.items():
                merged[kind] = merged.get(kind, 0) + count
            out[key] = merged
        elif isinstance(value, list):
            out[key] = [x + y for x, y in zip(out[key], value, strict=True)]
        else:
            out[key] = out[key] + value
    return out
