"""One connection attempt's budget check (``reserve()``), per backend.

Each round makes a fresh budget of 300 attempts per 300 s (the exchange's limit) and reserves
450 slots one by one, timing each: the first 300 fit (the common case: the window has room;
timed from the 150th, when the window holds 150-300 entries), the last 150 find it full (the
slot is computed by walking back through the window). Rounds alternate the backends' order;
figures are medians and 99th percentiles over all rounds. Redis is a real ``redis-server`` on
loopback, started here (skipped without one).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from regulator.adapters.binance import AttemptBudget, FileBudget, RedisBudget

# run.py's _table (headers, rows) -> markdown and _verdict, passed in (run imports this module)
Table = Callable[[list[str], list[list[Any]]], str]
Verdict = Callable[[bool], str]
TARGET_US = {"in-process": None, "file ledger": 100.0, "Redis (loopback)": 1000.0}


def _time_reserves(budget: Any, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        budget.reserve()
        out.append(time.perf_counter() - started)
    return out


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def budget_check(rounds: int = 5) -> list[dict[str, Any]]:
    """Per backend: us per reserve() with room (median, p99) and with the window full."""
    server = None
    binary = shutil.which("redis-server")
    if binary is not None:
        from _redisbed import RedisServer

        server = RedisServer(binary)
        server.start()
    folder = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    times: dict[str, dict[str, list[float]]] = {}
    try:
        for r in range(rounds):

            def make(kind: str, r: int = r) -> Any:
                if kind == "in-process":
                    return AttemptBudget(300, 300.0)
                if kind == "file ledger":
                    return FileBudget(folder / f"ledger{r}", 300, 300.0, headroom=0)
                assert server is not None
                return RedisBudget(server.url, 300, 300.0, headroom=0, key=f"bench{r}")

            kinds = ["in-process", "file ledger"] + (["Redis (loopback)"] if server else [])
            if r % 2:
                kinds.reverse()
            for kind in kinds:
                budget = make(kind)
                room = _time_reserves(budget, 300)[150:]
                full = _time_reserves(budget, 150)
                entry = times.setdefault(kind, {"room": [], "full": []})
                entry["room"] += room
                entry["full"] += full
                if hasattr(budget, "close"):
                    budget.close()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    rows = []
    for kind, entry in times.items():
        rows.append(
            {
                "backend": kind,
                "room_median_us": statistics.median(entry["room"]) * 1e6,
                "room_p99_us": _p(entry["room"], 0.99) * 1e6,
                "full_median_us": statistics.median(entry["full"]) * 1e6,
                "full_p99_us": _p(entry["full"], 0.99) * 1e6,
                "target_us": TARGET_US[kind],
            }
        )
    if server is None:
        rows.append({"backend": "Redis (loopback)", "skipped": "redis-server is not installed"})
    return rows


def markdown(rows: list[dict[str, Any]], table: Table, verdict: Verdict) -> str:
    body = []
    for r in rows:
        if "skipped" in r:
            body.append([r["backend"], "-", "-", "-", "-", "< 1 ms", r["skipped"]])
            continue
        target = r["target_us"]
        body.append(
            [
                r["backend"],
                f"{r['room_median_us']:.1f}",
                f"{r['room_p99_us']:.1f}",
                f"{r['full_median_us']:.1f}",
                f"{r['full_p99_us']:.1f}",
                "-" if target is None else f"< {target:.0f} us",
                "-" if target is None else verdict(r["room_median_us"] < target),
            ]
        )
    return table(
        [
            "backend",
            "us/check, room (median)",
            "p99",
            "us/check, window full (median)",
            "p99",
            "target",
            "verdict",
        ],
        body,
    )


if __name__ == "__main__":
    for row in budget_check():
        print(row)
