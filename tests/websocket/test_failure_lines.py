"""Every failure logs the same WARNING ``event=failure`` line (R3.1), whatever its kind and
whoever noticed it: the adapter (a TLS error, a reset, a refused upgrade, a close code) or the
machine (a missed pong, a handshake past its deadline). One fault of each kind through a real
TLS server and the fault proxy; the lines are counted against the machine's own statistics."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import anyio
import pytest
from _faultbed import Certs, ConnectionSettings, FaultBed
from regulator.adapters.websocket import ResilientWebSocket
from regulator.fsm import ConnectionConfig, parse_kv

pytestmark = [pytest.mark.anyio, pytest.mark.spec("R3.1")]

FAST = ConnectionSettings(
    initial_delay=0.05,
    max_delay=0.2,
    jitter=0.0,
    ping_interval=0.2,
    pong_timeout=0.2,
    handshake_timeout=0.4,
    alarm_failures=100,
    alarm_window=5.0,
    stable_after=0.1,
)
WALL = 1_796_000_000.0
FIELDS = ["event", "name", "kind", "reason", "state", "attempt", "reconnects", "at", "wall"]


@pytest.fixture
def bed(certs: Certs) -> Iterator[FaultBed]:
    with FaultBed(certs=certs) as running:
        yield running


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


# kind -> (fault applied once the client is live, or before it connects; state it fails in)
FAULTS: dict[str, tuple[Callable[[FaultBed], None], bool, str]] = {
    "ssl": (FaultBed.flip_byte, True, "live"),
    "network": (FaultBed.reset, True, "live"),
    # decided by the machine, not the adapter: these logged only a state change before
    "timeout-pong": (FaultBed.black_hole, True, "live"),
    "timeout-handshake": (FaultBed.stall_handshakes, False, "handshaking"),
    "protocol": (lambda bed: bed.close_all(1008, "policy"), True, "live"),
    "server_closed": (lambda bed: bed.close_all(1012, "restart"), True, "live"),
    "rate_limited": (lambda bed: bed.refuse_upgrades(429, retry_after=0.1), False, "handshaking"),
    "banned": (lambda bed: bed.refuse_upgrades(418, retry_after=0.1), False, "handshaking"),
    "fatal": (lambda bed: bed.refuse_upgrades(403, retry_after=None), False, "handshaking"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_each_failure_kind_logs_one_warning_failure_line(
    bed: FaultBed, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    caplog.set_level(logging.INFO, "regulator.connection")
    apply, once_live, state = FAULTS[fault]
    kind = fault.split("-")[0]
    if not once_live:
        apply(bed)
    ws = ResilientWebSocket(
        bed.url,
        config=ConnectionConfig(**FAST),
        ssl_context=bed.certs.client_context(),
        name="eth",
        wall_clock=lambda: WALL,
    )
    async with ws:
        if once_live:
            await wait_for(lambda: ws.state == "live")
            apply(bed)
        await wait_for(lambda: ws.get_connection_stats()["failure_history"])
        if fault == "timeout-pong":
            bed.black_hole(False)
        elif fault == "timeout-handshake":
            bed.stall_handshakes(False)
        stats = ws.get_connection_stats()
    lines = [r for r in caplog.records if parse_kv(r.getMessage()).get("event") == "failure"]
    counted = stats["reconnect_statistics"]
    # one line per failure the machine counted, of the same kinds, and nothing more
    assert len(lines) == counted["failures"] >= 1
    assert Counter(parse_kv(r.getMessage())["kind"] for r in lines) == Counter(
        counted["failures_by_kind"]
    )
    first = lines[0]
    fields = parse_kv(first.getMessage())
    assert first.levelno == logging.WARNING
    assert list(fields) == FIELDS
    assert (fields["kind"], fields["state"], fields["attempt"]) == (kind, state, "1")
    assert fields["reason"] == stats["failure_history"][0]["reason"]
    assert fields["reconnects"] == "0"
    wall = datetime.fromisoformat(fields["wall"].replace("Z", "+00:00")).timestamp()
    assert wall == pytest.approx(WALL, abs=0.05)  # a deadline: its own wall time
    # (format_kv writes floats with 6 significant digits)
    assert float(fields["at"]) == pytest.approx(stats["failure_history"][0]["at"], rel=1e-5)
    # the stack (exc_info): formatted by every handler; a deadline's is its TimeoutError
    assert first.exc_info is not None and first.exc_info[1] is not None
    text = logging.Formatter().format(first)
    if kind == "timeout":
        assert "TimeoutError: " in text and fields["reason"] in text
    # the line comes before the state change it causes
    messages = [parse_kv(r.getMessage()) for r in caplog.records]
    at = messages.index(fields)
    assert messages[at + 1]["event"] == "state" and messages[at + 1]["source"] == state
