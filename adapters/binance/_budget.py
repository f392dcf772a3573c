"""Budgets: the exchange's per-IP limits, kept by one process, one host or a whole cluster.

How it works
------------
The exchange counts per IP address: connection attempts (300 per 5 minutes) and REST request
weight (per minute). A :class:`Budget` answers "when may the next one go?" by *reserving* a
slot in a sliding window: at most ``limit`` units (attempts, or request weight) in any
``window`` seconds. A reservation is taken before the caller sleeps, so callers that arrive
together queue up in order instead of all waking at once. Three implementations:

* in-process (:class:`AttemptBudget`, :class:`WeightBudget`): a window in memory, guarded by a
  thread lock. The default: right for one process per address.
* host-wide (:class:`FileBudget`, ``file:///path``): the window lives in a small ledger file
  that every process on the host reads and rewrites under an ``fcntl`` lock.
* cluster-wide (:class:`RedisBudget`, ``redis://host:6379/0``): the window is a Redis sorted
  set, updated by one Lua script per reservation (one round trip, atomic, on Redis's clock).

**Fail safe.** A shared budget that cannot reach its store (the file's folder is gone, the lock
is held by a stopped process, Redis is down) never blocks and never guesses: it falls back to a
*local share*, a window of ``fallback_share`` units per window in this process alone, logs
``event=budget_fallback`` once per outage, counts it (``fallbacks``, ``fallback_reservations``)
and tries the store again after ``retry_store`` seconds. The store itself only hands out
``limit - headroom`` units per window, so processes that fall back spend the ``headroom``:
while (processes in fallback) x ``fallback_share`` <= ``headroom``, the address stays under
the limit even during the outage. Defaults: ``headroom`` a tenth of the limit,
``fallback_share`` a hundredth (at least 1): 30 and 3 of 300 attempts, ten processes covered.

Slots are spaced ``window + margin`` apart (``margin`` defaults to 1 % of the window): an
attempt can start a little after its slot (a busy loop, TCP and TLS before the exchange counts
it), and the margin keeps such late ones inside the limit.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import anyio
import anyio.to_thread

from ...fsm import format_kv

__all__ = [
    "Budget",
    "SharedBudget",
    "StoreUnavailable",
    "WeightBudget",
    "budget_from_url",
    "reserve_slot",
    "shared_budget",
]

LOGGER_NAME = "regulator.binance"


@runtime_checkable
class Budget(Protocol):
    """What a budget offers (every implementation here, and one a host writes itself).

    ``reserve(cost)`` takes the next slot for ``cost`` units and returns the seconds to wait
    before using it (0 when it may go now); it never blocks longer than its store's timeout.
    ``acquire(cost)`` reserves and sleeps until the slot. ``block_for(seconds)`` stops every
    user of the budget for that long (a 429/418's Retry-After: the exchange bans the address).
    ``in_window()`` is the units taken in the current window (by every user of the store, as
    last seen); ``stats()`` the counters for logs and metrics.
    """

    @property
    def limit(self) -> int: ...

    @property
    def window(self) -> float: ...

    def reserve(self, cost: int = 1) -> float: ...

    async def acquire(self, cost: int = 1) -> None: ...

    def block_for(self, seconds: float) -> None: ...

    def in_window(self) -> int: ...

    def stats(self) -> dict[str, Any]: ...


def reserve_slot(
    times: list[float],
    costs: list[float],
    now: float,
    not_before: float,
    limit: int,
    window: float,
    cost: int,
) -> float:
    """Reserve ``cost`` units at the earliest time at or after ``now`` and ``not_before``
    such that no ``window`` holds more than ``limit``; append it and return its time.

    ``times`` (non-decreasing) and ``costs`` are the reservations, edited in place; the ones
    the window has passed are dropped first. Reservations stay in order, so the units in the
    window at time ``at`` are the newest ones with a time after ``at - window``.
    """
    if not 1 <= cost <= limit:
        raise ValueError(f"cost: must be >= 1 and <= limit={limit} (got {cost!r})")
    cut = bisect_right(times, now - window)
    if cut:
        del times[:cut]
        del costs[:cut]
    at = max(now, not_before)
    if times:
        at = max(at, times[-1])
        used = sum(costs)
        if used + cost > limit:  # full: the oldest must leave the window first
            if used == len(costs):  # every cost is 1 (attempts): keep the newest limit - cost
                i = len(costs) - (limit - cost)
            else:  # weights: walk back from the newest
                total, i = float(cost), len(costs)
                while i > 0 and total + costs[i - 1] <= limit:
                    i -= 1
                    total += costs[i]
            at = max(at, times[i - 1] + window)
    times.append(at)
    costs.append(cost)
    return at


def _spare(window: float, margin: float | None) -> float:
    spare = 0.01 * window if margin is None else margin
    if not spare >= 0:
        raise ValueError(f"margin: must be >= 0 (got {margin!r})")
    return spare


class WeightBudget:
    """At most ``weight`` units of REST request weight per ``window`` seconds, in-process.

    The in-process REST-weight budget (each request reserves its weight); the same sliding
    window as :class:`AttemptBudget`, with a cost per reservation.
    """

    backend = "local"

    def __init__(
        self,
        weight: int,
        window: float,
        *,
        margin: float | None = None,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(weight, int) or weight < 1:
            raise ValueError(f"weight: must be an integer >= 1 (got {weight!r})")
        if not window > 0:
            raise ValueError(f"window: must be > 0 (got {window!r})")
        self._limit = weight
        self._window = window + _spare(window, margin)
        self._times: list[float] = []
        self._costs: list[float] = []
        self._lock = threading.Lock()
        self._time = time_fn
        self.blocked_until = 0.0
        self.reservations = 0
        self.units = 0
        self.waits = 0
        self.waited = 0.0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window(self) -> float:
        return self._window

    def reserve(self, cost: int = 1) -> float:
        with self._lock:
            now = self._time()
            at = reserve_slot(
                self._times, self._costs, now, self.blocked_until, self._limit, self._window, cost
            )
            self.reservations += 1
            self.units += cost
            delay = at - now
            if delay > 0:
                self.waits += 1
                self.waited += delay
            return delay

    async def acquire(self, cost: int = 1) -> None:
        slot = self._time() + self.reserve(cost)
        while (left := slot - self._time()) > 0:
            await anyio.sleep(left)

    def block_for(self, seconds: float) -> None:
        with self._lock:
            self.blocked_until = max(self.blocked_until, self._time() + seconds)

    def in_window(self) -> int:
        with self._lock:
            since = self._time() - self._window
            return int(sum(self._costs[bisect_right(self._times, since) :]))

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "limit": self._limit,
            "window": self._window,
            "in_window": self.in_window(),
            "reservations": self.reservations,
            "units": self.units,
            "waits": self.waits,
            "waited": round(self.waited, 3),
        }


class StoreUnavailable(Exception):
    """A shared budget's store could not be reached (or answered nonsense) in time."""


class SharedBudget:
    """The part every shared budget has in common: the local share it falls back to when its
    store is unreachable, the per-process counters, and the log lines.

    In fallback a reservation costs at most ``fallback_share`` units of the local window: a
    REST request heavier than the share waits for a whole window of it, and then goes, so
    during an outage such a request can overdraw the share by its excess (an attempt costs 1
    and never does).

    A subclass implements ``_store_reserve(cost, limit, window)`` (returns the delay and the
    units in the window, as the store counts them), ``_store_block(seconds)`` and
    ``_store_in_window()``; each raises :class:`StoreUnavailable` when the store is out of
    reach, never blocks longer than its timeout, and is called under this object's lock.
    """

    backend = "shared"

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        margin: float | None = None,
        headroom: int | None = None,
        fallback_share: int | None = None,
        retry_store: float = 1.0,
        logger: logging.Logger | None = None,
    ) -> None:
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit: must be an integer >= 1 (got {limit!r})")
        if not window > 0:
            raise ValueError(f"window: must be > 0 (got {window!r})")
        room = limit // 10 if headroom is None else headroom
        if not isinstance(room, int) or not 0 <= room < limit:
            raise ValueError(
                f"headroom: must be an integer >= 0 and < limit={limit} (got {room!r})"
            )
        share = max(1, limit // 100) if fallback_share is None else fallback_share
        if not isinstance(share, int) or not 1 <= share <= limit:
            raise ValueError(
                f"fallback_share: must be an integer >= 1 and <= limit={limit} (got {share!r})"
            )
        if not retry_store >= 0:
            raise ValueError(f"retry_store: must be >= 0 (got {retry_store!r})")
        self._limit = limit
        self._window = window + _spare(window, margin)
        self.headroom = room
        self.fallback_share = share
        self.retry_store = retry_store
        self._local = WeightBudget(share, window, margin=self._window - window)
        self._lock = threading.Lock()
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._down_until = 0.0  # monotonic: the store is not tried again before this
        self._own: deque[float] = deque()  # monotonic times of this process's reservations
        self.falling_back = False
        self.last_error = ""
        self.last_in_window = 0
        self.reservations = 0
        self.units = 0
        self.waits = 0
        self.waited = 0.0
        self.fallbacks = 0
        self.fallback_reservations = 0
        self.store_errors = 0

    # -- what a subclass implements ------------------------------------------------------
    def _store_reserve(self, cost: int, limit: int, window: float) -> tuple[float, int]:
        raise NotImplementedError

    def _store_block(self, seconds: float) -> None:
        raise NotImplementedError

    def _store_in_window(self) -> int:
        raise NotImplementedError

    def describe(self) -> str:
        """Where the store is, for logs (no secrets)."""
        return self.backend

    # -- the protocol --------------------------------------------------------------------
    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window(self) -> float:
        return self._window

    def reserve(self, cost: int = 1) -> float:
        """Take the next slot for ``cost`` units; return how long to wait before using it."""
        if not 1 <= cost <= self._limit - self.headroom:
            raise ValueError(
                f"cost: must be >= 1 and <= limit - headroom = {self._limit - self.headroom}"
                f" (got {cost!r})"
            )
        with self._lock:
            mono = time.monotonic()
            delay: float | None = None
            if mono >= self._down_until:
                try:
                    delay, self.last_in_window = self._store_reserve(
                        cost, self._limit - self.headroom, self._window
                    )
                except StoreUnavailable as exc:
                    self._fell_back(exc, mono)
                else:
                    self._restored()
            if delay is None:
                self.fallback_reservations += 1
                delay = self._local.reserve(min(cost, self.fallback_share))
            self.reservations += 1
            self.units += cost
            if delay > 0:
                self.waits += 1
                self.waited += delay
            own = self._own
            own.append(mono + delay)
            while own and own[0] <= mono - self._window:
                own.popleft()
            return delay

    async def acquire(self, cost: int = 1) -> None:
        """Reserve (in a worker thread: the store may take up to its timeout) and sleep."""
        delay = await anyio.to_thread.run_sync(self.reserve, cost)
        slot = time.monotonic() + delay
        while (left := slot - time.monotonic()) > 0:
            await anyio.sleep(left)

    def block_for(self, seconds: float) -> None:
        """Nobody using this store attempts for ``seconds`` (a Retry-After); the local share
        is blocked too, in case the store is lost before the block ends."""
        self._local.block_for(seconds)
        with self._lock:
            try:
                self._store_block(seconds)
            except StoreUnavailable as exc:
                self._fell_back(exc, time.monotonic())

    def in_window(self) -> int:
        """Units taken in the window by every user of the store (the last count seen when the
        store is unreachable)."""
        with self._lock:
            if time.monotonic() >= self._down_until:
                try:
                    self.last_in_window = self._store_in_window()
                except StoreUnavailable as exc:
                    self._fell_back(exc, time.monotonic())
            return self.last_in_window

    def own_in_window(self) -> int:
        """This process's reservations in the current window: its share of the address."""
        with self._lock:
            since = time.monotonic() - self._window
            return sum(1 for t in self._own if t > since)

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "store": self.describe(),
            "limit": self._limit,
            "window": self._window,
            "headroom": self.headroom,
            "fallback_share": self.fallback_share,
            "in_window": self.in_window(),
            "own_in_window": self.own_in_window(),
            "reservations": self.reservations,
            "units": self.units,
            "waits": self.waits,
            "waited": round(self.waited, 3),
            "falling_back": self.falling_back,
            "fallbacks": self.fallbacks,
            "fallback_reservations": self.fallback_reservations,
            "store_errors": self.store_errors,
        }

    # -- the fallback --------------------------------------------------------------------
    def _fell_back(self, exc: StoreUnavailable, mono: float) -> None:
        self.store_errors += 1
        self.last_error = str(exc)
        self._down_until = mono + self.retry_store
        if not self.falling_back:
            self.falling_back = True
            self.fallbacks += 1
            self._log.warning(
                format_kv(
                    event="budget_fallback",
                    backend=self.backend,
                    store=self.describe(),
                    error=str(exc),
                    share=self.fallback_share,
                    window=round(self._window, 3),
                )
            )

    def _restored(self) -> None:
        if self.falling_back:
            self.falling_back = False
            self._log.warning(
                format_kv(
                    event="budget_restored",
                    backend=self.backend,
                    store=self.describe(),
                    fallback_reservations=self.fallback_reservations,
                )
            )


def budget_from_url(
    url: str, limit: int, window: float, *, unit: str = "attempts", **options: Any
) -> Budget:
    """A new budget kept where ``url`` says: ``local`` (this process), ``file:///path`` (this
    host; the REST weight's ledger is ``<path>.weight``) or ``redis://host:6379/0``.
    ``options`` go to the shared budget (``headroom``, ``fallback_share``, ...). A bad URL
    raises ``ValueError`` naming the rule."""
    from ...fsm._rules import check_budget_url

    problem = check_budget_url(url)
    if problem is not None:
        raise ValueError(f"budget: {problem}")
    if url == "local":
        if unit == "attempts":
            from ._pacing import AttemptBudget

            return AttemptBudget(limit, window, margin=options.get("margin"))
        return WeightBudget(limit, window, margin=options.get("margin"))
    if url.lower().startswith("file:"):
        from urllib.parse import unquote, urlsplit

        from ._ledger import FileBudget

        path = unquote(urlsplit(url).path)
        return FileBudget(
            path if unit == "attempts" else f"{path}.{unit}", limit, window, **options
        )
    from ._redis import RedisBudget

    return RedisBudget(url, limit, window, unit=unit, **options)


_SHARED: dict[tuple[str, int, float, str], Budget] = {}
_SHARED_LOCK = threading.Lock()


def shared_budget(url: str, limit: int, window: float, *, unit: str = "attempts") -> Budget:
    """The process-wide budget for this store and these limits (one per distinct tuple), so
    every stream of the process takes its slots from one object and one local share."""
    if url == "local" and unit == "attempts":
        from ._pacing import shared_attempt_budget

        return shared_attempt_budget(limit, window)
    with _SHARED_LOCK:
        key = (url, limit, window, unit)
        budget = _SHARED.get(key)
        if budget is None:
            budget = _SHARED[key] = budget_from_url(url, limit, window, unit=unit)
        return budget
