"""The simulator's inputs are validated and its faults are generated lazily: a window lookup
agrees with a scan of every window, and a day of one-second windows is never listed
(issue 17)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
from regulator.fsm import ConfigError, load_schedule, simulate
from regulator.fsm._simulator import MAX_STRIKES, Fault, Schedule, _World


def _schedule(*faults: Fault, hours: float = 24.0) -> Schedule:
    return Schedule(name="t", description="t", hours=hours, faults=faults)


@pytest.mark.spec("R4.4")
@pytest.mark.parametrize("hours", [math.nan, math.inf, -1.0, 0.0, 1e9])
def test_simulate_refuses_hours_outside_the_rule(hours: float) -> None:
    with pytest.raises(ConfigError, match=r"hours: must be a finite number > 0 and <= 8784"):
        simulate(load_schedule("flaky-tls"), hours=hours)


def test_a_schedule_asking_for_too_many_strikes_is_refused_before_running() -> None:
    tiny = _schedule(Fault(type="drop", at=0.0, every=1e-7))
    with pytest.raises(ConfigError, match=r"fault\[0\]: strikes .* at most 10,000,000") as e:
        simulate(tiny)
    assert f"{MAX_STRIKES:,}" in e.value.problems[0]


def test_fault_times_are_generated_lazily_and_counted_without_listing() -> None:
    fault = Fault(type="half_open", at=0.0, every=1.0, duration=0.5)
    assert fault.count(24 * 3600.0) == 86_400
    times = fault.times(1e12)  # a trillion seconds: only a generator, nothing listed
    assert [next(times) for _ in range(3)] == [0.0, 1.0, 2.0]


def test_window_lookup_agrees_with_a_scan_of_every_window() -> None:
    rng = random.Random(7)
    faults = [
        Fault(type="half_open", at=rng.uniform(0, 500), duration=rng.uniform(1, 90))
        for _ in range(40)
    ]
    faults += [
        Fault(type="half_open", at=13.0, every=37.0, until=2000.0, duration=5.0),
        Fault(type="half_open", at=100.0, every=3.0, duration=7.0),  # windows overlap
        Fault(type="outage", at=1.0, every=1.0, duration=0.5),
    ]
    end = 3000.0
    world = _World(_schedule(*faults), end)
    windows = {
        kind: [(t, t + f.duration) for f in faults if f.type == kind for t in f.times(end)]
        for kind in ("half_open", "outage")
    }
    for _ in range(3000):
        t = rng.uniform(0, end)
        for kind, spans in windows.items():
            expected = any(start <= t < stop for start, stop in spans)
            assert (world.active(kind, t) is not None) == expected, (kind, t)


def test_a_day_of_one_second_windows_runs(tmp_path: Path) -> None:
    path = tmp_path / "windows.toml"
    path.write_text(
        'hours = 24\n[[fault]]\ntype = "half_open"\nat = 0\nevery = 1\nduration = 0.5\n',
        encoding="utf-8",
    )
    result = simulate(load_schedule(str(path)))
    assert result.totals["simulated_hours"] == 24.0
    assert result.totals["attempts"] >= 1
