"""Several collector processes behind one address, against the exchange simulator's per-IP
limit, while the exchange drops every connection so each reconnects over and over.

Four processes, each a real ``BinanceStream`` (its own event loop, its own process), share
one budget: the host's file ledger, or a real redis-server. The simulator counts every
attempt from 127.0.0.1 against 20 per 4 s (the real exchange: 300 per 5 minutes) and answers
429, then 418, to one too many. The budget must keep all four under it: no 429, no 418, and
never more than 20 attempts in any 4 s, while every process still gets its turns.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from _exchangebed import ExchangeBed
from _faultbed import Certs
from _redisbed import running_redis
from _spawn import run_scripts

WORKER = str(Path(__file__).with_name("_budget_worker.py"))
TESTS = str(Path(__file__).resolve().parent.parent)
LIMIT, WINDOW, SECONDS, PROCESSES = 20, 4.0, 9.0, 4


def run_fleet(certs: Certs, tmp_path: Path, budget_url: str) -> tuple[list[Any], list[Any]]:
    cafile = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(cafile))
    with ExchangeBed(certs, max_attempts=LIMIT, attempt_window=WINDOW) as bed:
        bed.exchange.drop_after_accept(1008, "forced reconnect")  # every process reconnects
        command = [
            sys.executable,
            WORKER,
            str(tmp_path),
            "stream",
            budget_url,
            str(LIMIT),
            str(WINDOW),
            str(SECONDS),
            bed.url,
            str(cafile),
        ]
        results = run_scripts(
            [command] * PROCESSES,
            tmp_path,
            env={**os.environ, "PYTHONPATH": TESTS},
            timeout=90,
        )
        attempts = list(bed.exchange.attempts)
    return results, attempts


def check_fleet(results: list[Any], attempts: list[Any]) -> None:
    statuses = [status for _, _, status in attempts]
    assert 429 not in statuses and 418 not in statuses, statuses
    times = sorted(t for t, _, _ in attempts)
    # the exchange's own rule: at most LIMIT attempts in any WINDOW
    for i in range(len(times) - LIMIT):
        assert times[i + LIMIT] - times[i] > WINDOW, (i, times[i : i + LIMIT + 1])
    # the budget was the bottleneck: without it each process makes ~3 attempts a second
    assert len(times) >= LIMIT
    assert sum(r["stats"]["waits"] for r in results) >= PROCESSES
    # every process got turns, a fair share of them: judged against the busiest process, not
    # a count (a host loaded by its neighbours slows every handshake, so all get fewer)
    turns = [r["stats"]["reservations"] for r in results]
    assert min(turns) >= 1 and 3 * min(turns) >= max(turns), turns
    assert all(r["stats"]["fallbacks"] == 0 for r in results)
    # every attempt the exchange saw took a slot (some slots never reach the exchange: an
    # attempt still waiting, or cut short in TCP/TLS, when the run ends)
    assert len(times) <= sum(r["stats"]["reservations"] for r in results)
    assert not any("rate_limited" in r["failures"] or "banned" in r["failures"] for r in results)


@pytest.mark.spec("R1.1")
def test_processes_sharing_the_file_ledger_stay_under_the_exchange_limit(
    certs: Certs, tmp_path: Path
) -> None:
    results, attempts = run_fleet(certs, tmp_path, f"file://{tmp_path / 'ledger'}")
    check_fleet(results, attempts)
    assert {r["stats"]["backend"] for r in results} == {"file"}


@pytest.mark.spec("R1.1")
def test_processes_sharing_redis_stay_under_the_exchange_limit(
    certs: Certs, tmp_path: Path
) -> None:
    with running_redis() as server:
        results, attempts = run_fleet(certs, tmp_path, server.url)
    check_fleet(results, attempts)
    assert {r["stats"]["backend"] for r in results} == {"redis"}


def test_without_a_shared_budget_the_same_fleet_is_refused(certs: Certs, tmp_path: Path) -> None:
    """The control: one in-process budget each (the default before shared budgets), and the
    same four processes break the address's limit, as measured (measured-v0.2, "Limits per
    IP"). So the two tests above can fail, and what they prove is the sharing."""
    _, attempts = run_fleet(certs, tmp_path, "local")
    statuses = [status for _, _, status in attempts]
    assert 429 in statuses
