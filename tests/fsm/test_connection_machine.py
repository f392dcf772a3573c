"""ConnectionMachine, rule by rule, on an injected (virtual) clock."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest
from regulator.fsm import (
    CONNECTION_STATES,
    Connect,
    ConnectionConfig,
    ConnectionFailed,
    ConnectionHealthy,
    ConnectionMachine,
    Disconnect,
    GiveUp,
    HandshakeSucceeded,
    IllegalEventError,
    PongReceived,
    RaiseAlarm,
    ResolveAlarm,
    RestoreSubscriptions,
    SendPing,
    Start,
    StateChanged,
    Stop,
    Tick,
    TransportConnected,
    Wait,
    backoff_delay,
)

BAD_MAC = "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"


def of(actions: list[Any], kind: type) -> list[Any]:
    return [a for a in actions if isinstance(a, kind)]


class Harness:
    """Drives a machine the way an adapter would, on a virtual clock."""

    def __init__(self, **config: Any) -> None:
        self.machine = ConnectionMachine(ConnectionConfig(**config), rng=random.Random(1))
        self.now = 0.0
        self.log: list[Any] = []

    def send(self, event_type: type, **kwargs: Any) -> list[Any]:
        actions = self.machine.handle(event_type(now=self.now, **kwargs))
        self.log += actions
        return actions

    def at(self, t: float) -> list[Any]:
        self.now = t
        return self.send(Tick)

    def connect(self) -> list[Any]:
        if self.machine.state == "idle":
            self.send(Start)
        elif self.machine.state in ("backing_off", "alarmed"):
            self.at(self.machine.next_deadline or self.now)
        self.send(TransportConnected)
        return self.send(HandshakeSucceeded)

    def fail(self, kind: str = "ssl", reason: str = BAD_MAC, **kw: Any) -> list[Any]:
        return self.send(ConnectionFailed, kind=kind, reason=reason, **kw)


@pytest.mark.spec("R1.1")
def test_backoff_doubles_from_one_second_to_the_sixty_second_cap() -> None:
    h = Harness(jitter=0.0)
    h.connect()
    delays = []
    actions = h.fail()
    for _ in range(9):
        delays.append(of(actions, Wait)[0].delay)
        h.at(h.machine.next_deadline or 0.0)  # retry -> connecting
        actions = h.fail(kind="network", reason="refused")
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


@pytest.mark.spec("R1.1")
def test_bad_record_mac_on_a_live_connection_backs_off_and_reconnects() -> None:
    h = Harness(jitter=0.0)
    h.connect()
    h.now = 5.0
    actions = h.fail()
    assert of(actions, StateChanged)[0].target == "backing_off"
    assert of(actions, Wait) == [Wait(delay=1.0, until=6.0, attempt=2)]
    assert of(actions, Disconnect)
    assert h.machine.next_deadline == 6.0
    assert h.at(5.999) == []
    retry = h.at(6.0)
    assert of(retry, Connect) == [Connect(attempt=2, deadline=36.0)]


@pytest.mark.spec("R1.1")
@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.5, 0.9])
def test_jittered_delays_stay_within_bounds(jitter: float) -> None:
    cfg = ConnectionConfig(jitter=jitter)
    rng = random.Random(7)
    for n in range(40):
        for _ in range(50):
            delay = backoff_delay(cfg, n, rng.random())
            assert cfg.initial_delay * (1 - jitter) <= delay <= cfg.max_delay


def test_backoff_never_overflows() -> None:
    cfg = ConnectionConfig(backoff_factor=10.0, jitter=0.0)
    assert backoff_delay(cfg, 10**6) == 60.0


@pytest.mark.spec("R1.1")
def test_retry_after_sets_a_floor_above_max_delay() -> None:
    h = Harness(jitter=0.0)
    h.send(Start)
    actions = h.send(ConnectionFailed, kind="rate_limited", reason="HTTP 429", retry_after=120.0)
    assert of(actions, Wait)[0].delay == 120.0


@pytest.mark.spec("R1.3")
def test_a_ban_alarms_at_the_first_sighting() -> None:
    h = Harness(jitter=0.0, alarm_failures=3)
    h.send(Start)
    actions = h.send(ConnectionFailed, kind="banned", reason="HTTP 418", retry_after=300.0)
    assert h.machine.state == "alarmed"
    assert of(actions, Wait)[0].delay == 300.0
    assert of(actions, RaiseAlarm)[0].alarm.last_kind == "banned"
    assert not of(h.connect(), ResolveAlarm)  # live is not yet healthy (R1.3 as read)
    assert h.machine.state == "live"
    assert of(h.at(h.now + 10.0), ResolveAlarm)  # healthy after stable_after


@pytest.mark.spec("R1.2")
def test_ping_every_interval_and_pong_timeout_fails_as_timeout() -> None:
    h = Harness(ping_interval=30.0, pong_timeout=10.0, jitter=0.0, stable_after=0.0)
    h.connect()
    assert h.machine.next_deadline == 30.0
    assert h.at(29.9) == []
    assert h.at(30.0) == [SendPing(pong_deadline=40.0)]
    h.now = 30.2
    assert h.send(PongReceived) == []
    assert h.machine.stats()["last_rtt"] == pytest.approx(0.2)
    assert h.at(60.0) == [SendPing(pong_deadline=70.0)]
    actions = h.at(70.0)  # no pong: dead, not merely quiet
    change = of(actions, StateChanged)[0]
    assert (change.source, change.target) == ("live", "backing_off")
    assert h.machine.history[-1].kind == "timeout"
    assert h.machine.history[-1].reason == "no pong within 10 s of ping"


@pytest.mark.spec("R1.2")
def test_unsolicited_pong_is_counted_never_fatal() -> None:
    h = Harness()
    h.connect()
    assert h.send(PongReceived) == []
    assert h.machine.state == "live"
    assert h.machine.stats()["unsolicited_pongs"] == 1


@pytest.mark.spec("R1.3")
def test_more_than_three_failures_in_five_minutes_alarm_once_then_resolve_once() -> None:
    h = Harness(jitter=0.0)
    h.send(Start)
    alarms: list[Any] = []
    for i in range(6):
        actions = h.fail(kind="network", reason="refused")
        alarms += of(actions, RaiseAlarm)
        expected = "alarmed" if i >= 3 else "backing_off"
        assert h.machine.state == expected, i
        h.at(h.machine.next_deadline or 0.0)
    assert len(alarms) == 1
    alarm = alarms[0].alarm
    assert (alarm.failures_in_window, alarm.threshold, alarm.window) == (4, 3, 300.0)
    h.send(TransportConnected)
    # Changed deliberately (issue 16): the episode ends when a connection is healthy
    # (stable_after, default 10 s, or the host's ConnectionHealthy), not on reaching live.
    assert not of(h.send(HandshakeSucceeded), ResolveAlarm)
    resolved = of(h.at(h.now + 10.0), ResolveAlarm)
    assert len(resolved) == 1
    assert resolved[0].resolution.failures_since_raised == 2
    assert h.machine.stats()["alarm_count"] == 1


@pytest.mark.spec("R1.3")
def test_failures_spread_wider_than_the_window_do_not_alarm() -> None:
    h = Harness(jitter=0.0)
    h.connect()
    for t in (100.0, 250.0, 400.0, 550.0, 700.0):  # 150 s apart: never 4 within 300 s
        h.now = t
        assert not of(h.fail(), RaiseAlarm)
        h.connect()
    assert h.machine.stats()["alarm_count"] == 0


@pytest.mark.spec("R1.3")
def test_planned_server_close_reconnects_at_once_and_does_not_count() -> None:
    h = Harness(jitter=0.0, alarm_failures=0)
    h.connect()
    actions = h.fail(kind="server_closed", reason="serverShutdown")
    assert of(actions, Wait)[0].delay == 0.0
    assert not of(actions, RaiseAlarm)
    assert h.machine.consecutive_failures == 0


@pytest.mark.spec("R1.4")
def test_live_restores_subscriptions_and_healthy_resets_the_counter() -> None:
    # Changed deliberately (issue 16): the counter resets when the connection is healthy
    # (here: the host vouches for it, as BinanceStream does once subscriptions are verified).
    h = Harness(jitter=0.0)
    h.send(Start)
    h.fail(kind="network")
    h.at(1.0)
    h.fail(kind="network")
    assert h.machine.consecutive_failures == 2
    actions = h.connect()
    assert of(actions, RestoreSubscriptions) == [RestoreSubscriptions(attempt=3)]
    assert h.machine.consecutive_failures == 2  # live, not yet healthy
    assert h.send(ConnectionHealthy) == []
    assert h.machine.consecutive_failures == 0
    assert h.send(ConnectionHealthy) == []  # idempotent while live
    h.now += 1
    assert of(h.fail(), Wait)[0].delay == 1.0  # back to the initial delay


@pytest.mark.spec("R1.4")
def test_stable_after_zero_makes_live_healthy_at_once() -> None:
    h = Harness(jitter=0.0, stable_after=0.0)
    h.send(Start)
    h.fail(kind="network")
    h.connect()
    assert h.machine.consecutive_failures == 0


def test_connection_healthy_is_accepted_only_while_live() -> None:
    h = Harness()
    h.send(Start)
    before = h.machine.snapshot()
    with pytest.raises(IllegalEventError):
        h.send(ConnectionHealthy)
    assert h.machine.snapshot() == before


@pytest.mark.spec("R1.3")
def test_drops_of_healthy_connections_never_alarm() -> None:
    # issue 16: a drop every 40 s, each reconnect fine: drops, not reconnect failures
    h = Harness(ping_interval=1000.0)
    h.connect()
    for _ in range(180):
        h.at(h.now + 40.0)
        actions = h.fail()
        assert not of(actions, RaiseAlarm)
        assert h.machine.history[-1].attempt_failed is False
        h.connect()
    stats = h.machine.stats()
    assert (stats["alarm_count"], stats["failed_attempts"], stats["drops"]) == (0, 0, 180)


@pytest.mark.spec("R1.3")
def test_accepted_then_dropped_attempts_are_failed_attempts_and_alarm_once() -> None:
    h = Harness(jitter=0.0, ping_interval=1000.0)
    h.connect()
    h.at(60.0)  # healthy
    raised: list[Any] = []
    for _ in range(8):  # accepted, then dropped 2 s later: never healthy
        h.now += 2.0
        actions = h.fail(kind="protocol", reason="close 1008: too many requests")
        raised += of(actions, RaiseAlarm)
        h.connect()
    # the first drop was of a healthy connection; the next 7 are failed attempts, 4 of them
    # within 300 s from the 5th failure on: exactly one alarm for the episode
    assert len(raised) == 1
    assert raised[0].alarm.failures_in_window == 4
    stats = h.machine.stats()
    assert (stats["failed_attempts"], stats["drops"], stats["alarm_count"]) == (7, 1, 1)
    assert [r.attempt_failed for r in h.machine.history][-8:] == [False] + [True] * 7
    resolved = of(h.at(h.now + 10.0), ResolveAlarm)  # stays up: healthy, episode over
    assert len(resolved) == 1


@pytest.mark.spec("R1.3")
def test_four_refused_attempts_in_five_minutes_raise_exactly_one_alarm() -> None:
    h = Harness(jitter=0.0)
    h.send(Start)
    raised = []
    for _ in range(4):
        raised += of(h.fail(kind="network", reason="connection refused"), RaiseAlarm)
        h.at(h.machine.next_deadline or h.now)
    assert len(raised) == 1
    assert raised[0].alarm.failures_in_window == 4


@pytest.mark.spec("R3.1")
def test_wall_time_stamps_records_alarms_and_resolutions() -> None:
    h = Harness(jitter=0.0, alarm_failures=0)
    wall = 1_767_571_200.0  # 2026-01-05 00:00 UTC
    h.machine.handle(Start(now=0.0, wall_time=wall))
    actions = h.fail(kind="network", reason="refused", wall_time=wall + 0.5)
    h.now = 0.5
    assert h.machine.history[-1].wall_time == wall + 0.5
    assert of(actions, RaiseAlarm)[0].alarm.wall_at == wall + 0.5
    h.connect()
    resolved = of(h.at(h.now + 10.0), ResolveAlarm)[0].resolution
    assert resolved.raised_wall_at == wall + 0.5
    assert resolved.wall_at == pytest.approx(wall + h.now)
    assert h.machine.stats(now=h.now)["wall_time"] == pytest.approx(wall + h.now)


@pytest.mark.spec("R1.4")
def test_with_stable_after_a_flapping_link_keeps_backing_off() -> None:
    h = Harness(jitter=0.0, stable_after=10.0)
    h.connect()
    delays = []
    for _ in range(4):
        h.now += 2.0  # drops 2 s after each reconnect: never stable
        delays.append(of(h.fail(), Wait)[0].delay)
        h.connect()
    assert delays == [1.0, 2.0, 4.0, 8.0]
    h.at(h.now + 10.0)  # stays up for 10 s: recovered
    assert h.machine.consecutive_failures == 0
    h.now += 1
    assert of(h.fail(), Wait)[0].delay == 1.0


@pytest.mark.spec("R1.5")
def test_handshake_is_bounded_by_one_deadline_from_the_connect() -> None:
    h = Harness(handshake_timeout=30.0, jitter=0.0)
    actions = h.send(Start)
    assert of(actions, Connect)[0].deadline == 30.0
    h.now = 12.0
    h.send(TransportConnected)  # TLS stalls from here
    assert h.machine.next_deadline == 30.0
    actions = h.at(31.0)
    assert of(actions, StateChanged)[0].source == "handshaking"
    record = h.machine.history[-1]
    assert (record.kind, record.at, record.state) == ("timeout", 30.0, "handshaking")
    assert record.reason == "handshake not completed within 30 s"


@pytest.mark.spec("R3.1")
def test_failure_record_keeps_stack_state_attempt_and_time() -> None:
    h = Harness(jitter=0.0)
    h.connect()
    h.now = 42.0
    h.fail(detail="Traceback (most recent call last):\n  ...\nssl.SSLError: [SSL: " + BAD_MAC + "]")
    record = h.machine.history[-1]
    assert record.at == 42.0
    assert (record.kind, record.reason, record.state, record.attempt) == ("ssl", BAD_MAC, "live", 1)
    assert record.detail.startswith("Traceback")
    assert record.consecutive == 1 and record.delay == 1.0 and record.since_previous is None
    h.connect()
    h.now = 50.0
    h.fail()
    assert h.machine.history[-1].since_previous == 8.0
    assert h.machine.stats()["last_failure"]["reason"] == BAD_MAC


@pytest.mark.spec("R3.3")
def test_history_keeps_the_last_ten_failures_only() -> None:
    h = Harness(jitter=0.0)
    h.send(Start)
    for i in range(25):
        h.fail(kind="network", reason=f"failure {i}")
        h.at(h.machine.next_deadline or 0.0)
    history = h.machine.history
    assert len(history) == 10
    assert [r.reason for r in history] == [f"failure {i}" for i in range(15, 25)]
    ats = [r.at for r in history]
    assert [r.since_previous for r in history[1:]] == pytest.approx(
        [b - a for a, b in itertools.pairwise(ats)]
    )


def test_fatal_failure_closes_at_once_with_its_reason() -> None:
    h = Harness()
    h.send(Start)
    actions = h.fail(kind="fatal", reason="certificate verify failed")
    assert of(actions, GiveUp) == [GiveUp(kind="fatal", reason="fatal: certificate verify failed")]
    assert h.machine.state == "closed" and not of(actions, Wait)


def test_max_retries_gives_up_after_that_many_retries() -> None:
    h = Harness(max_retries=2, jitter=0.0)
    h.send(Start)
    h.fail(kind="network")
    h.at(h.now + 1)
    h.fail(kind="network")
    h.at(h.now + 2)
    assert h.machine.state == "connecting"
    actions = h.fail(kind="network", reason="refused")
    assert h.machine.state == "closed"
    assert of(actions, GiveUp)[0].reason == "network: refused"
    assert h.machine.stats()["close_reason"] == "network: refused"


def test_illegal_events_raise_and_change_nothing() -> None:
    h = Harness()
    before = h.machine.snapshot()
    for event in (TransportConnected, HandshakeSucceeded, PongReceived):
        with pytest.raises(IllegalEventError, match="cannot be handled in state 'idle'"):
            h.send(event)
    with pytest.raises(IllegalEventError):
        h.fail()
    assert h.machine.snapshot() == before


def test_closed_is_absorbing_and_stop_is_idempotent() -> None:
    h = Harness()
    h.connect()
    assert of(h.send(Stop), Disconnect)
    assert h.send(Stop) == []
    assert h.at(10_000.0) == []
    with pytest.raises(IllegalEventError):
        h.send(Start)
    assert h.machine.state == "closed"


def test_time_may_not_go_backwards() -> None:
    h = Harness()
    h.at(10.0)
    h.now = 5.0
    with pytest.raises(ValueError, match="must not go backwards"):
        h.send(Start)


def test_bad_event_values_are_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="kind: must be one of ssl, network"):
        ConnectionFailed(now=0.0, kind="oops")
    with pytest.raises(ValueError, match="now: must be a real number"):
        Tick(now="soon")


def test_snapshot_is_json_and_restores_exactly() -> None:
    h = Harness(jitter=0.0)
    h.connect()
    h.now = 3.0
    h.fail()
    h.at(4.0)
    data = json.loads(json.dumps(h.machine.snapshot()))
    restored = ConnectionMachine.restore(data, h.machine.config)
    assert restored.state == h.machine.state
    assert restored.snapshot() == h.machine.snapshot()
    shifted = ConnectionMachine.restore(data, h.machine.config, shift=1000.0)
    assert shifted.next_deadline == (h.machine.next_deadline or 0) + 1000.0
    shifted.handle(TransportConnected(now=1004.5))
    assert shifted.state == "handshaking"


def test_stats_expose_the_counters_users_read() -> None:
    h = Harness(jitter=0.0)
    h.connect()
    h.now = 10.0
    h.fail()
    h.connect()
    stats = h.machine.stats(now=20.0)
    assert stats["total_attempts"] == 2 and stats["successes"] == 2 and stats["failures"] == 1
    assert stats["success_rate"] == 1.0
    assert stats["failures_by_kind"] == {"ssl": 1}
    assert set(stats["time_in_state"]) == set(CONNECTION_STATES)
    assert stats["time_in_state"]["live"] == pytest.approx(10.0 + 9.0)
    assert stats["time_in_state"]["backing_off"] == pytest.approx(1.0)


@pytest.mark.spec("R1.3")
def test_a_resolved_episode_is_not_counted_again() -> None:
    h = Harness(jitter=0.0, ping_interval=1000.0)
    h.send(Start)
    for _ in range(4):  # four refused attempts: the episode's alarm
        h.fail(kind="network", reason="refused")
        h.at(h.machine.next_deadline or h.now)
    h.send(TransportConnected)
    h.send(HandshakeSucceeded)
    assert of(h.send(ConnectionHealthy), ResolveAlarm)
    h.now += 1.0
    h.fail(kind="ssl")  # a drop of the healthy connection
    h.at(h.machine.next_deadline or h.now)
    raised = of(h.fail(kind="network", reason="refused"), RaiseAlarm)
    assert not raised  # one failed attempt after the recovery, not five in the window
    for _ in range(3):
        h.at(h.machine.next_deadline or h.now)
        raised += of(h.fail(kind="network", reason="refused"), RaiseAlarm)
    assert len(raised) == 1 and raised[0].alarm.failures_in_window == 4  # a new episode


def _host_loop(machine: ConnectionMachine, refusals: int) -> list[tuple[str, float]]:
    """The straightforward host loop of docs/examples/embed_connection.py: take the actions
    one by one, sleep on Wait (the clock jumps to ``until``), refuse the first connects."""
    now = 0.0
    seen: list[tuple[str, float]] = []
    pending = machine.handle(Start(now=now))
    while pending:
        action = pending.pop(0)
        if isinstance(action, Connect):
            if refusals:
                refusals -= 1
                seen.append(("failed", now))
                pending += machine.handle(
                    ConnectionFailed(now=now, kind="network", reason="connection refused")
                )
            else:
                pending += machine.handle(TransportConnected(now=now))
                pending += machine.handle(HandshakeSucceeded(now=now))
        elif isinstance(action, Wait):
            now = action.until
            pending += machine.handle(Tick(now=now))
        elif isinstance(action, RaiseAlarm):
            seen.append(("alarm", now))
        elif isinstance(action, RestoreSubscriptions):
            seen.append(("live", now))
            pending += machine.handle(Stop(now=now + 20.0))
    return seen


@pytest.mark.spec("R1.3")
@pytest.mark.parametrize("refusals", [4, 6])
def test_a_host_that_sleeps_on_wait_raises_the_alarm_when_the_attempt_fails(
    refusals: int,
) -> None:
    machine = ConnectionMachine(ConnectionConfig(jitter=0.0))
    seen = _host_loop(machine, refusals)
    failed_at = [t for what, t in seen if what == "failed"]
    # the fourth failed attempt (t = 0 + 1 + 2 + 4 = 7) raises it, at that moment; with the
    # actions in the old order [..., Wait, RaiseAlarm] the loop raised it 8 s late
    assert failed_at[:4] == [0.0, 1.0, 3.0, 7.0]
    assert [t for what, t in seen if what == "alarm"] == [7.0]
    assert seen.index(("alarm", 7.0)) == seen.index(("failed", 7.0)) + 1


@pytest.mark.spec("R1.3")
def test_a_failure_ends_with_its_wait_or_give_up_after_its_notices() -> None:
    """The order handle() documents: StateChanged, transport actions, notices, Wait/GiveUp."""
    h = Harness(jitter=0.0, max_retries=5)
    h.send(Start)
    orders = []
    for _ in range(6):
        actions = h.fail(kind="network", reason="refused")
        orders.append([type(a).__name__ for a in actions])
        if h.machine.state != "closed":
            h.at(h.machine.next_deadline or h.now)
    assert orders[0] == ["StateChanged", "Disconnect", "Wait"]
    assert orders[3] == ["StateChanged", "Disconnect", "RaiseAlarm", "Wait"]
    assert orders[-1] == ["StateChanged", "Disconnect", "GiveUp"]
    # a healthy connection's drops: the pattern report, too, comes before the Wait
    h = Harness(jitter=0.0, stable_after=0.0)
    reported = 0
    for i in range(24):  # a drop at minute 17 of every hour
        h.connect()
        h.now = i * 3600.0 + 17 * 60.0
        names = [type(a).__name__ for a in h.fail()]
        assert names[-1] == "Wait"
        if "PatternDetected" in names:
            reported += 1
            assert names.index("PatternDetected") < names.index("Wait")
    assert reported
