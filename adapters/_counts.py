"""Counters shared by the wings: read safely from another thread (a scrape, a stats call)."""

from __future__ import annotations

__all__ = ["copy_counts"]


def copy_counts(mapping: dict[str, int]) -> dict[str, int]:
    """A copy of a dict another thread's event loop may be growing."""
    for _ in range(5):
        try:
            return dict(mapping)
        except RuntimeError:  # changed size during the copy: the loop added a kind
            continue
    return {}
