"""A ``BinanceStream``'s statistics: counters summed over its connections, so they never go
back at a rotation, and the exchange-level counters beside the socket's.

How it works
------------
The per-message paths only bump plain counters (attributes of the stream, the tracker's, the
requests'); everything is gathered here when asked. A connection's counters are read live while
it is the primary; when a leg ends they are folded into ``_retired_totals``
(:func:`retired_counters`: its messages to the end, its failures only up to its retirement,
since what follows a planned rotation is not a failure) and :func:`add_counters` sums them with
the primary's at each read.

``Statistics`` is a mixin of ``BinanceStream``: it reads the stream's state, declared below,
and keeps nothing of its own.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..websocket._buffer import MessageBuffer
from ..websocket._errors import NotLiveError
from ._backfill import Backfill
from ._book_keeper import BookKeeper
from ._budget import Budget
from ._decode import DECODER, IDS_DECODER
from ._leg import Leg
from ._requests import Requests
from ._tracker import Gap

__all__ = ["Statistics", "add_counters", "retired_counters"]


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


class Statistics:
    # provided by BinanceStream
    name: str
    budget: Budget
    events_delivered: int
    duplicates_dropped: int
    malformed: int
    unsubscribed_dropped: int
    sequence_resets: int
    gaps_detected: int
    gap_events_missing: int
    overflow_gaps: int
    server_shutdowns: int
    recent_gaps: deque[Gap]
    rotations: dict[str, int]
    rate_limits: deque[dict[str, Any]]
    _primary: Leg | None
    _wanted: dict[str, None]
    _events: MessageBuffer[dict[str, Any]]
    _requests: Requests
    _backfill: Backfill | None
    _books: BookKeeper
    _retired_totals: dict[str, Any]
    _raw: bool

    @property
    def requests_sent(self) -> int:
        return self._requests.sent

    @property
    def request_errors(self) -> int:
        """Requests the exchange refused, and error frames that named no request."""
        return self._requests.errors

    @property
    def request_timeouts(self) -> int:
        return self._requests.timeouts

    @property
    def unexpected_replies(self) -> int:
        """Replies that answered no request in flight (counted, logged, never an event)."""
        return self._requests.unexpected

    def backfill_stats(self) -> dict[str, Any] | None:
        """The REST backfill's counters (``get_connection_stats()["binance"]["backfill"]``);
        None when backfill is off."""
        return self._backfill.stats() if self._backfill is not None else None

    def _fold_counters(self, leg: Leg) -> None:
        final = retired_counters(leg.ws.counter_totals(), leg.counters_at_retirement)
        self._retired_totals = add_counters(self._retired_totals, final)

    def counter_totals(self) -> dict[str, Any]:
        """Counters summed over every connection this stream has had (monotonic across
        rotations): attempts, successes, failures, alarms, failures by kind, the backoff
        delay histogram, messages. Safe to call from another thread."""
        leg = self._primary
        current = leg.ws.counter_totals() if leg is not None else {}
        totals = add_counters(self._retired_totals, current)
        totals["messages_dropped"] = totals.get("messages_dropped", 0) + self._events.dropped
        return totals

    def get_connection_stats(self) -> dict[str, Any]:
        """The primary connection's stats, with counters summed over every connection this
        stream has had (rotations don't reset them), plus the exchange-level counters."""
        leg = self._primary
        if leg is None:
            raise NotLiveError("get_connection_stats: not started")
        stats = leg.ws.get_connection_stats()
        stats["name"] = self.name
        totals = self.counter_totals()
        rs = stats["reconnect_statistics"]
        rs["total_attempts"] = totals["attempts"]
        rs["alarm_count"] = totals["alarms_raised"]
        for key in ("successes", "failures", "alarms_resolved", "failures_by_kind"):
            rs[key] = totals[key]
        attempts = rs["total_attempts"]
        rs["success_rate"] = rs["successes"] / attempts if attempts else None
        stats["messages_received"] = totals["messages_received"]
        stats["messages_dropped"] = totals["messages_dropped"]
        stats["messages_buffered"] = len(self._events)
        stats["binance"] = {
            "streams": {
                s: ("confirmed" if s in leg.confirmed else "pending") for s in self._wanted
            },
            "confirmed": sum(1 for s in self._wanted if s in leg.confirmed),
            "verified": leg.verified,
            "decoder": IDS_DECODER if self._raw else DECODER,
            "events_delivered": self.events_delivered,
            "duplicates_dropped": self.duplicates_dropped,
            "malformed": self.malformed,
            "unsubscribed_dropped": self.unsubscribed_dropped,
            "sequence_resets": self.sequence_resets,
            "gaps_detected": self.gaps_detected,
            "gap_events_missing": self.gap_events_missing,
            "overflow_gaps": self.overflow_gaps,
            "recent_gaps": [g.as_dict() for g in self.recent_gaps],
            "requests_sent": self.requests_sent,
            "request_errors": self.request_errors,
            "request_timeouts": self.request_timeouts,
            "unexpected_replies": self._requests.unexpected,
            "rotations": dict(self.rotations),
            "server_shutdowns": self.server_shutdowns,
            "rate_limits": list(self.rate_limits),
            "attempt_budget": self.budget.stats(),
        }
        if self._backfill is not None:
            stats["binance"]["backfill"] = self._backfill.stats()
        stats["binance"]["order_books"] = self.book_stats()
        return stats

    def book_stats(self) -> dict[str, Any]:
        """The local order books' counters: ``resyncs`` (books discarded after a gap),
        ``snapshots_fetched``, ``snapshot_failures``, ``events_rejected`` and per symbol the
        book's own (``synced``, ``last_update_id``, levels, buffered events, ...)."""
        return self._books.stats()
