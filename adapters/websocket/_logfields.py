"""The connection's log lines: one function decides every field (R5.2)."""

from __future__ import annotations

import logging
from typing import Any

from ...fsm import (
    ConnectionAction,
    GiveUp,
    PatternDetected,
    RaiseAlarm,
    ResolveAlarm,
    StateChanged,
    Wait,
)

__all__ = ["action_log_fields"]


def action_log_fields(action: ConnectionAction, name: str) -> tuple[int, dict[str, Any]] | None:
    """The log level and ``key=value`` fields of one action (None: an action not logged).

    The one place the connection's log format is decided (R5.2): the adapter's log lines and
    the demo's view both render actions through it."""
    if isinstance(action, StateChanged):
        return logging.INFO, {
            "event": "state",
            "name": name,
            "source": action.source,
            "target": action.target,
            "reason": action.reason,
        }
    if isinstance(action, Wait):
        return logging.INFO, {
            "event": "backoff",
            "name": name,
            "delay": round(action.delay, 3),
            "attempt": action.attempt,
        }
    if isinstance(action, RaiseAlarm):
        a = action.alarm
        return logging.ERROR, {
            "event": "alarm",
            "name": name,
            "failures": a.failures_in_window,
            "window": a.window,
            "threshold": a.threshold,
            "last_kind": a.last_kind,
            "last_reason": a.last_reason,
        }
    if isinstance(action, ResolveAlarm):
        r = action.resolution
        return logging.INFO, {
            "event": "resolved",
            "name": name,
            "after": round(r.duration, 3),
            "failures": r.failures_since_raised,
        }
    if isinstance(action, PatternDetected):
        return logging.WARNING, {
            "event": "pattern",
            "name": name,
            "report": action.report.describe(),
        }
    if isinstance(action, GiveUp):
        return logging.ERROR, {
            "event": "give_up",
            "name": name,
            "kind": action.kind,
            "reason": action.reason,
        }
    return None
