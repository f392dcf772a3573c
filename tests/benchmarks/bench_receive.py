"""The receive path (issue 18): msgs/s, latency and memory per connection of ResilientWebSocket
(asyncio and trio) against the `websockets` client, on the same wss transport.

Method: the server (``receive_server.py``) runs in its own process and writes pre-encoded
147-byte text frames, so it is not what is measured; each client run is a fresh process; the
clients take turns within each round (interleaved rounds) and each figure is a median over the
rounds, compared as a ratio of medians within this one run. Every run checks that all messages
arrived, in order (after the clock stops).

``python bench_receive.py`` prints the tables; ``run.py`` puts them into docs/performance.md.
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

# run.py's _table (headers, rows) -> markdown and _verdict, passed in (run imports this module)
Table = Callable[[list[str], list[list[Any]]], str]
Verdict = Callable[[bool], str]
CLIENTS = ("ResilientWebSocket asyncio", "ResilientWebSocket trio", "websockets")


# -- the clients (each run in a process of its own) --------------------------------------------
def _seq(message: str | bytes) -> int:
    text = message if isinstance(message, str) else message.decode()
    at = text.index('"seq":') + 6
    return int(text[at : at + 9])


def _context(ca: str) -> Any:
    import ssl

    context = ssl.create_default_context(cafile=ca)
    return context


async def _ours(url: str, ca: str, n: int) -> dict[str, Any]:
    from regulator.adapters.websocket import ResilientWebSocket
    from regulator.fsm import ConnectionConfig

    got: list[Any] = []
    config = ConnectionConfig(ping_interval=60.0, pong_timeout=10.0)
    start = 0.0
    async with ResilientWebSocket(url, ssl_context=_context(ca), config=config) as ws:
        async for message in ws:
            if not got:
                start = time.perf_counter()
            got.append(message)
            if len(got) == n:
                break
        elapsed = time.perf_counter() - start
        dropped = ws.messages_dropped
    return {"rate": (n - 1) / elapsed, "in_order": _in_order(got, n), "dropped": dropped}


async def _websockets(url: str, ca: str, n: int) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    got: list[Any] = []
    async with connect(
        url, ssl=_context(ca), compression=None, max_size=1 << 20, ping_interval=None
    ) as ws:
        got.append(await ws.recv())
        start = time.perf_counter()
        for _ in range(n - 1):
            got.append(await ws.recv())
        elapsed = time.perf_counter() - start
    return {"rate": (n - 1) / elapsed, "in_order": _in_order(got, n), "dropped": 0}


def _in_order(got: list[Any], n: int) -> bool:
    return len(got) == n and all(_seq(m) == i for i, m in enumerate(got))


WARMUP = 100  # the first 0.1 s (connection setup, first allocations) is not steady state


async def _latency(name: str, url: str, ca: str, n: int) -> list[float]:
    return (await _delays(name, url, ca, n))[WARMUP:]


async def _delays(name: str, url: str, ca: str, n: int) -> list[float]:
    delays: list[float] = []
    if name == "websockets":
        from websockets.asyncio.client import connect

        async with connect(url, ssl=_context(ca), compression=None, ping_interval=None) as ws:
            for _ in range(n):
                message = await ws.recv()
                delays.append(time.perf_counter() - json.loads(message)["t"])
        return delays
    from regulator.adapters.websocket import ResilientWebSocket
    from regulator.fsm import ConnectionConfig

    config = ConnectionConfig(ping_interval=60.0, pong_timeout=10.0)
    async with ResilientWebSocket(url, ssl_context=_context(ca), config=config) as ws:
        async for message in ws:
            delays.append(time.perf_counter() - json.loads(message)["t"])
            if len(delays) == n:
                break
    return delays


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _memory(name: str, url: str, ca: str, count: int) -> float:
    """RSS growth per connection past the first: the imports and the first connection's lazy
    set-up (modules httpx or websockets load on first use) are not a connection's cost."""
    import anyio
    from regulator.adapters.websocket import ResilientWebSocket
    from regulator.fsm import ConnectionConfig
    from websockets.asyncio.client import connect

    context = _context(ca)  # one shared context, as a host with many connections does
    config = ConnectionConfig(ping_interval=60.0, pong_timeout=10.0)

    async def open_one(stack: contextlib.AsyncExitStack) -> Any:
        if name == "websockets":
            return await stack.enter_async_context(
                connect(url, ssl=context, compression=None, ping_interval=None)
            )
        return await stack.enter_async_context(
            ResilientWebSocket(url, ssl_context=context, config=config)
        )

    async def live(sockets: list[Any]) -> None:
        if name == "websockets":
            return
        with anyio.fail_after(120):
            while sum(ws.state == "live" for ws in sockets) < len(sockets):
                await anyio.sleep(0.05)

    async with contextlib.AsyncExitStack() as stack:
        first = [await open_one(stack)]
        await live(first)
        await anyio.sleep(0.2)
        before = _rss()
        sockets = [await open_one(stack) for _ in range(count)]
        await live(sockets)
        await anyio.sleep(0.5)
        return (_rss() - before) / count


def client_main(argv: list[str]) -> None:
    import logging

    import anyio

    logging.getLogger("regulator").addHandler(logging.NullHandler())
    logging.getLogger("regulator").propagate = False
    task, name, url, ca, arg = argv
    backend = "trio" if name.endswith("trio") else "asyncio"
    result: Any
    if task == "throughput":
        fn = _websockets if name == "websockets" else _ours
        result = anyio.run(fn, url, ca, int(arg), backend=backend)
    elif task == "latency":
        result = anyio.run(_latency, name, url, ca, int(arg), backend=backend)
    else:
        result = anyio.run(_memory, name, url, ca, int(arg), backend=backend)
    print(json.dumps(result))


# -- the driver ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _server() -> Iterator[tuple[int, str]]:
    from _faultbed import Certs

    certs = Certs()
    with tempfile.TemporaryDirectory() as tmp:
        pem = os.path.join(tmp, "server.pem")
        ca = os.path.join(tmp, "ca.pem")
        certs.cert.private_key_and_cert_chain_pem.write_to_path(pem)
        certs.ca.cert_pem.write_to_path(ca)
        server = subprocess.Popen(
            [sys.executable, str(HERE / "receive_server.py"), pem, pem],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            yield port, ca
        finally:
            server.terminate()
            server.wait(10)


# BENCH_BASELINE_PYTHON=/path/to/other/venv/bin/python adds a row: the same client run by
# another installation of regulator (e.g. the main branch's venv), for a before/after figure.
BASELINE = os.environ.get("BENCH_BASELINE_PYTHON")
BASELINE_NAME = "ResilientWebSocket asyncio, baseline"


def _client(task: str, name: str, url: str, ca: str, arg: int) -> Any:
    python = BASELINE if name == BASELINE_NAME and BASELINE else sys.executable
    out = subprocess.run(
        [python, str(HERE / "bench_receive.py"), task, name, url, ca, str(arg)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def throughput(n: int, rounds: int) -> list[dict[str, Any]]:
    with _server() as (port, ca):
        url = f"wss://127.0.0.1:{port}/blast/{n}"
        clients = (*CLIENTS, BASELINE_NAME) if BASELINE else CLIENTS
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in clients}
        for i in range(rounds):
            order = clients if i % 2 == 0 else clients[::-1]  # neither goes first every time
            for name in order:
                runs[name].append(_client("throughput", name, url, ca, n))
    base = statistics.median(r["rate"] for r in runs["websockets"])
    rows = []
    for name in runs:
        rate = statistics.median(r["rate"] for r in runs[name])
        rows.append(
            {
                "client": name,
                "msgs_per_s": rate,
                "vs_websockets": rate / base,
                "runs": len(runs[name]),
                "all_in_order": all(r["in_order"] and r["dropped"] == 0 for r in runs[name]),
            }
        )
    return rows


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def latency(rate: float, n: int, rounds: int) -> list[dict[str, Any]]:
    """Per round, each client's p50 and p99 over its ``n`` messages (less the warm-up); the
    figure is the median over the rounds of those (one noisy round moves neither), beside the
    p99 of all rounds' delays pooled."""
    per_round: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
    pooled: dict[str, list[float]] = {name: [] for name in CLIENTS}
    with _server() as (port, ca):
        url = f"wss://127.0.0.1:{port}/paced/{n}/{rate:g}"
        for i in range(rounds):
            order = CLIENTS if i % 2 == 0 else CLIENTS[::-1]
            for name in order:
                delays = _client("latency", name, url, ca, n)
                assert delays, name
                per_round[name].append((_percentile(delays, 0.5), _percentile(delays, 0.99)))
                pooled[name].extend(delays)
    rows = []
    for name in CLIENTS:
        rows.append(
            {
                "client": name,
                "rounds": len(per_round[name]),
                "per_round": len(pooled[name]) // len(per_round[name]),
                "p50_ms": statistics.median(p50 for p50, _ in per_round[name]) * 1e3,
                "p99_ms": statistics.median(p99 for _, p99 in per_round[name]) * 1e3,
                "pooled_p99_ms": _percentile(pooled[name], 0.99) * 1e3,
                "p50s_ms": [round(p50 * 1e3, 3) for p50, _ in per_round[name]],
                "p99s_ms": [round(p99 * 1e3, 3) for _, p99 in per_round[name]],
            }
        )
    return rows


def memory(count: int) -> list[dict[str, Any]]:
    with _server() as (port, ca):
        url = f"wss://127.0.0.1:{port}/idle"
        return [
            {"client": name, "kib": _client("memory", name, url, ca, count) / 1024}
            for name in CLIENTS
        ]


def parsers(n: int, rounds: int) -> list[dict[str, Any]]:
    """In-memory decoding of the benchmark's frames, cut into 16 KiB reads (a TLS record),
    by each candidate parser; us per message, median of interleaved rounds."""
    from _wsserve import frame
    from receive_server import message
    from regulator.adapters.websocket._frames import FrameDecoder
    from websockets.client import ClientProtocol
    from websockets.protocol import State
    from websockets.uri import parse_uri
    from wsproto.connection import Connection, ConnectionType

    blob = b"".join(frame(message(i)) for i in range(n))
    chunks = [blob[i : i + 16384] for i in range(0, len(blob), 16384)]

    def ours() -> int:
        decoder = FrameDecoder(1 << 20)
        return sum(len(decoder.feed(chunk)) for chunk in chunks)

    def with_wsproto() -> int:
        conn = Connection(ConnectionType.CLIENT)
        count = 0
        for chunk in chunks:
            conn.receive_data(chunk)
            count += sum(bool(getattr(e, "message_finished", False)) for e in conn.events())
        return count

    def with_websockets() -> int:
        proto = ClientProtocol(parse_uri("wss://x/"), max_size=1 << 20, state=State.OPEN)
        count = 0
        for chunk in chunks:
            proto.receive_data(chunk)
            count += len(proto.events_received())
        return count

    candidates = {
        "regulator `_frames`": ours,
        "`websockets` sans-I/O `ClientProtocol`": with_websockets,
        "wsproto `Connection` (before)": with_wsproto,
    }
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start = time.perf_counter()
            assert fn() == n, name  # every message decoded
            times[name].append((time.perf_counter() - start) / n * 1e6)
    return [{"parser": name, "us_per_msg": statistics.median(v)} for name, v in times.items()]


METHOD = (
    "wss on 127.0.0.1. The server (`tests/benchmarks/receive_server.py`) runs in its own"
    " process: a raw asyncio TLS server that completes the upgrade and writes pre-encoded"
    " 147-byte text frames (kline-like JSON, numbered) in 1 MiB writes, so it is not what is"
    " measured. Every client run is a fresh process; the clients take turns within each round"
    " (the order reversed every other round) and each figure is the median over the rounds,"
    " compared as a ratio of medians within this one run. Each run checks, after its clock"
    " stops, that every message arrived once and in order (and none was dropped). Latency: the"
    " server sends 1,000 msg/s, each stamped with `time.perf_counter()` (one clock across"
    " processes on Linux); each client runs 9 interleaved rounds of 5,000 messages, the first"
    " 100 of each left out (connection setup); per round, a client's p50 and p99 are taken"
    " over its 4,900 delays (a p99 stands on 49 of them) and the figure is the median over the"
    " rounds of those, so one round disturbed by a neighbour on the shared machine moves"
    " neither; the p99 of all rounds' delays pooled and the range of the rounds' p99 are shown"
    " beside. Memory: RSS growth of the client process per live idle wss connection past a"
    " first one (so imports and lazy set-up are not counted), all sharing one TLS context."
    " `websockets` runs with `compression=None`."
)


def latency_table(lat: list[dict[str, Any]], table: Table) -> str:
    """Each client's latency in detail: the medians over rounds, the pooled p99, the range."""
    rows = [
        [
            r["client"],
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['pooled_p99_ms']:.3f}",
            f"{min(r['p99s_ms']):.3f} - {max(r['p99s_ms']):.3f}",
        ]
        for r in lat
    ]
    rounds = lat[0]["rounds"]
    return table(
        [
            f"client ({rounds} rounds x {lat[0]['per_round']:,} delays)",
            "p50 ms (median of rounds)",
            "p99 ms (median of rounds)",
            "p99 ms (pooled)",
            "p99 ms (range of rounds)",
        ],
        rows,
    )


def tables(
    rows: list[dict[str, Any]],
    lat: list[dict[str, Any]],
    mem: list[dict[str, Any]],
    table: Table,
    verdict: Verdict,
) -> str:
    lat_by = {r["client"]: r for r in lat}
    mem_by = {r["client"]: r for r in mem}
    base_lat, base_mem = lat_by["websockets"], mem_by["websockets"]
    out = []
    for r in rows:
        if r["client"] not in lat_by:  # the baseline: throughput only
            out.append([r["client"], f"{r['msgs_per_s']:,.0f}", f"{r['vs_websockets']:.2f}"])
            out[-1] += ["yes" if r["all_in_order"] else "**no**", "-", "-", "-", "-", "-"]
            continue
        ours = r["client"] != "websockets"
        la, me = lat_by[r["client"]], mem_by[r["client"]]
        out.append(
            [
                r["client"],
                f"{r['msgs_per_s']:,.0f}",
                f"{r['vs_websockets']:.2f}",
                "yes" if r["all_in_order"] else "**no**",
                verdict(r["vs_websockets"] >= 1.5) if ours else "-",
                f"{la['p50_ms']:.3f} / {la['p99_ms']:.3f}",
                verdict(la["p50_ms"] <= base_lat["p50_ms"])
                + " / "
                + verdict(la["p99_ms"] <= base_lat["p99_ms"])
                if ours
                else "-",
                f"{me['kib']:.0f}",
                verdict(me["kib"] <= base_mem["kib"]) if ours else "-",
            ]
        )
    runs = rows[0]["runs"]
    return table(
        [
            "client",
            f"msgs/s (median of {runs})",
            "vs websockets",
            "all in order",
            ">= 1.5x (goal 2x)",
            "latency p50 / p99 ms at 1,000 msg/s (medians of rounds)",
            "p50 / p99 <= websockets",
            "KiB per connection",
            "<= websockets",
        ],
        out,
    )


# sizes of a full run and of BENCH_QUICK=1: (messages, rounds) per part
SIZES = {
    "parsers": ((100_000, 5), (20_000, 1)),
    "throughput": ((200_000, 5), (50_000, 1)),
    # 4,900 delays per client and round past the warm-up: a p99 stands on 49 of them
    "latency": ((5_000, 9), (1_000, 1)),
    "memory": ((200, 1), (50, 1)),
}


def sizes(part: str) -> tuple[int, int]:
    full, quick = SIZES[part]
    return quick if os.environ.get("BENCH_QUICK") == "1" else full


def main() -> None:
    from run import _table, _verdict

    # BENCH_RECEIVE_PART=latency runs that part alone (a quick look while working on it)
    only = os.environ.get("BENCH_RECEIVE_PART")
    started = time.perf_counter()
    if only == "latency":
        for row in latency(1000.0, *sizes("latency")):
            print(row)
        print(f"\n{time.perf_counter() - started:.0f} s")
        return
    for row in parsers(*sizes("parsers")):
        print(f"| {row['parser']} | {row['us_per_msg']:.2f} |")
    rows = throughput(*sizes("throughput"))
    lat = latency(1000.0, *sizes("latency"))
    mem = memory(sizes("memory")[0])
    print(tables(rows, lat, mem, _table, _verdict))
    print()
    print(latency_table(lat, _table))
    for row in lat:
        print(row)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        client_main(sys.argv[1:])
    else:
        main()
