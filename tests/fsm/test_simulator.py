"""`regulator simulate`: the real machine against scripted faults on a virtual clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from regulator.fsm import ConfigError, ConnectionConfig, load_schedule, simulate


@pytest.mark.spec("R3.5")
def test_hourly_day_reports_minute_17() -> None:
    result = simulate(load_schedule("hourly"))
    assert result.hours == 24.0
    assert [(p["kind"], p["minute"]) for p in result.patterns] == [("minute_of_hour", 17)]
    assert result.totals["failures"] == 24 and result.totals["alarms"] == 0
    assert any("event=pattern" in line and "minute 17" in line for line in result.lines)


@pytest.mark.spec("R1.3")
def test_outage_raises_one_alarm_and_resolves_it() -> None:
    result = simulate(load_schedule("outage"), ConnectionConfig(jitter=0.0))
    assert len(result.alarms) == 1 and len(result.resolutions) == 1
    alarm, resolution = result.alarms[0], result.resolutions[0]
    assert alarm["failures_in_window"] == 4
    # the server is back at 900 s; the client is live within one (capped) backoff and
    # healthy stable_after (10 s) later, which ends the episode (R1.3 as read in issue 16)
    assert 900.0 + 10.0 <= alarm["at"] + resolution["duration"] <= 900.0 + 60.0 + 10.0 + 0.5
    assert result.totals["final_state"] == "live"


@pytest.mark.spec("R1.1")
def test_flaky_tls_reconnects_after_every_bad_record_mac() -> None:
    result = simulate(load_schedule("flaky-tls"), ConnectionConfig(jitter=0.0), hours=0.25)
    assert result.totals["failures_by_kind"] == {"ssl": 22}
    assert result.totals["successes"] == 23
    assert all(r["delay"] == 1.0 for r in result.machine.stats()["history"])
    assert result.totals["availability"] > 0.95


@pytest.mark.spec("R1.3")
def test_flaky_tls_for_two_hours_raises_no_alarm() -> None:
    # issue 16: a drop every 40 s, each reconnect fine, used to raise 176 alarms in 2 h
    result = simulate(load_schedule("flaky-tls"), hours=2)
    assert result.totals["alarms"] == 0
    assert result.totals["drops"] == 179 and result.totals["failed_attempts"] == 0
    assert result.totals["failures_by_kind"] == {"ssl": 179}


@pytest.mark.spec("R1.3")
def test_an_accepted_then_dropped_link_backs_off_and_alarms_once() -> None:
    result = simulate(load_schedule("flapping"))
    # every attempt is accepted and dropped before it is healthy: failed attempts, one
    # episode, and the backoff grows to max_delay (10 attempts in any 5 minutes at most,
    # where the exchange bans at 300)
    assert result.totals["alarms"] == 1 and result.totals["resolved"] == 0
    assert result.totals["drops"] == 0
    assert result.totals["failed_attempts"] == result.totals["failures"]
    assert result.totals["max_attempts_per_5min"] <= 10
    # with stable_after 0 (live counts as healthy) the same link reconnects every ~1.7 s
    eager = simulate(load_schedule("flapping"), ConnectionConfig(stable_after=0.0))
    assert eager.totals["max_attempts_per_5min"] > 150


def test_random_schedule_is_reproducible_from_its_seed() -> None:
    a = simulate(load_schedule("random", seed=4), hours=6, seed=4)
    b = simulate(load_schedule("random", seed=4), hours=6, seed=4)
    assert a.lines == b.lines and a.totals["failures"] > 0


def test_schedule_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "mine"\nhours = 0.5\n'
        '[[fault]]\ntype = "rate_limit"\nat = 0\nduration = 20\nretry_after = 15\n'
        '[[fault]]\ntype = "half_open"\nat = 600\nduration = 100\n',
        encoding="utf-8",
    )
    result = simulate(load_schedule(str(path)), ConnectionConfig(jitter=0.0))
    history = result.machine.stats()["history"]
    assert history[0]["kind"] == "rate_limited" and history[0]["delay"] == 15.0
    timeouts = [r for r in history if r["kind"] == "timeout"]
    # half-open from 600 s: the next ping (<= 30 s later) goes unanswered for 10 s
    assert timeouts and 600.0 < timeouts[0]["at"] <= 600.0 + 30.0 + 10.0 + 0.5
    assert timeouts[0]["reason"] == "no pong within 10 s of ping"


def test_bad_schedule_files_list_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[fault]]\ntype = "meteor"\nat = -1\nkind = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_schedule(str(path))
    text = str(caught.value)
    assert "fault[0].type: must be one of" in text
    assert "fault[0].at: must be a finite number >= 0 (got -1)" in text
    assert "fault[0].kind: must be a failure kind (got 'x')" in text
