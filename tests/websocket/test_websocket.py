"""ResilientWebSocket against real faults: a TLS WebSocket server and a fault proxy on
127.0.0.1, on asyncio and on trio."""

from __future__ import annotations

import gc
import json
import logging
import ssl
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from _faultbed import Certs, ConnectionSettings, FaultBed
from regulator.adapters.websocket import (
    CallbackNotifier,
    ConnectionClosedError,
    ResilientWebSocket,
)
from regulator.fsm import Alarm, AlarmResolved, ConnectionConfig, parse_kv

pytestmark = pytest.mark.anyio
BAD_MAC = "DECRYPTION_FAILED_OR_BAD_RECORD_MAC"
FAST = ConnectionSettings(
    initial_delay=0.05,
    max_delay=0.2,
    jitter=0.0,
    ping_interval=0.2,
    pong_timeout=0.2,
    handshake_timeout=0.5,
    alarm_failures=3,
    alarm_window=5.0,
    # healthy after 0.3 s live: resolves alarms and resets the counter (R1.3, R1.4)
    stable_after=0.3,
)


@pytest.fixture
def bed(certs: Certs) -> Iterator[FaultBed]:
    with FaultBed(certs=certs) as running:
        yield running


def client(bed: FaultBed, **kwargs: Any) -> ResilientWebSocket:
    config = kwargs.pop("config", ConnectionConfig(**FAST))
    return ResilientWebSocket(
        bed.url, config=config, ssl_context=bed.certs.client_context(), **kwargs
    )


async def take(ws: ResilientWebSocket, n: int, timeout: float = 5.0) -> list[int]:
    seqs = []
    with anyio.fail_after(timeout):
        async for raw in ws:
            message = json.loads(raw)
            if "seq" in message:  # skip replies to requests
                seqs.append(message["seq"])
            if len(seqs) >= n:
                break
    return seqs


async def drain(ws: ResilientWebSocket) -> None:
    async for _ in ws:
        pass


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_streams_messages_in_order(bed: FaultBed) -> None:
    async with client(bed) as ws:
        seqs = await take(ws, 20)
        assert ws.state == "live"
    assert seqs == list(range(seqs[0], seqs[0] + 20))


class Recorder:
    """A host: counts on_connect calls and subscribes on every (re)connect."""

    def __init__(self) -> None:
        self.connects = 0

    async def __call__(self, ws: ResilientWebSocket) -> None:
        self.connects += 1
        await ws.send(
            json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@kline_1m"], "id": self.connects})
        )


async def consume(
    ws: ResilientWebSocket, seqs: list[int], until: Any, timeout: float = 8.0
) -> None:
    with anyio.fail_after(timeout):
        async for raw in ws:
            message = json.loads(raw)
            if "seq" in message:
                seqs.append(message["seq"])
            if until():
                return


def missed_during_one_outage(seqs: list[int], before: int) -> list[int]:
    """No duplicates, no reordering; what is missing (if anything: the bed's thread may not
    tick during a fast reconnect) is one contiguous run after ``before``."""
    assert seqs == sorted(set(seqs)), "duplicated or reordered messages"
    missing = sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs))
    if missing:
        assert missing == list(range(missing[0], missing[-1] + 1)), "more than one gap"
        assert missing[0] > before
    return missing


@pytest.mark.spec("R1.1")
@pytest.mark.spec("R1.4")
@pytest.mark.spec("R3.1")
async def test_bad_record_mac_reconnects_resubscribes_and_resumes(bed: FaultBed) -> None:
    host = Recorder()
    seqs: list[int] = []
    async with client(bed, on_connect=host) as ws:
        await consume(ws, seqs, lambda: len(seqs) >= 10)
        before = seqs[-1]
        bed.flip_byte()
        await consume(ws, seqs, lambda: host.connects >= 2 and len(seqs) >= 40)
        await wait_for(lambda: len(bed.server.subscriptions) == 2)  # restored after the reconnect
        stats = ws.get_connection_stats()
    record = stats["failure_history"][0]
    assert (record["kind"], record["reason"], record["state"]) == ("ssl", BAD_MAC, "live")
    assert BAD_MAC in record["detail"] and "Traceback" in record["detail"]
    assert record["delay"] == 0.05 and record["attempt"] == 1
    assert stats["reconnect_statistics"]["successes"] == 2
    missed = missed_during_one_outage(seqs, before)
    assert not missed or seqs[-1] > missed[-1]  # the feed flows again after the gap


@pytest.mark.spec("R1.1")
async def test_reset_is_a_network_failure_and_recovers(bed: FaultBed) -> None:
    host = Recorder()
    seqs: list[int] = []
    async with client(bed, on_connect=host) as ws:
        await consume(ws, seqs, lambda: len(seqs) >= 5)
        before = seqs[-1]
        bed.reset()
        await consume(ws, seqs, lambda: host.connects >= 2 and len(seqs) >= 30)
        stats = ws.get_connection_stats()
    assert stats["failure_history"][0]["kind"] == "network"
    missed_during_one_outage(seqs, before)


@pytest.mark.spec("R1.2")
async def test_half_open_link_is_detected_by_the_missing_pong(bed: FaultBed) -> None:
    async with client(bed) as ws:
        await take(ws, 3)
        bed.black_hole()
        started = anyio.current_time()
        await wait_for(lambda: ws.state != "live", timeout=5)
        detected = anyio.current_time() - started
        bed.black_hole(False)
        await wait_for(lambda: ws.state == "live", timeout=5)
        record = ws.get_connection_stats()["failure_history"][0]
    assert record["kind"] == "timeout" and record["reason"] == "no pong within 0.2 s of ping"
    assert detected <= FAST["ping_interval"] + FAST["pong_timeout"] + 0.3


async def test_a_consumer_reading_a_link_that_dies_gets_the_next_connections_messages(
    bed: FaultBed,
) -> None:
    # The consumer waits in receive() and so reads the socket itself; when the link goes
    # silent (the pong never comes) the connection ends under that read, which must end too:
    # the consumer then gets what the next connection brings.
    got: list[int] = []
    async with client(bed) as ws:
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for raw in ws:
                    message = json.loads(raw)
                    if "seq" in message:
                        got.append(message["seq"])

            tg.start_soon(consume)
            await wait_for(lambda: len(got) >= 3)
            bed.black_hole()
            await wait_for(lambda: ws.state != "live")
            bed.black_hole(False)
            await wait_for(lambda: ws.state == "live")
            seen = len(got)
            await wait_for(lambda: len(got) >= seen + 20)
            tg.cancel_scope.cancel()
        stats = ws.get_connection_stats()
    assert stats["reconnect_statistics"]["successes"] >= 2
    assert stats["messages_received"] == len(got) + stats["messages_buffered"]


@pytest.mark.spec("R1.5")
async def test_stalled_handshake_fails_at_the_handshake_timeout(bed: FaultBed) -> None:
    bed.stall_handshakes()
    config = ConnectionConfig(
        **ConnectionSettings(
            {**FAST, "handshake_timeout": 0.4, "initial_delay": 5.0, "max_delay": 5.0}
        )
    )
    async with client(bed, config=config) as ws:
        started = anyio.current_time()
        await wait_for(lambda: ws.get_connection_stats()["failure_history"], timeout=3)
        elapsed = anyio.current_time() - started
        record = ws.get_connection_stats()["failure_history"][0]
    assert record["kind"] == "timeout"
    assert record["state"] == "handshaking"  # TCP was up; TLS never finished
    assert record["reason"] == "handshake not completed within 0.4 s"
    assert 0.35 <= elapsed <= 0.4 + 0.5
    gc.collect()  # a socket leaked by the cancelled TLS setup would warn (an error) here


@pytest.mark.spec("R1.3")
async def test_failure_burst_raises_one_alarm_and_recovery_one_resolution(
    bed: FaultBed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "regulator.connection")
    notices: list[Any] = []
    async with client(bed, notifiers=[CallbackNotifier(notices.append)]) as ws:
        await take(ws, 3)
        bed.refuse_connections()
        await wait_for(lambda: ws.get_connection_stats()["reconnect_statistics"]["failures"] >= 6)
        assert ws.state == "alarmed"
        bed.accept_connections()
        await wait_for(lambda: ws.state == "live")
        await wait_for(lambda: len(notices) >= 2)
        stats = ws.get_connection_stats()
    assert [type(n) for n in notices] == [Alarm, AlarmResolved]
    assert notices[0].failures_in_window == 4 and notices[0].threshold == 3
    errors = [
        r for r in caplog.records if r.levelno == logging.ERROR and "event=alarm" in r.getMessage()
    ]
    assert len(errors) == 1
    assert stats["reconnect_statistics"]["alarm_count"] == 1
    assert stats["reconnect_statistics"]["alarms_resolved"] == 1


async def test_server_pings_answered_while_the_consumer_is_slow(bed: FaultBed) -> None:
    bed.server.ping_every = 0.05
    async with client(bed) as ws:
        started = anyio.current_time()
        with anyio.fail_after(10):
            async for _ in ws:
                await anyio.sleep(0.2)  # far slower than the 5 ms feed
                if anyio.current_time() - started > 1.5:
                    break
        stats = ws.get_connection_stats()
    assert stats["reconnect_statistics"]["failures"] == 0
    assert stats["messages_received"] > 100  # the reader kept reading


async def test_unsolicited_pong_does_not_end_the_session(bed: FaultBed) -> None:
    async with client(bed) as ws:
        await take(ws, 3)
        bed.stray_pong()
        await wait_for(lambda: ws.get_connection_stats()["unsolicited_pongs"] >= 1)
        await take(ws, 20)
        stats = ws.get_connection_stats()
    assert stats["reconnect_statistics"]["failures"] == 0


async def test_untrusted_certificate_is_fatal_not_retried(bed: FaultBed) -> None:
    stranger = ssl.create_default_context()
    Certs().ca.configure_trust(stranger)  # trusts some other CA
    ws = ResilientWebSocket(bed.url, config=ConnectionConfig(**FAST), ssl_context=stranger)
    async with ws:
        with (
            anyio.fail_after(5),
            pytest.raises(ConnectionClosedError, match="certificate verify failed"),
        ):
            await drain(ws)
    stats = ws.get_connection_stats()
    assert stats["state"] == "closed"
    assert stats["reconnect_statistics"]["total_attempts"] == 1
    assert stats["failure_history"][0]["kind"] == "fatal"


def test_verification_cannot_be_turned_off() -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ValueError, match="certificate verification must stay on"):
        ResilientWebSocket("wss://127.0.0.1:1/x", ssl_context=context)


async def test_leaving_the_context_closes_1000_and_leaves_no_task(
    bed: FaultBed, anyio_backend: str
) -> None:
    tasks_before = _task_count(anyio_backend)
    async with client(bed) as ws:
        await take(ws, 3)
        started = anyio.current_time()
    elapsed = anyio.current_time() - started
    assert elapsed < 1.0
    assert _task_count(anyio_backend) == tasks_before
    await wait_for(lambda: bed.server.close_codes, timeout=3)
    assert bed.server.close_codes == [1000]
    assert ws.state == "closed"


def _task_count(backend: str) -> int:
    if backend == "asyncio":
        import asyncio

        return len(asyncio.all_tasks())
    import trio

    return len(trio.lowlevel.current_task().child_nurseries)


async def test_429_with_retry_after_is_honoured(bed: FaultBed) -> None:
    bed.refuse_upgrades(429, retry_after=1)
    async with client(bed) as ws:
        await wait_for(lambda: ws.state == "live", timeout=5)
        record = ws.get_connection_stats()["failure_history"][0]
    assert (record["kind"], record["reason"], record["delay"]) == ("rate_limited", "HTTP 429", 1.0)


async def test_planned_close_reconnects_at_once_without_counting(bed: FaultBed) -> None:
    async with client(bed) as ws:
        await take(ws, 3)
        bed.close_all(1012, "service restart")
        await wait_for(lambda: ws.get_connection_stats()["reconnect_statistics"]["successes"] >= 2)
        stats = ws.get_connection_stats()
    record = stats["failure_history"][0]
    assert record["kind"] == "server_closed" and record["delay"] == 0.0
    assert stats["reconnect_statistics"]["consecutive_failures"] == 0


async def test_oversized_message_fails_as_protocol(bed: FaultBed) -> None:
    async with client(bed, max_message_bytes=10_000) as ws:
        await take(ws, 2)
        bed.send_all("x" * 50_000)
        await wait_for(lambda: ws.get_connection_stats()["failure_history"], timeout=5)
        record = ws.get_connection_stats()["failure_history"][0]
    assert record["kind"] == "protocol"
    assert "max_message_bytes=10000" in record["reason"]


async def test_secrets_in_the_url_never_reach_stats_or_logs(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "regulator.connection")
    key = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
    url = f"wss://127.0.0.1:9/ws/{key}?token=hunter2&x=1"
    config = ConnectionConfig(**ConnectionSettings({**FAST, "max_retries": 0}))
    async with ResilientWebSocket(url, config=config, ssl_context=certs.client_context()) as ws:
        await wait_for(lambda: ws.state == "closed")
    text = json.dumps(ws.get_connection_stats()) + "\n".join(r.getMessage() for r in caplog.records)
    assert key not in text and "hunter2" not in text
    assert ws.get_connection_stats()["url"] == "wss://127.0.0.1:9/ws/***?token=***&x=1"
    # the failure line's stack (exc_info, R3.1) is formatted from its redacted text
    formatted = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert "Traceback" in formatted
    assert key not in formatted and "hunter2" not in formatted


@pytest.mark.spec("R5.2")
async def test_connection_log_lines_are_key_value(
    bed: FaultBed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "regulator.connection")
    async with client(bed, name="eth") as ws:
        await take(ws, 3)
        bed.flip_byte()
        await wait_for(lambda: ws.get_connection_stats()["reconnect_statistics"]["successes"] >= 2)
    lines = [parse_kv(r.getMessage()) for r in caplog.records if r.name == "regulator.connection"]
    assert lines[0] == {
        "event": "state",
        "name": "eth",
        "source": "idle",
        "target": "connecting",
        "reason": "started by host",
    }
    failure = next(line for line in lines if line["event"] == "failure")
    # the keys parsers knew keep their order; issue 16 appended reconnects, at and wall (R3.1)
    assert list(failure)[:6] == ["event", "name", "kind", "reason", "state", "attempt"]
    assert {k: failure[k] for k in list(failure)[:6]} == {
        "event": "failure",
        "name": "eth",
        "kind": "ssl",
        "reason": BAD_MAC,
        "state": "live",
        "attempt": "1",
    }
    assert list(failure)[6:] == ["reconnects", "at", "wall"]
    backoff = next(line for line in lines if line["event"] == "backoff")
    assert backoff == {"event": "backoff", "name": "eth", "delay": "0.05", "attempt": "2"}


@pytest.mark.spec("R3.3")
async def test_history_keeps_the_last_failures_of_real_faults(bed: FaultBed) -> None:
    config = ConnectionConfig(
        **ConnectionSettings({**FAST, "history_size": 3, "alarm_failures": 100})
    )
    async with client(bed, config=config) as ws:
        for n in range(1, 6):
            await wait_for(lambda: ws.state == "live")
            bed.reset()
            await wait_for(
                lambda n=n: ws.get_connection_stats()["reconnect_statistics"]["failures"] >= n
            )
        history = ws.get_connection_stats()["failure_history"]
    assert len(history) == 3
    assert [r["attempt"] for r in history] == [3, 4, 5]  # the newest three
    assert all(r["since_previous"] is not None and r["since_previous"] > 0 for r in history)


@pytest.mark.spec("R5.1")
async def test_connection_stats_keep_the_names_users_read(bed: FaultBed) -> None:
    async with client(bed) as ws:
        await take(ws, 5)
        stats = ws.get_connection_stats()
    for key in (
        "state",
        "url",
        "connected_since",
        "messages_received",
        "messages_dropped",
        "last_message_at",
        "rtt_ms",
        "reconnect_statistics",
        "failure_history",
    ):
        assert key in stats, key
    reconnect = stats["reconnect_statistics"]
    for key in ("total_attempts", "successes", "failures", "success_rate", "failures_by_kind"):
        assert key in reconnect, key
    assert reconnect["total_attempts"] == 1 and reconnect["success_rate"] == 1.0
    assert stats["messages_received"] >= 5


async def test_round_trip_time_is_measured(bed: FaultBed) -> None:
    async with client(bed) as ws:
        await wait_for(lambda: ws.get_connection_stats()["rtt_ms"] is not None, timeout=3)
        assert 0 < ws.get_connection_stats()["rtt_ms"] < 1000


async def test_a_broken_notifier_never_breaks_the_connection(
    bed: FaultBed, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(notice: Any) -> None:
        raise RuntimeError("pager is down")

    config = ConnectionConfig(**ConnectionSettings({**FAST, "alarm_failures": 0}))
    async with client(bed, config=config, notifiers=[CallbackNotifier(broken)]) as ws:
        await take(ws, 3)
        bed.reset()
        await wait_for(lambda: ws.get_connection_stats()["notifier_failures"] >= 1)
        await wait_for(lambda: ws.state == "live")
        await take(ws, 5)
    assert any(
        "event=notifier_failed" in r.getMessage() and "pager is down" in r.getMessage()
        for r in caplog.records
    )


async def test_drop_oldest_counts_what_a_slow_consumer_lost(bed: FaultBed) -> None:
    async with client(bed, buffer_size=5, overflow_policy="drop_oldest") as ws:
        await anyio.sleep(0.5)  # not reading: the 5 ms feed overflows a 5-message buffer
        stats = ws.get_connection_stats()
        assert stats["messages_buffered"] == 5
        assert stats["messages_dropped"] == stats["messages_received"] - 5
        assert ws.state == "live"


async def test_fail_policy_reconnects_a_consumer_that_cannot_keep_up(bed: FaultBed) -> None:
    async with client(bed, buffer_size=5, overflow_policy="fail") as ws:
        await wait_for(lambda: ws.get_connection_stats()["failure_history"], timeout=3)
        record = ws.get_connection_stats()["failure_history"][0]
    assert record["kind"] == "protocol" and "consumer too slow" in record["reason"]


async def test_server_restart_on_the_same_port_is_survived(bed: FaultBed) -> None:
    host = Recorder()
    async with client(bed, on_connect=host) as ws:
        await take(ws, 3)
        await anyio.to_thread.run_sync(bed.restart_server)
        await wait_for(lambda: host.connects >= 2 and ws.state == "live")
        await take(ws, 10)
        history = ws.get_connection_stats()["failure_history"]
    # 1001 going away, possibly a refused attempt while the port is down; the TLS layer may
    # also report the teardown first (the reason is then kept, e.g. an SSL alert)
    assert history[0]["kind"] == "server_closed" and history[0]["delay"] == 0.0
    assert all(r["kind"] in {"network", "ssl"} for r in history[1:]), history


@pytest.mark.spec("R1.4")
async def test_consumer_waits_for_on_connect_and_the_buffer_bound_holds_meanwhile(
    bed: FaultBed,
) -> None:
    finished: list[float] = []

    async def slow_resubscribe(ws: ResilientWebSocket) -> None:
        await anyio.sleep(0.3)  # the 5 ms feed keeps arriving meanwhile
        finished.append(anyio.current_time())

    async with client(bed, on_connect=slow_resubscribe, buffer_size=10) as ws:
        with anyio.fail_after(5):
            await ws.receive()
        received_at = anyio.current_time()
        stats = ws.get_connection_stats()
    assert finished and received_at >= finished[0]
    assert stats["messages_buffered"] <= 10
    assert stats["messages_dropped"] >= stats["messages_received"] - 11 > 0


# -- issue 16: R3.1 complete, R3.5 on wall time, HTTP answers to the upgrade ------------------

WALL_17 = 1_767_571_200.0 + 17 * 60  # 2026-01-05 00:17:00 UTC


class WallClock:
    """A wall clock the test sets; the monotonic clock stays the event loop's."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


@pytest.mark.spec("R3.1")
async def test_failure_line_carries_stack_state_reconnects_and_wall_time(
    bed: FaultBed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "regulator.connection")
    wall = WallClock(WALL_17)
    async with client(bed, name="eth", wall_clock=wall) as ws:
        await wait_for(lambda: ws.get_connection_stats()["healthy"])  # a drop, not an attempt
        bed.flip_byte()
        await wait_for(lambda: ws.get_connection_stats()["reconnect_statistics"]["successes"] >= 2)
        stats = ws.get_connection_stats()
    failures = [r for r in caplog.records if "event=failure" in r.getMessage()]
    record = failures[0]
    assert record.levelno == logging.WARNING
    assert record.exc_info is not None and record.exc_info[1] is not None  # the stack
    fields = parse_kv(record.getMessage())
    assert (fields["state"], fields["attempt"], fields["reconnects"]) == ("live", "1", "0")
    assert fields["wall"] == "2026-01-05T00:17:00.000Z"
    assert float(fields["at"]) > 0  # the monotonic time beside it
    # every handler formats the stack: a plain Formatter prints the traceback
    text = logging.Formatter().format(record)
    assert "Traceback" in text and "event=failure" in text
    history = stats["failure_history"][0]
    assert history["wall_time"] == WALL_17 and history["attempt_failed"] is False
    assert stats["wall_time"] == "2026-01-05T00:17:00.000Z"


@pytest.mark.spec("R3.1")
async def test_alarm_line_and_notice_carry_the_stack_and_wall_time(
    bed: FaultBed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "regulator.connection")
    notices: list[Any] = []
    config = ConnectionConfig(**ConnectionSettings({**FAST, "alarm_failures": 0}))
    wall = WallClock(WALL_17)
    bed.refuse_connections()
    async with client(
        bed, config=config, wall_clock=wall, notifiers=[CallbackNotifier(notices.append)]
    ) as ws:
        await wait_for(lambda: notices)
        bed.accept_connections()
        wall.value = WALL_17 + 60.0
        await wait_for(lambda: len(notices) >= 2)
        assert ws.state == "live"
    alarm, resolved = notices
    assert isinstance(alarm, Alarm) and alarm.wall_at == WALL_17
    assert isinstance(resolved, AlarmResolved)
    assert resolved.raised_wall_at == WALL_17
    # the wall time of a deadline is derived from the latest wall reading (this fake clock
    # stands still while the monotonic one moves): within the deadline's lateness
    assert resolved.wall_at == pytest.approx(WALL_17 + 60.0, abs=1.0)
    errors = [r for r in caplog.records if "event=alarm" in r.getMessage()]
    assert errors[0].levelno == logging.ERROR and errors[0].exc_info is not None
    assert parse_kv(errors[0].getMessage())["wall"] == "2026-01-05T00:17:00.000Z"


@pytest.mark.spec("R3.5")
async def test_drops_at_wall_minute_17_are_reported_as_minute_17(bed: FaultBed) -> None:
    # The event loop's monotonic clock has nothing to do with the hour: the adapter hands the
    # wall clock to the pattern detector. Eight drops, each at minute 17 of its hour.
    wall = WallClock(WALL_17)
    notices: list[Any] = []
    config = ConnectionConfig(**ConnectionSettings({**FAST, "alarm_failures": 100}))
    async with client(
        bed, config=config, wall_clock=wall, notifiers=[CallbackNotifier(notices.append)]
    ) as ws:
        for hour in range(8):
            await wait_for(lambda: ws.state == "live")
            await take(ws, 2)
            wall.value = WALL_17 + hour * 3600.0 + hour  # a second later each hour
            successes = ws.get_connection_stats()["reconnect_statistics"]["successes"]
            bed.flip_byte()
            await wait_for(
                lambda s=successes: (
                    ws.get_connection_stats()["reconnect_statistics"]["successes"] > s
                )
            )
        await wait_for(lambda: any(getattr(n, "kind", "") == "minute_of_hour" for n in notices))
        patterns = ws.get_connection_stats()["patterns"]
    report = next(p for p in patterns if p["kind"] == "minute_of_hour")
    assert report["minute"] == 17


async def test_503_retry_after_is_honoured_like_429(bed: FaultBed) -> None:
    bed.refuse_upgrades(503, retry_after=1)
    async with client(bed) as ws:
        await wait_for(lambda: ws.state == "live", timeout=5)
        record = ws.get_connection_stats()["failure_history"][0]
    assert (record["kind"], record["reason"]) == ("network", "HTTP 503")
    assert (record["retry_after"], record["delay"]) == (1.0, 1.0)


async def test_redirect_is_fatal_with_its_location(bed: FaultBed) -> None:
    bed.refuse_upgrades(301, retry_after=None, location="wss://elsewhere.example/ws")
    async with client(bed) as ws:
        await wait_for(lambda: ws.state == "closed")
        stats = ws.get_connection_stats()
    record = stats["failure_history"][0]
    assert record["kind"] == "fatal"
    assert record["reason"] == "HTTP 301: redirected to wss://elsewhere.example/ws"
    assert stats["reconnect_statistics"]["total_attempts"] == 1  # not retried forever


async def test_redirect_is_followed_when_asked(bed: FaultBed) -> None:
    bed.refuse_upgrades(302, retry_after=None, location="/moved")
    async with client(bed, follow_redirects=True) as ws:
        await take(ws, 2)
        stats = ws.get_connection_stats()
    assert stats["failure_history"][0]["reason"] == "HTTP 302: redirected to /moved"
    assert stats["url"].endswith("/moved") and bed.server.paths[-1] == "/moved"
