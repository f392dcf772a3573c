"""The incremental drop tracker finds what the batch detector finds over the same buffer."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.fsm import detect_patterns
from regulator.fsm._patterns import HOUR, DropTracker

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


def test_a_minute_of_hour_pattern_is_found_incrementally() -> None:
    tracker = DropTracker(256)
    found = []
    for hour in range(12):
        tracker.add(hour * HOUR + 17 * 60.0, "ssl")
        found += tracker.reports(skip={r.key for r in found})
    assert [(r.kind, r.minute) for r in found] == [("minute_of_hour", 17)]
