"""The exchange's limits per IP: connection attempts, and REST request weight.

Both escalate the same documented way: breaking a limit is answered 429 with ``Retry-After``
(seconds); a request before that Retry-After runs out is answered 418, a ban for
``ban_seconds`` (``Retry-After`` the time left of it). A ban ends when its Retry-After says:
the first request after it is judged afresh (let in, or 429 if the limit is still broken),
never banned again for the 429 that led to it.

Times come from the caller (``now``, monotonic seconds; the weight's windows from the wall
clock, as the exchange's ``X-MBX-USED-WEIGHT-1M`` counts per minute).
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["AttemptLimit", "Escalation", "WeightLimit"]


class Escalation:
    """429, then 418 for a client that keeps going before the 429's Retry-After ends."""

    def __init__(self, ban_seconds: float) -> None:
        self.ban_seconds = ban_seconds
        self.limited_until = 0.0
        self.banned_until = 0.0

    def before(self, now: float) -> tuple[int, float] | None:
        """(418, Retry-After) while banned, or when this request ignores a 429; else None."""
        if now < self.banned_until:
            return 418, self.banned_until - now
        if now < self.limited_until:  # a 429's Retry-After ignored: the IP is banned
            self.banned_until = now + self.ban_seconds
            self.limited_until = 0.0  # the ban replaces the 429: it ends when it says
            return 418, self.ban_seconds
        return None

    def limit(self, now: float, retry_after: float) -> tuple[int, float]:
        """This request broke the limit: 429 until ``retry_after`` seconds from ``now``."""
        self.limited_until = now + retry_after
        return 429, retry_after


class AttemptLimit:
    """At most ``max_attempts`` connection attempts per ``window`` seconds (sliding)."""

    def __init__(self, max_attempts: int, window: float, ban_seconds: float) -> None:
        self.max_attempts = max_attempts
        self.window = window
        self.times: deque[float] = deque()
        self.escalation = Escalation(ban_seconds)

    def attempt(self, now: float) -> tuple[int, float] | None:
        """(status, Retry-After) when this attempt is refused, else None."""
        times = self.times
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        refused = self.escalation.before(now)
        if refused is not None:
            return refused
        if len(times) > self.max_attempts:
            retry = max(1.0, times[-self.max_attempts - 1] + self.window - now)
            return self.escalation.limit(now, retry)
        return None


class WeightLimit:
    """``limit`` request weight per fixed window of ``window`` seconds (the exchange: 6000
    per minute); ``used`` is what ``X-MBX-USED-WEIGHT-1M`` reports."""

    def __init__(self, limit: int, window: float, ban_seconds: float) -> None:
        self.limit = limit
        self.window = window
        self.used = 0
        self.window_start = 0.0
        self.escalation = Escalation(ban_seconds)

    def charge(self, weight: int, now: float, wall: float) -> tuple[int, float] | None:
        """Count ``weight`` for a request at wall-clock ``wall``; (status, Retry-After) when
        it is refused (then it counts nothing)."""
        start = wall - wall % self.window
        if start != self.window_start:
            self.window_start, self.used = start, 0
        refused = self.escalation.before(now)
        if refused is not None:
            return refused
        if self.used + weight > self.limit:
            return self.escalation.limit(now, max(1.0, start + self.window - wall))
        self.used += weight
        return None


def retry_after_header(seconds: float) -> str:
    """Retry-After in whole seconds, never early."""
    return str(max(1, math.ceil(seconds)))
