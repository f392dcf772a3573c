"""Sliding-window pacing: requests per connection, connection attempts per process.

Both answer one question, "when may the next one go?", by reserving a slot: at most ``limit``
in any window of ``window`` seconds. A reservation is taken before the caller sleeps, so
callers that arrive together queue up in order instead of all waking at the same instant.

``RequestPacer`` lives on one event loop (one connection). ``AttemptBudget`` is shared by every
connection of the process, possibly on several event loops in several threads, so it is
guarded by a lock and counts in ``time.monotonic()`` seconds; a server's Retry-After blocks it
for everyone (the exchange counts and bans per IP, not per connection).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio

from ._budget import _spare

__all__ = ["AttemptBudget", "RequestPacer", "shared_attempt_budget"]


class _Window:
    def __init__(self, limit: int, window: float) -> None:
        if limit < 1:
            raise ValueError(f"limit: must be >= 1 (got {limit!r})")
        if not window > 0:
            raise ValueError(f"window: must be > 0 (got {window!r})")
        self.limit = limit
        self.window = window
        self.slots: deque[float] = deque()

    def reserve(self, now: float, not_before: float = 0.0) -> float:
        """Reserve the earliest allowed time at or after ``now``; return it."""
        while self.slots and self.slots[0] <= now - self.window:
            self.slots.popleft()
        at = max(now, not_before)
        if self.slots:
            at = max(at, self.slots[-1])  # reservations stay in order
        if len(self.slots) >= self.limit:
            at = max(at, self.slots[-self.limit] + self.window)
        self.slots.append(at)
        return at

    def count_since(self, since: float) -> int:
        return sum(1 for t in self.slots if t > since)


class RequestPacer:
    """Requests of one connection, paced so all its frames stay under the exchange's limit.

    The exchange counts every incoming frame: requests, pings and pongs. Pings and pongs cannot
    wait (a late pong loses the connection), so they are only counted: ``control_count``
    returns how many were sent so far, and the ones new since the last request are counted
    as sent now (conservative). A request goes when fewer than ``limit - reserve`` frames fall
    in the last ``1 + margin`` seconds, so ``reserve`` pings/pongs arriving after it still fit.
    The margin absorbs network jitter: two sends a second apart can arrive closer together.
    """

    def __init__(
        self,
        limit: int,
        reserve: int,
        *,
        control_count: Callable[[], int] = lambda: 0,
        margin: float = 0.1,
    ) -> None:
        if not 0 <= reserve < limit:
            raise ValueError(f"reserve: must be >= 0 and < limit={limit} (got {reserve!r})")
        self.capacity = limit - reserve
        self.window = 1.0 + margin
        self._sent: deque[float] = deque()
        self._control_count = control_count
        self._controls_seen = control_count()
        self.waited = 0.0

    def rebase(self) -> None:
        """A new connection: the exchange counts frames per connection, so the frames of the
        previous one (pings of a long outage counted as sent now) must not delay this one."""
        self._controls_seen = self._control_count()
        self._sent.clear()

    async def wait(self) -> None:
        started = anyio.current_time()
        while True:
            now = anyio.current_time()
            controls = self._control_count()
            self._sent.extend([now] * (controls - self._controls_seen))
            self._controls_seen = controls
            while self._sent and self._sent[0] <= now - self.window:
                self._sent.popleft()
            if len(self._sent) < self.capacity:
                self._sent.append(now)
                self.waited += now - started
                return
            # the oldest frames must leave the window first
            await anyio.sleep(self._sent[-self.capacity] + self.window - now + 1e-3)


class AttemptBudget:
    """At most ``attempts`` connection attempts per ``window`` seconds, process-wide.

    The in-process implementation of the :class:`Budget` protocol (``backend = "local"``);
    ``FileBudget`` and ``RedisBudget`` share the window between processes and hosts.

    Slots are spaced ``window + margin`` apart (``margin`` defaults to 1 % of the window, 3 s
    of 5 minutes): an attempt can start a little after its slot (a busy event loop, TCP and
    TLS before the exchange counts it), and the margin keeps such late ones inside the limit.
    """

    backend = "local"

    def __init__(
        self,
        attempts: int,
        window: float,
        *,
        margin: float | None = None,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = _Window(attempts, window + _spare(window, margin))
        self._lock = threading.Lock()
        self._time = time_fn
        self.blocked_until = 0.0
        self.attempts = 0
        self.waits = 0
        self.waited = 0.0

    @property
    def limit(self) -> int:
        return self._window.limit

    @property
    def window(self) -> float:
        return self._window.window

    def reserve(self, cost: int = 1) -> float:
        """Take the next slot (``cost`` slots: the :class:`Budget` protocol); return how long
        to wait before using it."""
        with self._lock:
            now = self._time()
            at = now
            for _ in range(cost):
                at = self._window.reserve(now, self.blocked_until)
            self.attempts += cost
            delay = at - now
            if delay > 0:
                self.waits += 1
                self.waited += delay
            return delay

    async def acquire(self, cost: int = 1) -> None:
        """Take the next slot and sleep until it (event loops may wake a little early)."""
        # reserve() with no argument when cost is 1: a subclass written before the cost
        # parameter (overriding reserve(self)) keeps working
        slot = self._time() + (self.reserve(cost) if cost != 1 else self.reserve())
        while (left := slot - self._time()) > 0:
            await anyio.sleep(left)

    def block_for(self, seconds: float) -> None:
        """Nobody attempts for ``seconds`` from now (a Retry-After)."""
        with self._lock:
            self.blocked_until = max(self.blocked_until, self._time() + seconds)

    def in_window(self) -> int:
        with self._lock:
            now = self._time()
            return self._window.count_since(now - self._window.window)

    def stats(self) -> dict[str, Any]:
        """The counters for logs and metrics (the :class:`Budget` protocol)."""
        return {
            "backend": self.backend,
            "limit": self.limit,
            "window": self.window,
            "in_window": self.in_window(),
            "reservations": self.attempts,
            "units": self.attempts,
            "waits": self.waits,
            "waited": round(self.waited, 3),
        }


_SHARED: dict[tuple[int, float], AttemptBudget] = {}
_SHARED_LOCK = threading.Lock()


def shared_attempt_budget(attempts: int, window: float) -> AttemptBudget:
    """The process-wide budget for these limits (one per distinct pair)."""
    with _SHARED_LOCK:
        budget = _SHARED.get((attempts, window))
        if budget is None:
            budget = _SHARED[(attempts, window)] = AttemptBudget(attempts, window)
        return budget
