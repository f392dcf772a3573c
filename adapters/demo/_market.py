"""The demo's first half: a real ``BinanceStream`` against the exchange simulator, through the
fault proxy, under a scripted schedule of faults. Everything it saw is kept for the report."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import attrs

from ...fsm import (
    BinanceConfig,
    ConnectionAction,
    ConnectionConfig,
    PatternDetected,
    RaiseAlarm,
    ResolveAlarm,
    StateChanged,
    Wait,
)
from .._redact import redact_url
from ..binance._budget import budget_from_url
from ..binance._stream import BinanceStream
from ..binance._tracker import Gap
from ..websocket._logfields import action_log_fields
from ._view import View

__all__ = ["HOST_STOP", "MarketRecord", "is_failure", "run_market"]

STREAMS = ["ethusdt@kline_1m", "ethusdt@trade"]


@attrs.define
class MarketRecord:
    duration: float = 0.0
    transitions: list[tuple[float, str, str, str, str]] = attrs.field(factory=list)
    faults: list[tuple[float, str]] = attrs.field(factory=list)
    alarms: list[list[float | None]] = attrs.field(factory=list)
    gaps: list[Gap] = attrs.field(factory=list)
    klines: dict[int, dict[str, Any]] = attrs.field(factory=dict)
    stats: dict[str, Any] = attrs.field(factory=dict)
    failures: list[dict[str, Any]] = attrs.field(factory=list)
    patterns: list[str] = attrs.field(factory=list)
    url: str = ""
    generated: bool = True
    #: wall-clock time (epoch seconds, UTC) of t = 0: the report shows clock times
    started_at: float = 0.0
    #: the connection's state and its reason once the host has stopped the stream (the
    #: statistics are read while it still runs, so their ``state`` is not the final one)
    final_state: str = "idle"
    final_reason: str = ""
    #: the simulator's market clock: ms since the epoch of its first trade, and how many times
    #: faster than the wall clock it runs (None: a real exchange, on the wall clock)
    market_start_ms: int | None = None
    market_speed: float | None = None
    #: time (as in ``transitions``) -> "drop" (a healthy connection lost) or "planned close"
    #: (a server's announced close); the other failures are failed attempts
    failure_types: dict[float, str] = attrs.field(factory=dict)


#: A host stopping a connection (the end of the run, a rotation's old leg) is not a failure.
HOST_STOP = "stopped by host"


def is_failure(source: str, target: str, reason: str) -> bool:
    """Whether a state change is a failure: a connection attempt or a live connection lost
    (the machine's ``fail``), not a stop by the host. The live view and the report count with
    this one rule."""
    return (
        source in ("connecting", "handshaking", "live")
        and target in ("backing_off", "alarmed", "closed")
        and reason != HOST_STOP
    )


Schedule = list[tuple[float, str, Callable[[], None]]]


def _schedule(exchange: Any, proxy: Any, loop_call: Callable[[Any], Any]) -> Schedule:
    def flip() -> None:
        proxy.flip_next = True

    def half_open(on: bool) -> Callable[[], None]:
        def apply() -> None:
            proxy.black_hole = on

        return apply

    def refuse() -> None:
        loop_call(proxy.stop_listening)
        loop_call(proxy.reset_all)

    def accept() -> None:
        port = proxy.port
        loop_call(lambda: proxy.start(port))

    def rate_limit() -> None:
        exchange.refuse_upgrades(429, retry_after=2)
        loop_call(proxy.reset_all)

    return [
        (2.0, "bad record MAC (one flipped TLS byte)", flip),
        (5.0, "half-open link (traffic black-holed)", half_open(True)),
        (9.0, "half-open link ends", half_open(False)),
        (11.0, "server restart (1 s down)", lambda: exchange.restart(down=1.0)),
        (15.0, "HTTP 429 with Retry-After 2", rate_limit),
        (20.0, "serverShutdown (grace 2 s)", lambda: exchange.server_shutdown(grace=2.0)),
        (24.0, "failure burst: connections refused", refuse),
        # long enough for four refused attempts (more than alarm_failures): an alarm
        (30.0, "connections accepted again", accept),
    ]


#: Faults that end an earlier one: injected on time, whatever the connection's state.
ENDING_FAULTS = ("half-open link ends", "connections accepted again")


async def run_market(
    view: View,
    *,
    quick: bool,
    url: str | None,
    exporter: Any = None,
    budget: str | None = None,
) -> MarketRecord:
    """Run the schedule (or, with ``url``, just stream the real exchange for a while)."""
    t0 = time.monotonic()
    record = MarketRecord(started_at=time.time())
    streams: list[BinanceStream] = []  # the stream, once made: its connection's records
    factor = 0.7 if quick else 1.0

    def now() -> float:
        return time.monotonic() - t0

    def on_action(leg: str, action: ConnectionAction) -> None:
        t = now()
        if isinstance(action, StateChanged):
            record.transitions.append((t, leg, action.source, action.target, action.reason))
            view.connection_state = f"{action.target} ({leg})"
            if is_failure(action.source, action.target, action.reason):
                view.failures += 1
                # drop or failed attempt: the machine's record of the failure just handled
                ws = streams[0].connection if streams else None
                history = ws.machine.history if ws is not None and ws.name == leg else ()
                last = history[-1] if history else None
                if last is not None and last.kind == "server_closed":
                    record.failure_types[t] = "planned close"
                elif action.source == "live" and last is not None and not last.attempt_failed:
                    record.failure_types[t] = "drop"
        elif isinstance(action, RaiseAlarm):
            record.alarms.append([t, None])
            view.alarms = (view.alarms[0] + 1, view.alarms[1])
        elif isinstance(action, ResolveAlarm):
            if record.alarms and record.alarms[-1][1] is None:
                record.alarms[-1][1] = t
            view.alarms = (view.alarms[0], view.alarms[1] + 1)
        elif isinstance(action, PatternDetected):
            record.patterns.append(action.report.describe())
        logged = action_log_fields(action, leg)  # the library's own log format
        if logged is not None and not isinstance(action, Wait):
            view.line(t=round(t, 2), **logged[1])

    def on_gap(gap: Gap) -> None:
        record.gaps.append(gap)
        view.gaps += 1
        view.missing += gap.count
        view.line(
            t=round(now(), 2),
            event="gap",
            stream=gap.stream,
            field=gap.field,
            first=gap.first,
            last=gap.last,
            count=gap.count,
        )

    config = ConnectionConfig(
        initial_delay=0.2,
        max_delay=2.0,
        jitter=0.1,
        ping_interval=0.5,
        pong_timeout=0.5,
        handshake_timeout=1.5,
        alarm_failures=3,
        alarm_window=30.0,
    )
    # connections live seconds here, not 23.5 h: rotations by age happen between the faults
    rules = BinanceConfig(rotation_age=4.0 * factor, rotation_overlap_timeout=3.0)
    # --budget: the attempts are shared with every demo (or collector) on the same ledger/Redis
    attempts = None
    if budget is not None:
        attempts = budget_from_url(budget, rules.connect_attempts, rules.connect_window)

    def announce_budget() -> None:  # after the market's own first line
        if attempts is not None:
            shown = attempts.stats()
            view.line(
                event="budget",
                backend=shown["backend"],
                store=shown.get("store", "this process"),
                limit=shown["limit"],
            )

    if url is not None:
        record.generated = False
        record.url = redact_url(url)  # the report and the view never show a secret
        view.phase = f"market data from {record.url}"
        announce_budget()
        streams.append(
            BinanceStream(
                STREAMS,
                base_url=url,
                config=config,
                on_gap=on_gap,
                on_action=on_action,
                attempt_budget=attempts,
                name="binance",
            )
        )
        await _consume(
            view,
            record,
            streams[0],
            exporter,
            30.0 * factor,
            now,
            [],
        )
        return record

    import trustme

    from ...specs.exchange import Exchange, FaultProxy, MarketConfig

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    import ssl

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    market = MarketConfig(trades_per_second=200.0, speed=3000.0, seed=11)
    record.market_start_ms, record.market_speed = market.start_ms, market.speed
    view.phase = "market data under fire"
    view.line(
        event="market",
        source="exchange simulator on 127.0.0.1 (TLS)",
        prices="generated (seeded random walk, clustered volatility): not market data",
        streams=",".join(STREAMS),
        speed="3000x (a 1-minute kline every 0.02 s)",
    )
    announce_budget()
    with Exchange(ssl_context=server_ctx, market=market, ping_interval=5.0) as exchange:
        proxy = FaultProxy(exchange.port)
        exchange.call(proxy.start)
        record.url = f"wss://127.0.0.1:{proxy.port}"
        stream = BinanceStream(
            STREAMS,
            base_url=record.url,
            ssl_context=client_ctx,
            config=config,
            binance=rules,
            on_gap=on_gap,
            on_action=on_action,
            attempt_budget=attempts,
            name="binance",
            # what a fault loses comes back from the simulator's REST (candles; trade
            # streams need an API key, so their gaps stay reported): _backfill.py
            backfill=True,
            rest_url=exchange.rest_url,
        )
        streams.append(stream)
        schedule = [
            (t * factor, name, fn) for t, name, fn in _schedule(exchange, proxy, exchange.call)
        ]
        duration = 34.0 * factor + 2.0
        try:
            await _consume(view, record, stream, exporter, duration, now, schedule)
        finally:
            exchange.call(proxy.aclose)
    return record


async def _consume(
    view: View,
    record: MarketRecord,
    stream: BinanceStream,
    exporter: Any,
    duration: float,
    now: Callable[[], float],
    schedule: Schedule,
) -> None:
    if exporter is not None:
        exporter.register(stream, name="binance")

    faults_done = anyio.Event()

    async def faults() -> None:
        for at, name, fn in schedule:
            await anyio.sleep(max(0.0, at - now()))
            if name not in ENDING_FAULTS:
                # Each fault is meant for a healthy connection (live, subscriptions verified):
                # with backoff that keeps growing until a connection is healthy (R1.4), the
                # previous fault's recovery may still be under way at the nominal time.
                with anyio.move_on_after(10.0):
                    while not stream.get_connection_stats()["healthy"]:
                        await anyio.sleep(0.05)
            record.faults.append((now(), name))
            view.line(t=round(now(), 2), event="fault", fault=name)
            fn()
        faults_done.set()

    async def consume() -> None:
        async for event in stream:
            view.messages += 1
            data = event["data"]
            if event["stream"].endswith("kline_1m") and data["k"]["x"]:
                k = data["k"]
                record.klines[k["t"]] = k
            if event.get("backfill"):
                view.backfilled += 1

    async def ticker() -> None:
        seen: dict[str, int] = {}
        while True:
            names = [name for at, name, _ in schedule if at > now()]
            view.progress = (min(now(), duration), duration, f"next: {names[0]}" if names else "")
            for reason, count in list(stream.rotations.items()):
                if count > seen.get(reason, 0):
                    seen[reason] = count
                    view.line(t=round(now(), 2), event="rotation", reason=reason, count=count)
            view.rotations = sum(seen.values())
            view.refresh()
            await anyio.sleep(0.1)

    async with stream, anyio.create_task_group() as tg:
        tg.start_soon(faults)
        tg.start_soon(consume)
        tg.start_soon(ticker)
        await anyio.sleep(duration)
        with anyio.move_on_after(15.0):  # every fault injected, even when some came late
            await faults_done.wait()
        if stream.state != "live":  # end on a live connection when the schedule allows
            with anyio.move_on_after(5.0):
                while stream.state != "live":
                    await anyio.sleep(0.05)
        record.stats = stream.get_connection_stats()
        tg.cancel_scope.cancel()
    record.duration = now()
    if record.transitions:
        _, _, _, record.final_state, record.final_reason = record.transitions[-1]
    record.failures = [
        {
            "t": round(t, 2),
            "connection": leg,
            "state": source,
            "reason": reason,
            # docs/connection.md's words: the failure of a healthy connection is a drop
            "failure": record.failure_types.get(t, "failed attempt"),
        }
        for t, leg, source, target, reason in record.transitions
        if is_failure(source, target, reason)
    ]
