"""The pattern detector kept up to date drop by drop (R3.5).

:class:`DropTracker` holds the last ``size`` drops and returns what
``detect_patterns(list(drops))`` returns, without recomputing over the buffer on every drop.
Each drop (and each eviction) updates, in O(1) or O(log n):

* the drops per hour, and how many hours hold each count (for the minute-of-hour p-value);
* 60 minute-of-hour buckets: each bucket's drops (sorted by phase) and the hours they come
  from; the number of distinct hours per bucket, and per run of 4 consecutive buckets, whose
  maximum (kept with a count per value: the sums move by 1) bounds the hours any 120 s window
  can hold (a window starting in minute m ends before minute m + 3, one more bucket against
  float rounding at the edges);
* the times and the gaps between consecutive times, sorted (bisect: O(log n) comparisons; the
  insert is a C memmove of at most ``size`` pointers, 256 in the machine).

The minute buckets are kept only while the minute-of-hour test can run (see
:meth:`DropTracker._keep_buckets`): a buffer of fast drops spanning fewer hours skips them.

:meth:`DropTracker.reports` then decides in O(1) (independent of the buffer) in the common
case: the minute-of-hour test is skipped when too few hours exist, when no 4-bucket run holds
``min_hits`` hours, or when a lower bound of its p-value (a few terms of a binomial tail over
the hours with at least c drops, each hour's chance at least that of c drops) is not
significant; the period test reads the median gap and the gaps within tolerance of it by
index and bisection, and stops at the first key already reported or at the first terms of its
binomial tail that are not significant. Only what can still be a report is computed exactly,
with the batch detector's own arithmetic (so the figures are bit for bit the same): the
windows starting in the few minutes whose bound can beat the best found, the p-value over the
hours, the report. ``tests/fsm/test_patterns_tracker.py`` checks it against ``detect_patterns``
over random drop sequences with evictions.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import Counter, deque
from collections.abc import Container

from ._patterns import (
    _PHASE_WINDOW,
    HOUR,
    PatternReport,
    _binomial_tail,
    _fixed_period,
    _minute_of_hour_report,
)

__all__ = ["DropTracker"]

_MINUTES = 60
#: Buckets a window starting in one minute can reach (see the module header).
_SPAN = 4
_SHARE = _PHASE_WINDOW / HOUR


def _binomial_tail_at_least(n: int, p: float, k: int, terms: int = 40) -> float:
    """A lower bound of ``P(X >= k)`` for ``X ~ Binomial(n, p)``, in O(terms).

    At or below the mean the median says at least 1/2; above it the first terms of the sum
    (which fall off geometrically there), from logs so nothing overflows."""
    if k <= 0 or p >= 1.0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if k <= n * p:
        return 0.5  # the median of a binomial is at least floor(n p)
    log_term = (
        math.lgamma(n + 1)
        - math.lgamma(k + 1)
        - math.lgamma(n - k + 1)
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    term = math.exp(log_term)
    total = term
    odds = p / (1.0 - p)
    for i in range(k, min(n, k + terms)):
        term *= (n - i) / (i + 1) * odds
        total += term
        if term <= total * 1e-9:
            break
    return total


class DropTracker:
    """The last ``size`` drops and their statistics (see the module header)."""

    def __init__(self, size: int, *, min_hits: int = 4, significance: float = 1e-6) -> None:
        self.drops: deque[tuple[float, str]] = deque()
        self.size = size
        self.min_hits = min_hits
        self.significance = significance
        #: arrival number of the next drop (the buffer's drops are numbered consecutively, so
        #: the oldest is ``_seq - len(drops)``)
        self._seq = 0
        self._per_hour: dict[int, int] = {}
        #: count -> how many hours hold that many drops
        self._hours_with: dict[int, int] = {}
        #: per minute of the hour: its drops (phase, arrival number, time, kind) sorted as the
        #: batch detector's stable sort orders them, and the hours they come from
        self._bucket: list[list[tuple[float, int, float, str]]] = []
        self._bucket_hours: list[dict[int, int]] = []
        #: distinct hours in the _SPAN buckets starting at each minute; their maximum
        self._run: list[int] = []
        self._runs_with: dict[int, int] = {}
        self._best_run = 0
        #: whether the minute buckets above are kept up to date (see _keep_buckets)
        self._buckets_kept = False
        self._clear_buckets()
        self._by_time: list[tuple[float, str]] = []
        self._gaps: list[float] = []
        self._key_of: tuple[float, tuple[str, int]] = (math.nan, ("period", 0))

    # -- updates: O(1) or O(log n) ------------------------------------------------------
    def add(self, t: float, kind: str) -> None:
        drops = self.drops
        hour = int(t // HOUR)
        if len(drops) == self.size:
            evicted = drops.popleft()
            # An evicted drop of the same hour leaves the per-hour counts as they are (-1 then
            # +1): the common case when the buffer spans less than hours of drops.
            moved = int(evicted[0] // HOUR) != hour
            self._remove(evicted, self._seq - len(drops) - 1, moved)
            if moved:
                self._count_hour(hour, 1)
        else:
            self._count_hour(hour, 1)
        seq = self._seq
        self._seq = seq + 1
        drops.append((t, kind))
        if self._buckets_kept:
            if len(self._per_hour) < self.min_hits - 1:
                self._buckets_kept = False  # (see _keep_buckets)
            else:
                self._bucket_add(t, kind, seq, hour)
        by_time, gaps = self._by_time, self._gaps
        item = (t, kind)
        if not by_time or by_time[-1] <= item:  # in time order, the common case: at the end
            if by_time:
                insort(gaps, t - by_time[-1][0])
            by_time.append(item)
            return
        i = bisect_right(by_time, item)
        before = by_time[i - 1][0] if i > 0 else None
        after = by_time[i][0]
        if before is not None:
            self._drop_gap(after - before)
            insort(gaps, t - before)
        insort(gaps, after - t)
        by_time.insert(i, item)

    def _remove(self, drop: tuple[float, str], seq: int, count: bool) -> None:
        t, kind = drop
        hour = int(t // HOUR)
        if count:  # (False: the caller adds a drop of the same hour)
            self._count_hour(hour, -1)
        if self._buckets_kept:
            phase = t % HOUR
            minute = int(phase // 60.0)
            if minute >= _MINUTES:
                minute = _MINUTES - 1
            bucket = self._bucket[minute]
            del bucket[bisect_left(bucket, (phase, seq, t, kind))]
            hours = self._bucket_hours[minute]
            if hours[hour] > 1:
                hours[hour] -= 1  # the bucket's distinct hours stay: nothing more to update
            else:
                self._bucket_hour(minute, hour, -1)
        by_time = self._by_time
        if by_time[0] == drop:  # the oldest is the earliest when the times came in order
            del by_time[0]
            if by_time:
                gaps = self._gaps
                del gaps[bisect_left(gaps, by_time[0][0] - t)]
            return
        i = bisect_left(by_time, drop)
        before = by_time[i - 1][0] if i > 0 else None
        after = by_time[i + 1][0] if i + 1 < len(by_time) else None
        if before is not None:
            self._drop_gap(t - before)
        if after is not None:
            self._drop_gap(after - t)
        if before is not None and after is not None:
            insort(self._gaps, after - before)
        del by_time[i]

    def _drop_gap(self, gap: float) -> None:
        del self._gaps[bisect_left(self._gaps, gap)]

    def _count_hour(self, hour: int, delta: int) -> None:
        # plain dicts: Counter's __delitem__ and __missing__ are Python code
        per_hour, hours_with = self._per_hour, self._hours_with
        old = per_hour.get(hour, 0)
        new = old + delta
        if old:
            left = hours_with[old] - 1
            if left:
                hours_with[old] = left
            else:
                del hours_with[old]
        if new:
            per_hour[hour] = new
            hours_with[new] = hours_with.get(new, 0) + 1
        else:
            del per_hour[hour]

    def _bucket_add(self, t: float, kind: str, seq: int, hour: int) -> None:
        phase = t % HOUR
        minute = int(phase // 60.0)
        if minute >= _MINUTES:  # a phase rounded up to 3600.0
            minute = _MINUTES - 1
        insort(self._bucket[minute], (phase, seq, t, kind))
        hours = self._bucket_hours[minute]
        if hour in hours:
            hours[hour] += 1  # the bucket's distinct hours stay: nothing more to update
        else:
            self._bucket_hour(minute, hour, 1)

    def _clear_buckets(self) -> None:
        self._bucket = [[] for _ in range(_MINUTES)]
        self._bucket_hours = [{} for _ in range(_MINUTES)]
        self._run = [0] * _MINUTES
        self._runs_with = {0: _MINUTES}
        self._best_run = 0

    def _keep_buckets(self) -> None:
        """Bring the minute buckets up to date, and keep them so from now on.

        Only the minute-of-hour test reads them, and it runs only while the buffer holds
        drops of at least ``min_hits`` hours; a buffer of fast drops (one every few seconds
        to minutes, as in a flapping link) spans fewer, and keeping them cost about half of
        each drop's update. So they are let go when the buffer holds drops of fewer than
        ``min_hits - 1`` hours (one hour of slack, so a buffer that hovers at the threshold
        does not rebuild them again and again) and rebuilt here, from the buffer in arrival
        order, when the test next runs: the state the drop-by-drop updates would have built
        (``tests/fsm/test_patterns_tracker.py`` checks the reports against the batch
        detector, across both)."""
        if self._buckets_kept:
            return
        self._clear_buckets()
        first = self._seq - len(self.drops)
        for offset, (t, kind) in enumerate(self.drops):
            self._bucket_add(t, kind, first + offset, int(t // HOUR))
        self._buckets_kept = True

    def _bucket_hour(self, minute: int, hour: int, delta: int) -> None:
        hours = self._bucket_hours[minute]
        old = hours.get(hour, 0)
        if old + delta:
            hours[hour] = old + delta
        else:
            del hours[hour]
        if old and old + delta:
            return  # the bucket's distinct hours did not change
        step = 1 if delta > 0 else -1
        runs, runs_with = self._run, self._runs_with
        for start in range(minute - _SPAN + 1, minute + 1):
            start %= _MINUTES
            value = runs[start]
            left = runs_with[value] - 1
            if left:
                runs_with[value] = left
            else:
                del runs_with[value]
            runs[start] = value + step
            runs_with[value + step] = runs_with.get(value + step, 0) + 1
            if value + step > self._best_run:
                self._best_run = value + step
        if self._best_run not in runs_with:
            self._best_run -= 1  # the sums move by one: the next maximum is one less

    # -- the reports ------------------------------------------------------------------------
    def reports(self, skip: Container[tuple[str, int]] = ()) -> list[PatternReport]:
        """The patterns ``detect_patterns`` finds in the buffer, less those keyed in ``skip``."""
        period = self._period_candidate(skip)  # (None as well when its key is in skip)
        # The hourly test matters to the period only when the period is about an hour.
        near_hour = period is not None and abs(period - HOUR) <= 0.1 * HOUR
        hourly = None
        if len(self._per_hour) >= self.min_hits:
            self._keep_buckets()
            hourly = self._minute_of_hour(skip, needed=near_hour)
        reports = [] if hourly is None or hourly.key in skip else [hourly]
        if period is None or (hourly is not None and near_hour):
            return reports
        if not self._period_significant(period):
            return reports
        periodic = _fixed_period(self._by_time, self.min_hits, self.significance)
        assert periodic is not None and periodic.period == period
        reports.append(periodic)
        return reports

    def _minute_of_hour(
        self, skip: Container[tuple[str, int]], needed: bool
    ) -> PatternReport | None:
        """The minute-of-hour report, or None. One whose key is in ``skip`` is returned only
        when ``needed`` (else None: the caller would drop it anyway)."""
        hours = len(self._per_hour)
        bound = min(hours, self._best_run)
        if hours < self.min_hits or bound < self.min_hits:
            return None
        if self._hours_bound(bound) / _SHARE >= 2.0 * self.significance:
            return None  # even the best window cannot be significant (2x: float slack)
        best = self._best_window()
        if best is None:
            return None
        best_hours, window = best
        phase = (sum(phase for phase, _, _ in window) / len(window)) % HOUR
        if ("minute_of_hour", int(phase // 60)) in skip and not needed:
            return None
        # Exactly as the batch detector: hours in order of first appearance in the buffer.
        per_hour = Counter(int(t // HOUR) for t, _ in self.drops)
        return _minute_of_hour_report(
            window, best_hours, per_hour, len(self.drops), self.significance
        )

    def _hours_bound(self, k: int) -> float:
        """A lower bound of P(k or more hours put a drop in a given window): for each count
        c, the hours with at least c drops each hit with at least c drops' chance."""
        best = 0.0
        at_least = 0
        for count in sorted(self._hours_with, reverse=True):
            at_least += self._hours_with[count]
            if at_least < k:
                continue
            chance = 1.0 - (1.0 - _SHARE) ** count
            best = max(best, _binomial_tail_at_least(at_least, chance, k))
            if best / _SHARE >= 2.0 * self.significance:
                break
        return best

    def _best_window(self) -> tuple[int, list[tuple[float, float, str]]] | None:
        """The batch detector's best window (the first, in phase order, holding the most
        distinct hours) as (hours, [(unrolled phase, time, kind)]), found by scanning only the
        minutes whose 4-bucket bound can beat the best so far."""
        best_hours, best_window = 0, None
        for minute in range(_MINUTES):
            if self._run[minute] <= best_hours or not self._bucket[minute]:
                continue
            points: list[tuple[float, float, str]] = []
            for offset in range(_SPAN):
                shift = HOUR if minute + offset >= _MINUTES else 0.0
                for phase, _, t, kind in self._bucket[(minute + offset) % _MINUTES]:
                    points.append((phase + shift if shift else phase, t, kind))
            in_window: Counter[int] = Counter()
            end = 0
            for start in range(len(self._bucket[minute])):
                while end < len(points) and points[end][0] - points[start][0] <= _PHASE_WINDOW:
                    in_window[int(points[end][1] // HOUR)] += 1
                    end += 1
                if len(in_window) > best_hours:
                    best_hours, best_window = len(in_window), points[start:end]
                hour = int(points[start][1] // HOUR)
                in_window[hour] -= 1
                if not in_window[hour]:
                    del in_window[hour]
        if best_window is None or best_hours < self.min_hits:
            return None
        return best_hours, best_window

    def _period_candidate(self, skip: Container[tuple[str, int]]) -> float | None:
        """The period the fixed-period test would test (median gap, enough gaps fit), or None;
        None too when its key is in ``skip`` (then whether enough gaps fit changes nothing in
        :meth:`reports`: the period is not reported, and a skipped period does not make the
        minute-of-hour report needed). O(log n), O(1) once the period is reported."""
        gaps = self._gaps
        if len(self._by_time) < self.min_hits:
            return None
        period = gaps[len(gaps) // 2]
        if period <= 0.0:
            return None
        # the same period drop after drop: its key (a logarithm) is kept
        if period != self._key_of[0]:
            self._key_of = (period, ("period", round(math.log(period, 1.1))))
        if self._key_of[1] in skip:
            return None
        tolerance = 1.0 if 0.1 * period < 1.0 else 0.1 * period  # max(), without the call
        lo, hi = _fitting_range(gaps, period, tolerance)
        if hi - lo + 1 < self.min_hits:
            return None
        return period

    def _period_significant(self, period: float) -> bool:
        gaps = self._gaps
        tolerance = max(0.1 * period, 1.0)
        lo, hi = _fitting_range(gaps, period, tolerance)
        mean = (self._by_time[-1][0] - self._by_time[0][0]) / len(gaps)
        low, high = max(period - tolerance, 0.0), period + tolerance
        p_interval = math.exp(-low / mean) - math.exp(-high / mean)
        # The bound first (O(1)); the batch's own sum only when it can be significant.
        if _binomial_tail_at_least(len(gaps), p_interval, hi - lo) >= 2.0 * self.significance:
            return False
        return _binomial_tail(len(gaps), p_interval, hi - lo) < self.significance


def _fitting_range(gaps: list[float], period: float, tolerance: float) -> tuple[int, int]:
    """The slice of sorted ``gaps`` with ``abs(gap - period) <= tolerance``: contiguous, since
    a float difference is monotone in ``gap``. Bisection on ``period -+ tolerance`` lands next
    to each end; the ends are then settled with the very test the batch detector applies to
    each gap (a step or two), so both count the same gaps."""
    n = len(gaps)
    lo = bisect_left(gaps, period - tolerance)
    while lo > 0 and gaps[lo - 1] <= period and abs(gaps[lo - 1] - period) <= tolerance:
        lo -= 1
    while lo < n and gaps[lo] < period and abs(gaps[lo] - period) > tolerance:
        lo += 1
    hi = bisect_right(gaps, period + tolerance, lo)
    while hi < n and abs(gaps[hi] - period) <= tolerance:
        hi += 1
    while hi > lo and gaps[hi - 1] > period and abs(gaps[hi - 1] - period) > tolerance:
        hi -= 1
    return lo, hi
