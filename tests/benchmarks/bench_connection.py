"""Connection benchmarks on loopback: throughput, latency, detection, recovery, memory, soak."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any, ClassVar

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _faultbed import Certs, FaultBed
from httpx_ws import AsyncWebSocketSession, aconnect_ws
from regulator.adapters.websocket import ResilientWebSocket
from regulator.fsm import (
    ConnectionConfig,
    ConnectionFailed,
    ConnectionMachine,
    HandshakeSucceeded,
    IllegalEventError,
    Start,
    Tick,
    TransportConnected,
    load_schedule,
    simulate,
)
from websockets.asyncio.server import serve

KLINE = json.dumps(
    {
        "stream": "ethusdt@kline_1m",
        "data": {
            "e": "kline",
            "E": 1700000000000,
            "s": "ETHUSDT",
            "k": {
                "t": 1700000000000,
                "o": "2051.12",
                "c": "2052.40",
                "h": "2053.00",
                "l": "2050.10",
                "v": "812.3",
            },
        },
    }
)


class Blaster:
    """A websockets server (own thread and loop) that sends `count` prebuilt messages per
    connection, then closes; `rate` > 0 paces them and stamps each with perf_counter()."""

    def __init__(self, certs: Certs | None) -> None:
        self.ssl = certs.server_context() if certs else None
        self.count = 0
        self.rate = 0.0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result()

    async def _start(self) -> None:
        self.server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            ssl=self.ssl,
            compression=None,
            ping_interval=None,
            max_size=None,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handler(self, ws: Any) -> None:
        if self.rate:
            gap = 1.0 / self.rate
            start = time.perf_counter()
            for i in range(self.count):
                delay = start + i * gap - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(f'{{"t":{time.perf_counter()!r}}}')
        else:
            for _ in range(self.count):
                await ws.send(KLINE)
        await ws.wait_closed()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)


async def _resilient(url: str, ctx: Any, n: int) -> float:
    got = 0
    async with ResilientWebSocket(url, ssl_context=ctx, max_message_bytes=1 << 20) as ws:
        async for _ in ws:
            if got == 0:
                start = time.perf_counter()
            got += 1
            if got == n:
                return n / (time.perf_counter() - start)
    raise AssertionError("stream ended early")


async def _raw_httpx_ws(url: str, ctx: Any, n: int) -> float:
    ws: AsyncWebSocketSession  # aconnect_ws is generic in its session_class
    async with (
        httpx.AsyncClient(verify=ctx or True) as client,
        aconnect_ws(url, client, keepalive_ping_interval_seconds=None) as ws,
    ):
        await ws.receive_text()
        start = time.perf_counter()
        for _ in range(n - 1):
            await ws.receive_text()
        return (n - 1) / (time.perf_counter() - start)


async def _websockets(url: str, ctx: Any, n: int) -> float:
    from websockets.asyncio.client import connect

    async with connect(url, ssl=ctx, compression=None, max_size=None, ping_interval=None) as ws:
        await ws.recv()
        start = time.perf_counter()
        for _ in range(n - 1):
            await ws.recv()
        return (n - 1) / (time.perf_counter() - start)


def throughput(n: int, rounds: int) -> list[dict[str, Any]]:
    certs = Certs()
    rows = []
    for scheme in ("ws", "wss"):
        server = Blaster(certs if scheme == "wss" else None)
        server.count = n
        url = f"{scheme}://127.0.0.1:{server.port}/"
        ctx = certs.client_context() if scheme == "wss" else None
        for backend in ("asyncio", "trio"):
            clients = [("ResilientWebSocket", _resilient), ("raw httpx-ws", _raw_httpx_ws)]
            if backend == "asyncio":
                clients.append(("websockets", _websockets))
            rates: dict[str, list[float]] = {name: [] for name, _ in clients}
            for _ in range(rounds):  # interleaved: every client once per round
                for name, fn in clients:
                    rates[name].append(anyio.run(fn, url, ctx, n, backend=backend))
            base = statistics.median(rates["raw httpx-ws"])
            for name, values in rates.items():
                rows.append(
                    {
                        "scheme": scheme,
                        "backend": backend,
                        "client": name,
                        "msgs_per_s": statistics.median(values),
                        "vs_raw_httpx_ws": statistics.median(values) / base,
                    }
                )
        server.close()
    return rows


def latency(rate: float = 1000.0, seconds: float = 3.0) -> dict[str, float]:
    certs = Certs()
    server = Blaster(certs)
    server.count, server.rate = int(rate * seconds), rate

    async def run() -> list[float]:
        delays = []
        async with ResilientWebSocket(
            f"wss://127.0.0.1:{server.port}/", ssl_context=certs.client_context()
        ) as ws:
            async for raw in ws:
                delays.append(time.perf_counter() - json.loads(raw)["t"])
                if len(delays) == server.count:
                    return delays
        return delays

    delays = sorted(anyio.run(run))
    server.close()
    return {
        "rate": rate,
        "count": len(delays),
        "p50_ms": delays[len(delays) // 2] * 1e3,
        "p99_ms": delays[int(len(delays) * 0.99)] * 1e3,
    }


def detection_and_recovery(reps: int = 3) -> dict[str, Any]:
    cfg = ConnectionConfig(
        ping_interval=0.5,
        pong_timeout=0.5,
        initial_delay=0.5,
        max_delay=0.5,
        jitter=0.0,
        handshake_timeout=2.0,
        alarm_failures=1000,
    )
    detect, recover, budgets = [], [], []

    async def once(bed: FaultBed) -> None:
        async with ResilientWebSocket(
            bed.url, config=cfg, ssl_context=bed.certs.client_context()
        ) as ws:
            while ws.state != "live":
                await anyio.sleep(0.005)
            await anyio.sleep(0.2)
            bed.black_hole()
            t0 = time.perf_counter()
            while ws.state == "live":
                await anyio.sleep(0.002)
            detect.append(time.perf_counter() - t0)
            bed.black_hole(False)
            await anyio.to_thread.run_sync(bed.refuse_connections)
            while ws.get_connection_stats()["reconnect_statistics"]["failures"] < 3:
                await anyio.sleep(0.002)
            await anyio.to_thread.run_sync(bed.accept_connections)
            t1 = time.perf_counter()
            retry_at = ws.machine.retry_at
            remaining = max(0.0, (retry_at or 0) - anyio.current_time())
            while ws.state != "live":
                await anyio.sleep(0.002)
            recover.append(time.perf_counter() - t1)
            budgets.append(remaining)

    for _ in range(reps):
        with FaultBed(interval=0.05) as bed:
            anyio.run(once, bed)
    return {
        "detect_s": statistics.median(detect),
        "detect_max_s": max(detect),
        "detect_target_s": cfg.ping_interval + cfg.pong_timeout + 0.1,
        "recover_s": statistics.median(recover),
        "recover_max_s": max(recover),
        "recover_minus_backoff_max_s": max(r - b for r, b in zip(recover, budgets, strict=True)),
    }


class DictTable:
    """The same lifecycle as a 20-line dict table with the same guards: the floor a
    transition's execution is compared with (no bookkeeping, no actions)."""

    ROWS: ClassVar[dict[tuple[str, str], list[tuple[str, str | None]]]] = {
        ("idle", "start"): [("connecting", None)],
        ("connecting", "transport_connected"): [("handshaking", None)],
        ("handshaking", "handshake_succeeded"): [("live", None)],
        **{
            (source, "fail"): [
                ("closed", "fatal_or_exhausted"),
                ("alarmed", "alarm_raised"),
                ("backing_off", None),
            ]
            for source in ("connecting", "handshaking", "live")
        },
        ("backing_off", "retry"): [("connecting", None)],
        ("alarmed", "retry"): [("connecting", None)],
    }

    def __init__(self) -> None:
        self.state = "idle"

    def fatal_or_exhausted(self, decision: Any) -> bool:
        return bool(decision.target == "closed")

    def alarm_raised(self, decision: Any) -> bool:
        return bool(decision.target == "alarmed")

    def send(self, event: str, decision: Any = None) -> None:
        for target, guard in self.ROWS.get((self.state, event), ()):
            if guard is None or getattr(self, guard)(decision):
                self.state = target
                return
        raise IllegalEventError("DictTable", event, self.state)


class ViaSend(ConnectionMachine):
    """The same machine, every transition through python-statemachine's send() (the v0.1
    engine)."""

    _execute_with_send: ClassVar[bool] = True


def transition_cost(cycles: int = 3000, rounds: int = 7) -> dict[str, Any]:
    """One lifecycle transition: connecting -> handshaking -> live -> (ssl drop) backing_off
    -> (Tick at the retry) connecting, per transition. handle() does all its bookkeeping
    (actions, deadlines, the failure record, the drop for the pattern detector); the dict
    table only moves the state. Interleaved rounds, median us per transition."""
    cfg = ConnectionConfig(jitter=0.0, alarm_failures=10**6, stable_after=0.0)

    def machine_cycle(machine: ConnectionMachine) -> float:
        now = machine.last_event_at or 0.0
        start = time.perf_counter()
        for _ in range(cycles):
            now += 1.0
            machine.handle(TransportConnected(now=now))
            now += 1.0
            machine.handle(HandshakeSucceeded(now=now))
            now += 1.0
            machine.handle(ConnectionFailed(now=now, kind="ssl", reason="mac"))
            now = machine.retry_at or now
            machine.handle(Tick(now=now))
        return (time.perf_counter() - start) / (4 * cycles) * 1e6

    def machine_steps(machine: ConnectionMachine) -> list[float]:
        """The same cycle, each handle() timed alone (includes ~0.1 us of timer calls)."""
        clock = time.perf_counter
        spent = [0.0] * 4
        now = machine.last_event_at or 0.0
        for _ in range(cycles):
            events: list[Any] = [
                TransportConnected(now=now + 1.0),
                HandshakeSucceeded(now=now + 2.0),
                ConnectionFailed(now=now + 3.0, kind="ssl", reason="mac"),
            ]
            for i, event in enumerate(events):
                start = clock()
                machine.handle(event)
                spent[i] += clock() - start
            tick = Tick(now=machine.retry_at or now + 3.0)
            start = clock()
            machine.handle(tick)
            spent[3] += clock() - start
            now = tick.now
        return [s / cycles * 1e6 for s in spent]

    decision = types.SimpleNamespace(target="backing_off")

    def table_cycle(table: DictTable) -> float:
        start = time.perf_counter()
        for _ in range(cycles):
            table.send("transport_connected")
            table.send("handshake_succeeded")
            table.send("fail", decision)
            table.send("retry")
        return (time.perf_counter() - start) / (4 * cycles) * 1e6

    fast, slow, table = ConnectionMachine(cfg), ViaSend(cfg), DictTable()
    fast.handle(Start(now=0.0))
    slow.handle(Start(now=0.0))
    table.send("start")
    times: dict[str, list[float]] = {"handle": [], "send": [], "table": []}
    steps: list[list[float]] = []
    for _ in range(rounds):
        times["table"].append(table_cycle(table))
        times["handle"].append(machine_cycle(fast))
        times["send"].append(machine_cycle(slow))
        steps.append(machine_steps(fast))
    med = {k: statistics.median(v) for k, v in times.items()}
    names = ("transport_connected", "handshake_succeeded", "fail (ssl drop)", "retry (Tick)")
    per_step = {name: statistics.median(s[i] for s in steps) for i, name in enumerate(names)}
    return {
        "cycles": cycles,
        "rounds": rounds,
        "table_us": med["table"],
        "handle_us": med["handle"],
        "send_path_us": med["send"],
        "handle_ratio": med["handle"] / med["table"],
        "send_path_ratio": med["send"] / med["table"],
        "per_step_us": per_step,
    }


def simulation_speed(days: int = 30, repeats: int = 3) -> list[dict[str, Any]]:
    """CPU s per simulated day of each built-in schedule, the median of ``repeats`` runs after
    an untimed one (one run on a shared machine is as noisy as its neighbours); flaky-tls
    also over ``days`` days, once (linearity: CPU per day over the long run against one
    day)."""
    rows: list[dict[str, Any]] = []
    for name in ("hourly", "random", "flaky-tls", "outage", "flapping"):
        # one untimed run first: on this VM a run that follows an idle wait (the sections
        # before end in sleeps) took twice the CPU of the next one (0.049 vs 0.025 s hourly)
        simulate(load_schedule(name, seed=1), hours=24, seed=1)
        cpus = []
        for _ in range(repeats):
            start = time.process_time()
            result = simulate(load_schedule(name, seed=1), hours=24, seed=1)
            cpus.append(time.process_time() - start)
        cpu = statistics.median(cpus)
        start = time.process_time()
        lines = len(result.lines)  # formatted on this first read
        rows.append(
            {
                "schedule": name,
                "hours": 24,
                "transitions": len(result.timeline) - 1,
                "cpu_s": cpu,
                "days_per_cpu_s": 1.0 / cpu,
                "lines": lines,
                "lines_cpu_s": time.process_time() - start,
            }
        )
    one_day = next(r["cpu_s"] for r in rows if r["schedule"] == "flaky-tls")
    start = time.process_time()
    result = simulate(load_schedule("flaky-tls", seed=1), hours=24 * days, seed=1)
    cpu = time.process_time() - start
    rows.append(
        {
            "schedule": "flaky-tls",
            "hours": 24 * days,
            "transitions": len(result.timeline) - 1,
            "cpu_s": cpu,
            "days_per_cpu_s": days / cpu,
            "per_day_vs_one_day": cpu / days / one_day,
        }
    )
    return rows


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def memory(connections: int = 200) -> dict[str, Any]:
    async def run(bed: FaultBed) -> dict[str, Any]:
        before = _rss()
        async with contextlib.AsyncExitStack() as stack:  # LIFO exits keep anyio's scopes nested
            sockets = [
                await stack.enter_async_context(
                    ResilientWebSocket(bed.url, ssl_context=bed.certs.client_context())
                )
                for _ in range(connections)
            ]
            with anyio.fail_after(120):
                while sum(ws.state == "live" for ws in sockets) < connections:
                    await anyio.sleep(0.05)
            await anyio.sleep(0.5)
            one = _rss()
        return {
            "connections": connections,
            "rss_bytes_per_connection": (one - before) / connections,
        }

    with FaultBed(interval=1.0) as bed:
        return anyio.run(run, bed)


def soak(seconds: float = 60.0, connections: int = 10) -> dict[str, Any]:
    cfg = ConnectionConfig(
        initial_delay=0.05,
        max_delay=0.2,
        jitter=0.1,
        ping_interval=0.5,
        pong_timeout=0.5,
        alarm_failures=3,
        alarm_window=5.0,
    )

    async def run(bed: FaultBed) -> dict[str, Any]:
        samples = []
        async with contextlib.AsyncExitStack() as stack:
            sockets = [
                await stack.enter_async_context(
                    ResilientWebSocket(bed.url, config=cfg, ssl_context=bed.certs.client_context())
                )
                for _ in range(connections)
            ]
            start = time.perf_counter()
            next_sample = start
            while time.perf_counter() - start < seconds:
                await anyio.to_thread.run_sync(bed.reset)
                await anyio.sleep(0.3)
                if time.perf_counter() >= next_sample:
                    samples.append(_rss())
                    next_sample += seconds / 6
            failures = sum(
                ws.get_connection_stats()["reconnect_statistics"]["failures"] for ws in sockets
            )
        return {
            "seconds": seconds,
            "connections": connections,
            "failures": failures,
            "rss_mb": [round(s / 2**20, 1) for s in samples],
            "growth_second_half_mb": round((samples[-1] - samples[len(samples) // 2]) / 2**20, 1),
        }

    with FaultBed(interval=0.02) as bed:
        return anyio.run(run, bed)


if __name__ == "__main__":  # quick manual run
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(transition_cost())
    print(simulation_speed())


def scrape_time(streams: int = 100, scrapes: int = 50) -> dict[str, Any]:
    """Time to collect metrics with `streams` registered connections (not started: idle)."""
    from prometheus_client import generate_latest
    from regulator.adapters.prometheus import MetricsExporter

    exporter = MetricsExporter()
    sockets = [ResilientWebSocket(f"wss://127.0.0.1:9/s{i}") for i in range(streams)]
    for i, ws in enumerate(sockets):
        exporter.register(ws, name=f"s{i}")
    generate_latest(exporter.registry)
    times = []
    for _ in range(scrapes):
        start = time.perf_counter()
        body = generate_latest(exporter.registry)
        times.append(time.perf_counter() - start)
    return {"streams": streams, "median_ms": statistics.median(times) * 1e3, "bytes": len(body)}
