"""The incremental drop tracker finds what the batch detector finds over the same buffer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.fsm import PatternReport, detect_patterns
from regulator.fsm._drop_tracker import DropTracker
from regulator.fsm._patterns import HOUR

# the incremental tracker must report exactly what the batch detector reports
pytestmark = pytest.mark.spec("R3.5")

kinds = st.sampled_from(["ssl", "network", "protocol"])
# Drops that recur (a minute of the hour, a fixed period), at random, and repeated times.
drop_times = st.one_of(
    st.lists(st.floats(0.0, 3 * 86400.0), max_size=60),
    st.builds(
        lambda minute, jitter, hours: [
            h * HOUR + minute * 60.0 + jitter[i] for i, h in enumerate(hours)
        ],
        st.integers(0, 59),
        st.lists(st.floats(-90.0, 90.0), min_size=40, max_size=40),
        st.lists(st.integers(0, 200), max_size=40),
    ),
    st.builds(
        lambda start, period, n: [start + k * period for k in range(n)],
        st.floats(0.0, 1e5),
        st.floats(0.5, 5000.0),
        st.integers(0, 60),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    times=drop_times,
    labels=st.lists(kinds, min_size=60, max_size=60),
    size=st.integers(4, 40),
    min_hits=st.integers(2, 6),
    noise=st.lists(st.floats(0.0, 3 * 86400.0), max_size=10),
)
def test_tracker_agrees_with_the_batch_detector(
    times: list[float], labels: list[str], size: int, min_hits: int, noise: list[float]
) -> None:
    tracker = DropTracker(size, min_hits=min_hits)
    buffer: list[tuple[float, str]] = []
    for i, t in enumerate([*times, *noise]):
        drop = (t, labels[i % len(labels)])
        tracker.add(*drop)
        buffer = [*buffer, drop][-size:]
        assert list(tracker.drops) == buffer
        expected = detect_patterns(buffer, min_hits=min_hits)
        assert tracker.reports() == expected
        known = {report.key for report in expected}
        assert tracker.reports(skip=known) == []


# Drops on minute boundaries and around the hour's wrap (59 -> 0), where a window's buckets
# and the unrolled phases meet, some at the very same phase.
edge_times = st.lists(
    st.builds(
        lambda hour, minute, offset: hour * HOUR + minute * 60.0 + offset,
        st.integers(0, 30),
        st.sampled_from([0, 1, 2, 3, 57, 58, 59]),
        st.sampled_from([0.0, 1e-9, 0.5, 59.5, 60.0 - 1e-9, 120.0, -1e-9]),
    ),
    max_size=70,
)


@settings(max_examples=300, deadline=None)
@given(
    times=st.one_of(drop_times, edge_times),
    labels=st.lists(kinds, min_size=60, max_size=60),
    size=st.integers(4, 40),
    min_hits=st.integers(2, 6),
    skip_hourly=st.booleans(),
    skip_period=st.booleans(),
)
def test_tracker_with_known_patterns_agrees_with_the_batch_detector(
    times: list[float],
    labels: list[str],
    size: int,
    min_hits: int,
    skip_hourly: bool,
    skip_period: bool,
) -> None:
    """Drop by drop, with evictions, and with some of the patterns already known (the
    tracker then skips work for them): what the batch detector finds, less the known ones."""
    tracker = DropTracker(size, min_hits=min_hits)
    buffer: list[tuple[float, str]] = []
    known: set[tuple[str, int]] = set()
    for i, t in enumerate(times):
        drop = (t, labels[i % len(labels)])
        tracker.add(*drop)
        buffer = [*buffer, drop][-size:]
        expected = detect_patterns(buffer, min_hits=min_hits)
        assert tracker.reports(skip=known) == [r for r in expected if r.key not in known]
        for report in expected:
            if (report.kind == "period" and skip_period) or (
                report.kind == "minute_of_hour" and skip_hourly
            ):
                known.add(report.key)


def test_a_minute_of_hour_pattern_is_found_incrementally() -> None:
    tracker = DropTracker(256)
    found: list[PatternReport] = []
    for hour in range(12):
        tracker.add(hour * HOUR + 17 * 60.0, "ssl")
        found += tracker.reports(skip={r.key for r in found})
    assert [(r.kind, r.minute) for r in found] == [("minute_of_hour", 17)]


def _episodes(parts: list[tuple[int, bool, int, float]]) -> list[float]:
    """Bursts of drops seconds apart within one hour, and runs of drops hours apart (at
    minute 17, jittered), one after the other."""
    times: list[float] = []
    hour = 0
    for gap, burst, count, jitter in parts:
        hour += gap
        for k in range(count):
            if burst:
                times.append(hour * HOUR + 17 * 60.0 + k * 7.0 + jitter)
            else:
                hour += 1
                times.append(hour * HOUR + 17 * 60.0 + jitter * k)
    return times


# A buffer of bursts spans fewer than min_hits hours (the tracker lets its minute buckets go);
# drops hours apart widen it again (it rebuilds them when the minute-of-hour test next runs).
episode_times = st.lists(
    st.tuples(st.integers(0, 5), st.booleans(), st.integers(1, 25), st.floats(-30.0, 30.0)),
    max_size=8,
).map(_episodes)


@settings(max_examples=200, deadline=None)
@given(
    times=episode_times,
    labels=st.lists(kinds, min_size=60, max_size=60),
    size=st.integers(4, 30),
    min_hits=st.integers(2, 6),
)
def test_tracker_agrees_across_bursts_and_spread_drops(
    times: list[float], labels: list[str], size: int, min_hits: int
) -> None:
    tracker = DropTracker(size, min_hits=min_hits)
    buffer: list[tuple[float, str]] = []
    for i, t in enumerate(times):
        drop = (t, labels[i % len(labels)])
        tracker.add(*drop)
        buffer = [*buffer, drop][-size:]
        expected = detect_patterns(buffer, min_hits=min_hits)
        assert tracker.reports() == expected
        assert tracker.reports(skip={report.key for report in expected}) == []
