"""The Prometheus exporter, scraped over HTTP while real things fail."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import torch
from _amp import amp_step, batch, mlp
from _faultbed import FaultBed
from prometheus_client.parser import text_string_to_metric_families
from regulator.adapters.prometheus import MetricsExporter, start_metrics_server
from regulator.adapters.torch import GuardedGradScaler
from regulator.adapters.websocket import ResilientWebSocket
from regulator.fsm import ConnectionConfig

pytestmark = pytest.mark.anyio
# Only the flipped byte may fail the connection: pong and handshake deadlines leave room for a
# loaded 2-core machine (a late pong would add a timeout failure and an attempt).
FAST = ConnectionConfig(
    initial_delay=0.05,
    max_delay=0.2,
    jitter=0.0,
    ping_interval=0.2,
    pong_timeout=2.0,
    handshake_timeout=3.0,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[tuple[MetricsExporter, str]]:
    exporter, http = start_metrics_server(0)
    yield exporter, f"http://127.0.0.1:{http.server_port}/metrics"
    http.shutdown()
    http.server_close()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], metric: str, /, **labels: str) -> float:
    return samples[(metric, tuple(sorted(labels.items())))]


async def test_connection_metrics_follow_real_faults(server: tuple[MetricsExporter, str]) -> None:
    exporter, url = server
    with FaultBed() as bed:
        ws = ResilientWebSocket(
            bed.url, config=FAST, ssl_context=bed.certs.client_context(), name="raw"
        )
        exporter.register(ws, name="eth")
        async with ws:
            with anyio.fail_after(15):
                while ws.get_connection_stats()["messages_received"] < 5:
                    await anyio.sleep(0.01)
                bed.flip_byte()
                while ws.get_connection_stats()["reconnect_statistics"]["successes"] < 2:
                    await anyio.sleep(0.01)
            samples = await anyio.to_thread.run_sync(scrape, url)
            stats = ws.get_connection_stats()
        after_close = await anyio.to_thread.run_sync(scrape, url)
    assert (
        value(samples, "regulator_connection_state", name="eth", regulator_connection_state="live")
        == 1
    )
    assert (
        value(
            samples, "regulator_connection_state", name="eth", regulator_connection_state="alarmed"
        )
        == 0
    )
    assert value(samples, "regulator_connection_attempts_total", name="eth") == 2
    assert value(samples, "regulator_connection_successes_total", name="eth") == 2
    assert value(samples, "regulator_connection_failures_total", name="eth", kind="ssl") == 1
    assert value(samples, "regulator_connection_alarms_raised_total", name="eth") == 0
    received = value(samples, "regulator_connection_messages_received_total", name="eth")
    assert 5 <= received <= stats["messages_received"]
    assert 0 <= value(samples, "regulator_connection_seconds_since_last_message", name="eth") < 2
    assert value(samples, "regulator_connection_reconnect_delay_seconds_count", name="eth") == 1
    assert (
        value(samples, "regulator_connection_reconnect_delay_seconds_bucket", name="eth", le="0.1")
        == 1
    )
    assert value(samples, "regulator_connection_reconnect_delay_seconds_sum", name="eth") == 0.05
    assert not any("raw" in str(key) or "127.0.0.1" in str(key) for key in samples)  # no URL
    assert not any(key[0].startswith("regulator_connection") for key in after_close)  # closed: gone


def test_scaler_metrics_follow_real_overflows(server: tuple[MetricsExporter, str]) -> None:
    exporter, url = server
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, init_scale=2.0**16)
    exporter.register(scaler, name="informer")
    amp_step(model, opt, scaler, batch(0))
    for i in range(5):
        amp_step(model, opt, scaler, batch(i), poison=True)
    scaler.end_epoch()
    samples = scrape(url)
    assert value(samples, "regulator_scaler_steps_total", name="informer") == 6
    assert value(samples, "regulator_scaler_overflows_total", name="informer") == 5
    assert value(samples, "regulator_scaler_halvings_total", name="informer") == 1
    assert value(samples, "regulator_scaler_resets_total", name="informer") == 0
    assert value(samples, "regulator_scaler_scale", name="informer") == scaler.get_scale() == 1024.0
    assert value(samples, "regulator_scaler_epoch", name="informer") == 1
    assert (
        value(
            samples,
            "regulator_scaler_state",
            name="informer",
            regulator_scaler_state="overflow_halved",
        )
        == 1
    )
    del scaler, opt, model
    gc.collect()
    assert not any(key[0].startswith("regulator_scaler") for key in scrape(url))  # weakly held


def test_register_rejects_other_objects() -> None:
    with pytest.raises(
        TypeError,
        match="must be a ResilientWebSocket, a BinanceStream, a GuardedGradScaler or a"
        r" regulator\.fsm\.Machine",
    ):
        MetricsExporter().register(object(), name="x")


async def test_binance_metrics_gaps_rotations_and_monotonic_counters(
    server: tuple[MetricsExporter, str],
) -> None:
    from _exchangebed import ExchangeBed
    from _faultbed import Certs
    from regulator.adapters.binance import AttemptBudget, BinanceStream
    from regulator.fsm import BinanceConfig

    exporter, url = server
    config = ConnectionConfig(initial_delay=0.3, max_delay=0.3, jitter=0.0, ping_interval=5.0)
    with ExchangeBed(Certs()) as bed:
        stream = BinanceStream(
            ["ethusdt@trade"],
            base_url=bed.url,
            ssl_context=bed.certs.client_context(),
            config=config,
            binance=BinanceConfig(rotation_age=1.0),
            attempt_budget=AttemptBudget(300, 300.0),
        )
        exporter.register(stream, name="eth")
        async with stream:
            events: list[Any] = []
            with anyio.move_on_after(1.5):
                async for event in stream:
                    events.append(event)
            before = scrape(url)
            bed.reset()
            with anyio.move_on_after(2.5):
                async for event in stream:
                    events.append(event)
            after = scrape(url)
            truth = stream.get_connection_stats()
    binance = truth["binance"]
    assert value(after, "regulator_binance_gaps_total", name="eth") == binance["gaps_detected"] == 1
    assert (
        value(after, "regulator_binance_gap_events_missing_total", name="eth")
        == (binance["recent_gaps"][0]["count"])
    )
    rotated = value(after, "regulator_binance_rotations_total", name="eth", reason="age")
    assert rotated == binance["rotations"]["age"] >= 2
    assert value(after, "regulator_binance_streams_confirmed", name="eth") == 1.0
    rs = truth["reconnect_statistics"]
    assert value(after, "regulator_connection_attempts_total", name="eth") == rs["total_attempts"]
    assert value(after, "regulator_connection_failures_total", name="eth", kind="network") == 1
    # counters never go down across rotations (each rotation is a fresh connection machine)
    for key in ("regulator_connection_attempts_total", "regulator_connection_successes_total"):
        assert value(after, key, name="eth") >= value(before, key, name="eth") > 0
    assert value(after, "regulator_connection_state", name="eth", regulator_connection_state="live")
    del stream
    gc.collect()
    assert not any(key[0].startswith("regulator_binance") for key in scrape(url))


async def test_binance_backfill_metrics_match_the_stream(
    server: tuple[MetricsExporter, str],
) -> None:
    from _exchangebed import ExchangeBed
    from _faultbed import Certs
    from regulator.adapters.binance import AttemptBudget, BinanceStream

    exporter, url = server
    config = ConnectionConfig(initial_delay=0.5, max_delay=0.5, jitter=0.0, ping_interval=5.0)
    with ExchangeBed(Certs()) as bed:
        stream = BinanceStream(
            ["ethusdt@aggTrade"],
            base_url=bed.url,
            ssl_context=bed.certs.client_context(),
            config=config,
            attempt_budget=AttemptBudget(300, 300.0),
            backfill=True,
            rest_url=bed.exchange.rest_url,
        )
        exporter.register(stream, name="eth")
        async with stream:
            with anyio.move_on_after(1.0):
                async for _ in stream:
                    pass
            bed.reset()
            with anyio.move_on_after(2.0):
                async for _ in stream:
                    pass
            after = scrape(url)
            truth = stream.backfill_stats()
    assert truth is not None and truth["backfilled"]["ethusdt@aggTrade"] >= 30
    filled = value(after, "regulator_binance_backfilled_events_total", name="eth",
                   stream="ethusdt@aggTrade")  # fmt: skip
    assert filled == truth["backfilled"]["ethusdt@aggTrade"]
    rest = truth["rest"]
    assert value(after, "regulator_binance_rest_requests_total", name="eth") == rest["requests"]
    assert value(after, "regulator_binance_rest_weight_total", name="eth") == rest[
        "weight_reserved"
    ] == 4 * rest["requests"]  # fmt: skip
    assert value(after, "regulator_binance_rest_used_weight", name="eth") == rest["used_weight"]
    assert value(after, "regulator_binance_backfill_gaps_total", name="eth") == 0
    assert value(after, "regulator_binance_gaps_total", name="eth") == 0


async def test_binance_order_book_metrics(server: tuple[MetricsExporter, str]) -> None:
    from _exchangebed import ExchangeBed
    from _faultbed import Certs
    from regulator.adapters.binance import AttemptBudget, BinanceStream

    exporter, url = server
    config = ConnectionConfig(initial_delay=0.05, max_delay=0.05, jitter=0.0, ping_interval=5.0)
    with ExchangeBed(Certs()) as bed:
        stream = BinanceStream(
            [],
            base_url=bed.url,
            rest_url=bed.exchange.rest_url,
            ssl_context=bed.certs.client_context(),
            config=config,
            attempt_budget=AttemptBudget(300, 300.0),
        )
        book = stream.order_book("ethusdt", limit=100)
        exporter.register(stream, name="eth")
        async with stream:
            with anyio.fail_after(10):
                while not book.synced:
                    await anyio.sleep(0.02)
                bed.black_hole()  # updates lost for sure: the book resyncs
                await anyio.sleep(0.3)
                bed.black_hole(False)
                bed.reset()
                while book.resyncs < 1 or not book.synced:
                    await anyio.sleep(0.02)
            samples = scrape(url)
            truth = stream.book_stats()
    assert value(samples, "regulator_binance_book_resyncs_total", name="eth") == 1
    assert truth["resyncs"] == 1
    snapshots = value(samples, "regulator_binance_book_snapshots_total", name="eth")
    assert snapshots == truth["snapshots_fetched"] >= 2
    assert value(samples, "regulator_binance_book_synced", name="eth", symbol="ethusdt") == 1.0


def test_any_machine_exports_its_state_and_transitions() -> None:
    """A host's own Machine: its state as a labelled gauge, its transitions as a counter
    (counted from registration on), and it stays on the compiled engine."""
    import sys
    from pathlib import Path

    from prometheus_client import generate_latest

    sys.path.insert(0, str(Path(__file__).parents[1] / "docs" / "examples"))
    from order_lifecycle import OrderLifecycle

    order = OrderLifecycle(items=1, total=5.0)
    exporter = MetricsExporter()
    exporter.register(order, name="order-1")
    assert order._fast
    order.place()
    order.send("pay", amount=5.0)
    order.refund(amount=1.0)
    text = generate_latest(exporter.registry).decode()
    assert (
        'regulator_machine_state{machine="OrderLifecycle",name="order-1",state="paid"} 1.0' in text
    )
    assert (
        'regulator_machine_state{machine="OrderLifecycle",name="order-1",state="draft"} 0.0' in text
    )
    line = (
        'regulator_machine_transitions_total{event="refund",machine="OrderLifecycle",'
        'name="order-1",source="paid",target="paid"} 1.0'
    )
    assert line in text
    exporter.unregister("order-1")
    assert "regulator_machine_state{" not in generate_latest(exporter.registry).decode()


async def test_binance_hostile_input_counters_are_exported(
    server: tuple[MetricsExporter, str],
) -> None:
    """What a hostile server sends that is never an event, over real TLS: events of a stream
    not subscribed, a reply to no request, an id far ahead (a reset), a message of no shape."""
    import json

    from _faultbed import Certs
    from _hostile_exchange import HostileExchange
    from regulator.adapters.binance import AttemptBudget, BinanceStream

    def trade(stream: str, t: int) -> str:
        return json.dumps({"stream": stream, "data": {"e": "trade", "E": 1, "t": t}})

    certs = Certs()
    exporter, url = server
    with HostileExchange(certs.server_context()) as exchange:
        stream = BinanceStream(
            ["ethusdt@trade"],
            base_url=exchange.base_url,
            ssl_context=certs.client_context(),
            config=ConnectionConfig(initial_delay=0.05, jitter=0.0, ping_interval=5.0),
            attempt_budget=AttemptBudget(300, 300.0),
        )
        exporter.register(stream, name="hostile")
        async with stream:
            with anyio.fail_after(10):
                while stream.state != "live" or not exchange.live():
                    await anyio.sleep(0.01)
            exchange.push(
                trade("ethusdt@trade", 1),
                trade("btcusdt@trade", 5),  # not subscribed (twice)
                trade("btcusdt@trade", 6),
                '{"result":null,"id":77}',  # answers no request in flight
                trade("ethusdt@trade", 10**12),  # far ahead: a sequence reset, not a gap
                '{"neither":"an event nor a reply"}',  # malformed
                trade("ethusdt@trade", 10**12 + 1),
            )
            events: list[Any] = []
            with anyio.fail_after(10):
                async for event in stream:
                    events.append(event)
                    if event["data"]["t"] == 10**12 + 1:
                        break
            got = scrape(url)
            counts = (
                stream.unsubscribed_dropped,
                stream.unexpected_replies,
                stream.sequence_resets,
                stream.malformed,
            )
    assert [e["data"]["t"] for e in events] == [1, 10**12, 10**12 + 1]
    assert counts == (2, 1, 1, 1)
    for metric, want in zip(
        (
            "regulator_binance_unsubscribed_dropped_total",
            "regulator_binance_unexpected_replies_total",
            "regulator_binance_sequence_resets_total",
            "regulator_binance_malformed_total",
        ),
        counts,
        strict=True,
    ):
        assert value(got, metric, name="hostile") == want, metric
