"""The recurring-failure detector: finds real patterns, stays quiet on random failures."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.fsm import detect_patterns

HOUR = 3600.0


@pytest.mark.spec("R3.5")
def test_a_drop_at_minute_17_of_every_hour_is_reported_as_minute_17() -> None:
    drops = [(h * HOUR + 17 * 60 + random.Random(h).uniform(-20, 20), "ssl") for h in range(24)]
    (report,) = detect_patterns(drops)
    assert report.kind == "minute_of_hour" and report.minute == 17
    assert report.hits == 24 and report.total == 24
    assert report.confidence > 0.9999
    assert report.kinds == (("ssl", 24),)
    assert "minute 17" in report.describe()


@pytest.mark.spec("R3.5")
def test_the_hourly_pattern_is_found_among_random_noise() -> None:
    rng = random.Random(5)
    drops = [(h * HOUR + 17 * 60 + 5, "ssl") for h in range(12)]
    drops += [(rng.uniform(0, 12 * HOUR), "network") for _ in range(20)]
    reports = detect_patterns(drops)
    assert [(r.kind, r.minute) for r in reports] == [("minute_of_hour", 17)]


@pytest.mark.spec("R3.5")
def test_a_fixed_period_is_reported() -> None:
    drops = [(100.0 + 40.0 * i, "ssl") for i in range(8)]
    (report,) = detect_patterns(drops)
    assert report.kind == "period" and report.period == pytest.approx(40.0)
    assert report.hits == 8


@pytest.mark.spec("R3.5")
@settings(max_examples=300)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(0, 250), days=st.integers(1, 7))
def test_no_false_alarm_on_failures_spread_at_random(seed: int, count: int, days: int) -> None:
    rng = random.Random(seed)
    drops = [(rng.uniform(0, days * 24 * HOUR), "ssl") for _ in range(count)]
    assert detect_patterns(drops) == []


@pytest.mark.spec("R3.5")
@settings(max_examples=100)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(0, 250))
def test_no_false_alarm_on_poisson_failures(seed: int, count: int) -> None:
    rng = random.Random(seed)
    t, drops = 0.0, []
    for _ in range(count):
        t += rng.expovariate(1 / 600.0)
        drops.append((t, "network"))
    assert detect_patterns(drops) == []


def test_too_few_drops_report_nothing() -> None:
    assert detect_patterns([(17 * 60.0 + h * HOUR, "ssl") for h in range(3)]) == []
