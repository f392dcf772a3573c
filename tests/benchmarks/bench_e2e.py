"""End to end (issue 30): what a trading host sees. ``BinanceStream`` (asyncio, trio) beside the
peer clients on one recorded combined-stream feed (trades, aggregate trades, book tickers, diff
depth of a few symbols), served over TLS on 127.0.0.1 by ``e2e_server.py`` in its own process.

Method: the feed is recorded once per run from the exchange simulator's own publishers
(``tests/_feed.py``). Every client run is a fresh process (``e2e_clients.py``) started with the
Python of its own environment; the clients take turns within each round (the order reversed
every other round); each figure is the median over the rounds, and ratios are of medians in
this one run. A client counts the events it hands to the host, parsed, of the streams it
subscribed (``BinanceStream(raw=True)``: each message as received, with only what its checks
read decoded); its clock and CPU meter (process CPU time, all threads) run from the first event
to the last. Every run checks that every event arrived (and, for ``BinanceStream``, that no gap,
duplicate or malformed message was reported). A peer that cannot be installed or run is shown
with the reason.

``BENCH_ONLY=e2e make bench`` runs this section alone (prints it; writes nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SYMBOLS = {"ethusdt": 3000.0, "btcusdt": 60000.0, "solusdt": 150.0, "bnbusdt": 600.0}
KINDS = ("trade", "aggTrade", "bookTicker", "depth@100ms")
RAW = "BinanceStream asyncio (raw=True)"
# cryptofeed's Binance feed has no `trade` channel (its TRADES are aggregate trades)
KINDS_OF = {"cryptofeed": ("aggTrade", "bookTicker", "depth@100ms")}
REFERENCE = "cryptofeed"

# client -> the environment whose Python runs it (relative to the repository root)
ENVS = {
    "BinanceStream asyncio": ".venv",
    "BinanceStream trio": ".venv",
    "BinanceStream asyncio (raw=True)": ".venv",
    "ResilientWebSocket + json.loads": ".venv",
    "websockets + json.loads": ".venv",
    "picows + orjson": ".venv",
    "cryptofeed": ".venv-cf",
    "binance-sdk-spot": ".venv-bs",
    "python-binance": ".venv-pb",
    "binance-connector": ".venv",
}
# BENCH_BASELINE_PYTHON=/path/to/other/venv/bin/python adds a row: BinanceStream (asyncio) run by
# another installation of regulator (e.g. the main branch's venv), for a before/after figure.
BASELINE = os.environ.get("BENCH_BASELINE_PYTHON")
BASELINE_NAME = "BinanceStream asyncio, baseline"
if BASELINE:
    ENVS[BASELINE_NAME] = BASELINE
MAKE_TARGET = {".venv-cf": "cf-venv", ".venv-pb": "pb-venv", ".venv-bs": "bs-venv"}


def streams_for(client: str) -> list[str]:
    kinds = KINDS_OF.get(client, KINDS)
    return [f"{symbol}@{kind}" for symbol in SYMBOLS for kind in kinds]


def _python(client: str) -> Path:
    env = ENVS[client]
    if env == ".venv":
        return Path(sys.executable)
    if client == BASELINE_NAME:
        return Path(env)
    return ROOT / env / "bin" / "python"


def _missing(client: str) -> str | None:
    """Why ``client`` cannot run here (None: it can)."""
    env = ENVS[client]
    if env != ".venv" and client != BASELINE_NAME and not (ROOT / env / ".installed").exists():
        return f"its environment {env} was not built (`make {MAKE_TARGET[env]}`; offline?)"
    return None


@contextlib.contextmanager
def _server(feed: list[str]) -> Iterator[tuple[str, str]]:
    from _faultbed import Certs

    certs = Certs()
    with tempfile.TemporaryDirectory() as tmp:
        pem, ca, path = (os.path.join(tmp, n) for n in ("server.pem", "ca.pem", "feed.jsonl"))
        certs.cert.private_key_and_cert_chain_pem.write_to_path(pem)
        certs.ca.cert_pem.write_to_path(ca)
        Path(path).write_text("\n".join(feed) + "\n", encoding="utf-8")
        server = subprocess.Popen(
            [sys.executable, str(HERE / "e2e_server.py"), path, pem, pem],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            yield f"wss://127.0.0.1:{port}", ca
        finally:
            server.terminate()
            server.wait(10)


def _run(client: str, base: str, ca: str, expected: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": "",
        "SSL_CERT_FILE": ca,
        "REQUESTS_CA_BUNDLE": ca,
        "WEBSOCKET_CLIENT_CA_BUNDLE": ca,
    }
    role = "BinanceStream asyncio" if client == BASELINE_NAME else client
    args = [str(_python(client)), str(HERE / "e2e_clients.py"), role, base, ca, str(expected)]
    try:
        done = subprocess.run(
            [*args, *streams_for(client)],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timed out after 180 s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail[:200]}"}
    return dict(json.loads(lines[-1]))


def measure(trades: int, rounds: int, clients: list[str] | None = None) -> dict[str, Any]:
    from _feed import record

    every = sorted({s for c in ENVS for s in streams_for(c)})
    feed = record(every, trades, symbols=SYMBOLS, trades_per_second=200.0)
    per_stream: dict[str, int] = {}
    for line in feed:
        stream = json.loads(line)["stream"]
        per_stream[stream] = per_stream.get(stream, 0) + 1
    names = clients or list(ENVS)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    why: dict[str, str] = {}
    for name in names:
        reason = _missing(name)
        if reason is not None:
            why[name] = reason
    started = time.perf_counter()
    with _server(feed) as (base, ca):
        for i in range(rounds):
            order = names if i % 2 == 0 else names[::-1]
            for name in order:
                if name in why:
                    continue
                expected = sum(per_stream.get(s, 0) for s in streams_for(name))
                if name == "cryptofeed":  # its book callback fires for each REST snapshot too
                    expected += len(SYMBOLS)
                result = _run(name, base, ca, expected)
                result["expected"] = expected
                if "error" in result:
                    why[name] = result["error"]
                    continue
                runs[name].append(result)
    return {
        "feed": len(feed),
        "per_stream": per_stream,
        "runs": runs,
        "why": why,
        "rounds": rounds,
        "seconds": time.perf_counter() - started,
    }


def _ok(name: str, r: dict[str, Any]) -> bool:
    if r["events"] < r["expected"]:
        return False
    return not name.startswith("BinanceStream") or (r["gaps"], r["duplicates"], r["malformed"]) == (
        0,
        0,
        0,
    )


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, runs in result["runs"].items():
        if not runs:
            out.append({"client": name, "why": result["why"].get(name, "no run")})
            continue
        rates = [r["events"] / r["seconds"] for r in runs]
        cpu = [r["cpu_s"] / r["events"] * 1e6 for r in runs]
        rss = [r["rss_kib"] / 1024 for r in runs]
        out.append(
            {
                "client": name,
                "events_per_s": statistics.median(rates),
                "rate_range": (min(rates), max(rates)),
                "cpu_us": statistics.median(cpu),
                "cpu_range": (min(cpu), max(cpu)),
                "rss_mib": statistics.median(rss),
                "runs": len(runs),
                "all_arrived": all(_ok(name, r) for r in runs),
                "events": runs[0]["expected"],
                "decoder": runs[0].get("decoder"),
                "why": result["why"].get(name),
            }
        )
    return out


def markdown(result: dict[str, Any], table: Any, verdict: Any) -> str:
    rs = rows(result)
    by = {r["client"]: r for r in rs}
    ref = by.get(REFERENCE, {}).get("events_per_s")
    floor = by.get("picows + orjson", {}).get("events_per_s")
    lines = []
    for r in rs:
        if "events_per_s" not in r:
            lines.append([r["client"], "-", "-", "-", "-", "-", "-", f"not run: {r['why']}"])
            continue
        lo, hi = r["rate_range"]
        clo, chi = r["cpu_range"]
        note = r["why"] or ""
        if r["decoder"]:
            note = f"decoder: {r['decoder']}" + (f"; {note}" if note else "")
        lines.append(
            [
                r["client"],
                f"{r['events_per_s']:,.0f} ({lo / 1e3:,.0f}k-{hi / 1e3:,.0f}k)",
                f"{r['cpu_us']:.2f} ({clo:.2f}-{chi:.2f})",
                f"{r['rss_mib']:.0f}",
                f"{r['events_per_s'] / ref:.2f}x" if ref else "-",
                f"{r['events_per_s'] / floor:.2f}x" if floor else "-",
                "yes" if r["all_arrived"] else "**no**",
                note,
            ]
        )
    out = [
        table(
            [
                "client",
                f"events/s, median of {result['rounds']} (range)",
                "CPU us/event (range)",
                "peak RSS MiB",
                f"vs {REFERENCE}",
                "vs picows + orjson",
                "all arrived",
                "notes",
            ],
            lines,
        )
    ]
    targets = []
    for name in ("BinanceStream asyncio", "BinanceStream trio", RAW):
        r = by.get(name, {})
        if "events_per_s" in r and ref:
            ratio = r["events_per_s"] / ref
            goal = r["events_per_s"] / floor if floor else float("nan")
            targets.append(
                f"- {name}: {ratio:.2f}x {REFERENCE} (target >= 2.5x: {verdict(ratio >= 2.5)});"
                f" {goal:.2f}x picows + orjson (goal >= 0.5x: {verdict(goal >= 0.5)})"
            )
    out.append("\n" + "\n".join(targets))
    streams = ", ".join(f"`{k}` {v:,}" for k, v in sorted(result["per_stream"].items()))
    out.append(
        f"\nThe feed: {result['feed']:,} events of {len(SYMBOLS)} symbols ({streams});"
        f" cryptofeed subscribes all but `trade` (it has no such channel), so its run counts"
        f" fewer events. The section took {result['seconds']:.0f} s."
    )
    return "\n".join(out)


METHOD = (__doc__ or "").split("Method: ", 1)[1].split("\n\n", 1)[0].replace("\n", " ")

# (trades per symbol, rounds): a full run, and BENCH_QUICK=1
SIZES = ((10_000, 3), (3_000, 1))


def main() -> None:
    from run import _table, _verdict

    quick = os.environ.get("BENCH_QUICK") == "1"
    only = os.environ.get("BENCH_E2E_CLIENTS")
    result = measure(*SIZES[quick], clients=only.split(",") if only else None)
    print(METHOD + "\n")
    print(markdown(result, _table, _verdict))


if __name__ == "__main__":
    main()
