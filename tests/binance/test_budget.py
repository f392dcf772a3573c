"""Budgets: the sliding window, the three stores, the fallback, the config that selects them.

The file ledger is shared by real processes (and one killed with SIGKILL while it holds the
lock); the Redis budget runs against a real redis-server (skipped, with the reason, where it
is not installed). Nothing here is a fake of a store.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from _exchangebed import ExchangeBed
from _faultbed import Certs
from _redisbed import running_redis
from _spawn import run_scripts
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.adapters.binance import (
    AttemptBudget,
    BinanceStream,
    Budget,
    FileBudget,
    RedisBudget,
    WeightBudget,
    budget_from_url,
)
from regulator.adapters.binance._budget import reserve_slot
from regulator.fsm import BinanceConfig, ConfigError, ConnectionConfig, load_config, parse_kv

WORKER = str(Path(__file__).with_name("_budget_worker.py"))
TESTS = str(Path(__file__).resolve().parent.parent)


def most_in_any_window(slots: list[tuple[float, float]], window: float) -> float:
    """The largest total cost of slots with times in any half-open ``(t - window, t]`` (to
    1e-9 s: a slot exactly one window after another is out of its window, whatever the
    rounding of ``t - window``)."""
    slots = sorted(slots)
    best = 0.0
    for i, (at, _) in enumerate(slots):
        best = max(best, sum(c for t, c in slots[: i + 1] if t > at - window + 1e-9))
    return best


def worst_latency(results: list[dict[str, Any]]) -> float:
    """The longest reserve() call of a fleet: how early a published slot can read (the
    worker stamps it with the clock taken before the call)."""
    return float(max(max(r["latencies"]) for r in results))


@settings(max_examples=150, deadline=None)
@given(
    limit=st.integers(1, 12),
    steps=st.lists(
        st.tuples(st.floats(0, 3), st.integers(1, 12), st.floats(0, 2)), min_size=1, max_size=40
    ),
)
def test_reserve_slot_never_puts_more_than_the_limit_in_a_window(
    limit: int, steps: list[tuple[float, int, float]]
) -> None:
    times: list[float] = []
    costs: list[float] = []
    taken: list[tuple[float, float]] = []
    now = blocked = 0.0
    for advance, cost, block in steps:
        now += advance
        if block > 1.5:
            blocked = now + block
        cost = min(cost, limit)
        at = reserve_slot(times, costs, now, blocked, limit, 1.0, cost)
        assert at >= now and at >= blocked
        assert not taken or at >= taken[-1][0]  # in order
        taken.append((at, cost))
    assert most_in_any_window(taken, 1.0) <= limit


def test_the_weight_budget_with_unit_costs_decides_exactly_as_the_attempt_budget() -> None:
    clock = [0.0]
    attempts = AttemptBudget(5, 10.0, margin=0.5, time_fn=lambda: clock[0])
    weights = WeightBudget(5, 10.0, margin=0.5, time_fn=lambda: clock[0])
    for step in range(60):
        clock[0] += (step * 7 % 5) * 0.9
        if step == 30:
            attempts.block_for(4.0)
            weights.block_for(4.0)
        assert weights.reserve() == pytest.approx(attempts.reserve())
    assert weights.in_window() == attempts.in_window()
    assert isinstance(attempts, Budget) and isinstance(weights, Budget)


def test_the_weight_budget_charges_each_request_its_weight() -> None:
    clock = [0.0]
    budget = WeightBudget(100, 60.0, margin=0.0, time_fn=lambda: clock[0])
    assert [budget.reserve(40), budget.reserve(40), budget.reserve(20)] == [0.0, 0.0, 0.0]
    assert budget.reserve(30) == pytest.approx(60.0)  # the first 40 must leave first
    clock[0] = 61.0
    assert budget.in_window() == 30
    with pytest.raises(ValueError, match=r"cost: must be >= 1 and <= limit=100 \(got 101\)"):
        budget.reserve(101)


def test_the_file_ledger_is_one_window_for_every_process_on_the_host(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'ledger'}"
    limit, window, count = 10, 50.0, 6  # 9 a window (1 kept for fallback): slots pile up
    results = run_scripts(
        [
            [
                sys.executable,
                WORKER,
                str(tmp_path),
                "hammer",
                url,
                str(limit),
                str(window),
                str(count),
            ]
        ]
        * 4,
        tmp_path,
        env={**os.environ, "PYTHONPATH": TESTS},
        timeout=60,
    )
    slots = [(t, 1.0) for r in results for t in r["slots"]]
    assert len(slots) == 24
    assert most_in_any_window(slots, window - 0.05 - worst_latency(results)) <= limit - 1
    # 24 slots at 9 a window: three windows, so the last ones wait two windows
    assert max(t for t, _ in slots) - min(t for t, _ in slots) >= 2 * window - 1.0
    assert sum(r["stats"]["reservations"] for r in results) == 24
    assert all(r["stats"]["fallbacks"] == 0 for r in results)


def test_a_holder_killed_with_sigkill_never_blocks_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = tmp_path / "ledger"
    budget = FileBudget(ledger, 20, 10.0, lock_timeout=0.2, retry_store=0.0)
    assert budget.reserve() == 0.0
    holder = subprocess.Popen(
        [sys.executable, WORKER, str(tmp_path), "hold", str(ledger)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": TESTS},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        # a live holder that never lets go: waited for 0.2 s, then the local share
        with caplog.at_level(logging.WARNING, logger="regulator.binance"):
            started = time.monotonic()
            assert budget.reserve() == 0.0
            assert time.monotonic() - started < 1.0
        # one tuple: asserted one by one, mypy would hold falling_back narrowed to True below
        assert (budget.falling_back, budget.fallbacks, budget.fallback_reservations) == (True, 1, 1)
        logged = [parse_kv(r.getMessage()) for r in caplog.records]
        assert [x["event"] for x in logged] == ["budget_fallback"]
        assert logged[0]["backend"] == "file" and "stayed locked" in logged[0]["error"]
        assert logged[0]["share"] == "1"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    # the kernel dropped the dead holder's lock: the ledger works again, at once
    started = time.monotonic()
    assert budget.reserve() == 0.0
    assert time.monotonic() - started < 0.1
    assert not budget.falling_back and budget.fallbacks == 1
    assert budget.stats()["in_window"] == 2  # the fallback's slot was the local share's


def test_without_its_store_a_budget_falls_back_to_its_local_share(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    budget = FileBudget(tmp_path / "gone" / "ledger", 100, 30.0, fallback_share=2, headroom=10)
    with caplog.at_level(logging.WARNING, logger="regulator.binance"):
        delays = [budget.reserve() for _ in range(3)]
    assert delays[:2] == [0.0, 0.0]
    assert delays[2] == pytest.approx(30.3, abs=0.05)  # the share: 2 a window, never more
    stats = budget.stats()
    assert stats["falling_back"] and stats["fallbacks"] == 1
    assert stats["fallback_reservations"] == 3 and stats["store_errors"] >= 1
    assert sum("event=budget_fallback" in r.getMessage() for r in caplog.records) == 1


def test_a_torn_ledger_counts_as_a_full_window(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    budget = FileBudget(ledger, 20, 10.0, margin=0.0)
    budget.reserve()
    data = bytearray(ledger.read_bytes())
    data[-3] ^= 0xFF  # a write cut short by a crash: the CRC no longer matches
    ledger.write_bytes(bytes(data))
    assert budget.reserve() == pytest.approx(10.0, abs=0.05)  # nobody for a window
    assert FileBudget(ledger, 20, 10.0, margin=0.0).reserve() == pytest.approx(10.0, abs=0.05)


def test_a_retry_after_blocks_every_process_of_the_ledger(tmp_path: Path) -> None:
    first = FileBudget(tmp_path / "ledger", 20, 10.0)
    second = FileBudget(tmp_path / "ledger", 20, 10.0)
    first.block_for(3.0)
    assert second.reserve() == pytest.approx(3.0, abs=0.05)


def test_the_file_weight_budget_has_its_own_ledger(tmp_path: Path) -> None:
    base = f"file://{tmp_path / 'ledger'}"
    weights = budget_from_url(base, 100, 60.0, unit="weight", margin=0.0, headroom=0)
    attempts = budget_from_url(base, 100, 60.0, margin=0.0, headroom=0)
    assert isinstance(weights, FileBudget) and weights.path == tmp_path / "ledger.weight"
    assert [weights.reserve(60), weights.reserve(40)] == [0.0, 0.0]
    assert weights.reserve(10) == pytest.approx(60.0, abs=0.05)
    assert attempts.reserve() == 0.0 and attempts.in_window() == 1


# -- Redis ---------------------------------------------------------------------------------
def test_redis_keeps_one_window_for_every_process(tmp_path: Path) -> None:
    with running_redis() as server:
        limit, window, count = 10, 50.0, 6
        results = run_scripts(
            [
                [
                    sys.executable,
                    WORKER,
                    str(tmp_path),
                    "hammer",
                    server.url,
                    str(limit),
                    str(window),
                    str(count),
                ]
            ]
            * 4,
            tmp_path,
            env={**os.environ, "PYTHONPATH": TESTS},
            timeout=60,
        )
    slots = [(t, 1.0) for r in results for t in r["slots"]]
    assert len(slots) == 24
    assert most_in_any_window(slots, window - 0.05 - worst_latency(results)) <= limit - 1
    assert max(t for t, _ in slots) - min(t for t, _ in slots) >= 2 * window - 1.0
    assert all(r["stats"]["fallbacks"] == 0 and r["stats"]["backend"] == "redis" for r in results)


def test_redis_and_the_file_ledger_decide_alike(tmp_path: Path) -> None:
    """The Lua script and reserve_slot are two implementations of one rule: same requests,
    same delays (to the few ms between their clocks' readings)."""
    with running_redis() as server:
        redis_budget = RedisBudget(server.url, 12, 5.0, margin=0.0, headroom=2, key="diff")
        file_budget = FileBudget(tmp_path / "ledger", 12, 5.0, margin=0.0, headroom=2)
        weights = [1, 3, 2, 4, 1, 1, 5, 2, 3, 1]
        for w in weights:
            assert redis_budget.reserve(w) == pytest.approx(file_budget.reserve(w), abs=0.05)
        redis_budget.block_for(20.0)
        file_budget.block_for(20.0)
        assert redis_budget.reserve(1) == pytest.approx(file_budget.reserve(1), abs=0.05)
        assert redis_budget.in_window() == file_budget.in_window() == sum(weights) + 1
        # attempts (every cost 1): both find the slot by rank instead of walking back
        redis_ones = RedisBudget(server.url, 6, 5.0, margin=0.0, headroom=1, key="ones")
        file_ones = FileBudget(tmp_path / "ones", 6, 5.0, margin=0.0, headroom=1)
        delays = [(redis_ones.reserve(), file_ones.reserve()) for _ in range(12)]
        for from_redis, from_file in delays:
            assert from_redis == pytest.approx(from_file, abs=0.05)
        assert [round(d) for d, _ in delays] == [0] * 5 + [5] * 5 + [10] * 2


def test_when_redis_goes_away_the_budget_falls_back_and_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_redis() as server:
        budget = RedisBudget(server.url, 20, 10.0, retry_store=0.0, timeout=0.2)
        assert budget.reserve() == 0.0
        server.stop()
        with caplog.at_level(logging.INFO, logger="regulator.binance"):
            started = time.monotonic()
            assert budget.reserve() == 0.0  # the local share: 1 of 20 a window
            assert budget.reserve() == pytest.approx(10.1, abs=0.05)
            assert time.monotonic() - started < 1.0  # never waits long for a dead store
            assert budget.stats()["falling_back"]
            server.start()  # the same port, empty
            assert budget.reserve() == 0.0
        stats = budget.stats()
        assert not stats["falling_back"] and stats["fallbacks"] == 1
        assert stats["fallback_reservations"] == 2
        assert stats["in_window"] == 1  # the new server saw only the last one
    events = [parse_kv(r.getMessage())["event"] for r in caplog.records]
    assert events == ["budget_fallback", "budget_restored"]
    assert "redis://127.0.0.1" in caplog.records[0].getMessage()


def test_a_redis_password_never_reaches_a_log_or_an_error() -> None:
    pytest.importorskip("redis", reason="the redis client is not installed (extra: redis)")
    budget = RedisBudget("redis://user:hunter2@127.0.0.1:1/0", 20, 10.0, timeout=0.05)
    assert budget.reserve() == 0.0  # port 1: nothing listens; the local share
    assert "hunter2" not in budget.describe() and "user:***@" in budget.describe()
    with pytest.raises(ConfigError) as caught:
        BinanceConfig(budget="redis://user:hunter2@host:99999/0")
    assert "hunter2" not in str(caught.value)


# -- selection and config ------------------------------------------------------------------
@pytest.mark.spec("R4.4")
@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("file://relative/path", "must be file:///absolute/path on this host"),
        ("file:///tmp/ledger/", "must name a file by its absolute path"),
        ("redis://:6379/0", "must name a host"),
        ("redis://host:6379/zero", "must name a database by its number"),
        ("memcached://host", "must be 'local', file:///absolute/path or redis://host:6379/0"),
        ("redis://host:99999/0", "must be a valid URL"),
    ],
)
def test_a_bad_budget_location_is_refused_naming_field_rule_and_value(
    value: str, rule: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"REGULATOR_BINANCE__BUDGET": value})
    message = str(caught.value)
    assert "binance.budget:" in message and rule in message
    assert "REGULATOR_BINANCE__BUDGET" in message
    assert value.split("://")[0] in message  # the value is echoed (shortened if long)


@pytest.mark.spec("R5.4")
def test_the_budget_defaults_to_the_process_and_the_config_selects_a_shared_one(
    tmp_path: Path,
) -> None:
    assert load_config(env={}).binance.budget == "local"
    local = BinanceStream(["ethusdt@trade"])
    assert isinstance(local.budget, AttemptBudget)
    url = f"file://{tmp_path / 'ledger'}"
    rules = load_config(env={"REGULATOR_BINANCE__BUDGET": url}).binance
    first = BinanceStream(["ethusdt@trade"], binance=rules)
    second = BinanceStream(["btcusdt@trade"], binance=rules)
    assert isinstance(first.budget, FileBudget) and first.budget is second.budget  # one a process
    assert first.budget.limit == 300 and first.budget.window == pytest.approx(303.0)
    own = FileBudget(tmp_path / "own", 5, 1.0)
    assert BinanceStream(["ethusdt@trade"], attempt_budget=own).budget is own


def test_a_redis_url_selects_the_redis_budget() -> None:
    with running_redis() as server:
        rules = load_config(env={"REGULATOR_BINANCE__BUDGET": server.url}).binance
        made: Any = BinanceStream(["ethusdt@trade"], binance=rules).budget
        assert isinstance(made, RedisBudget) and made.reserve() == 0.0
        assert made.stats()["in_window"] == 1


# -- metrics: each process's share ---------------------------------------------------------
@pytest.mark.anyio
async def test_the_metrics_show_the_window_and_each_process_share(
    certs: Certs, tmp_path: Path
) -> None:
    from prometheus_client import CollectorRegistry
    from regulator.adapters.prometheus import MetricsExporter

    registry = CollectorRegistry()
    exporter = MetricsExporter(registry)
    ledger = tmp_path / "ledger"
    fast = ConnectionConfig(initial_delay=0.05, max_delay=0.3, jitter=0.0, ping_interval=5.0)
    with ExchangeBed(certs) as bed:
        # two budgets on one ledger: what two processes of the host see
        streams = [
            BinanceStream(
                ["ethusdt@trade"],
                base_url=bed.url,
                ssl_context=certs.client_context(),
                config=fast,
                attempt_budget=FileBudget(ledger, 300, 300.0),
            )
            for _ in range(2)
        ]
        exporter.register(streams[0], name="a")
        exporter.register(streams[1], name="b")
        async with streams[0], streams[1]:
            with anyio.fail_after(10):
                while not all(s.state == "live" for s in streams):
                    await anyio.sleep(0.02)
            bed.reset()  # both reconnect: 2 attempts each
            with anyio.fail_after(10):
                while not all(s.counter_totals()["successes"] == 2 for s in streams):
                    await anyio.sleep(0.02)

            def sample(metric: str, name: str) -> float | None:
                labels = {"name": name, "backend": "file"}
                return registry.get_sample_value(f"regulator_binance_budget_{metric}", labels)

            for name in ("a", "b"):
                assert sample("in_window", name) == 4  # the host's window
                assert sample("own_in_window", name) == 2  # this one's share
                assert sample("limit", name) == 270  # 300 less the headroom
                assert sample("reservations_total", name) == 2
                assert sample("falling_back", name) == 0
                assert sample("fallbacks_total", name) == 0
