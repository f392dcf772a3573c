"""``regulator stream`` as a person runs it: real processes, the exchange simulator over TLS."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from _faultbed import Certs
from prometheus_client.parser import text_string_to_metric_families
from regulator.adapters.cli._stream import run_stream
from regulator.specs.exchange import Exchange, MarketConfig

REGULATOR = [sys.executable, "-m", "regulator.adapters.cli"]


@pytest.fixture
def exchange(certs: Certs) -> Iterator[Exchange]:
    market = MarketConfig(trades_per_second=50.0, speed=60.0)
    with Exchange(ssl_context=certs.server_context(), market=market) as running:
        yield running


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REGULATOR, "stream", *args], capture_output=True, text=True, timeout=timeout
    )


def test_prints_events_and_state_changes(exchange: Exchange, ca_file: str) -> None:
    done = run(
        "ethusdt@trade", "ethusdt@kline_1m", "--url", exchange.url, "--ca", ca_file, "--count", "5"
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(events) == 5
    assert all(e["stream"] in ("ethusdt@trade", "ethusdt@kline_1m") for e in events)
    assert "source=handshaking target=live" in done.stderr
    assert "event=subscribed name=stream#1 streams=2 confirmed=2" in done.stderr
    assert "stopped after 5 events" in done.stderr


def test_an_unreachable_exchange_gets_a_clear_message() -> None:
    done = run("ethusdt@trade", "--url", "wss://127.0.0.1:1", "--max-retries", "1")
    assert done.returncode == 1
    assert (
        "regulator stream: cannot reach 127.0.0.1:1 (network: connection refused)."
        " Is this machine online" in done.stderr
    )
    assert done.stderr.count("cannot reach") == 1  # said once, not per retry
    assert "gave up" in done.stderr
    assert done.stdout == ""


def test_bad_stream_names_are_rejected_before_connecting() -> None:
    done = run("ETHUSDT@trade", "--url", "wss://127.0.0.1:1")
    assert done.returncode == 2
    assert "error: streams[0]: the symbol must be lower case" in done.stderr
    assert "'ethusdt@trade'" in done.stderr


def test_bad_arguments_are_all_named_at_once() -> None:
    done = run("ethusdt@trade", "--count", "0", "--duration", "-1", "--max-retries", "-2")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: --count: must be >= 1 (got 0)",
        "error: --duration: must be > 0 seconds (got -1.0)",
        "error: --max-retries: must be >= 0 (got -2)",
    ]


def test_metrics_port_serves_the_streams_metrics(exchange: Exchange, ca_file: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(
            run_stream(
                ["ethusdt@trade"],
                url=exchange.url,
                config_file=None,
                ca=ca_file,
                count=None,
                duration=3.0,
                metrics_port=0,
                max_retries=None,
                out=out,
                err=err,
            )
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    samples: dict[str, float] = {}
    while time.monotonic() < deadline and "regulator_connection_messages_received_total" not in (
        samples
    ):
        found = re.search(r"metrics on (http://\S+)", err.getvalue())
        time.sleep(0.3)
        if found is None:
            continue
        text = httpx.get(found.group(1), timeout=5).text
        samples = {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.labels.get("name") == "stream"
        }
        if samples.get("regulator_binance_streams_confirmed") != 1.0:
            samples = {}
    worker.join(timeout=15)
    assert result == [0]
    assert samples["regulator_binance_streams_confirmed"] == 1.0
    assert samples["regulator_connection_messages_received_total"] > 0
    assert len(out.getvalue().splitlines()) > 10
