"""RestClient against the exchange simulator's REST (real TLS, trustme certs), asyncio and trio:
answers parsed, weight paced from the budget and from ``X-MBX-USED-WEIGHT-1M``, 429 and 418
honoured (Retry-After blocks the budget, a 429 is retried), clear errors, bounded bodies, the
API key never logged."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from _faultbed import Certs
from regulator.adapters.binance import RestClient, RestError, WeightBudget
from regulator.specs.exchange import Exchange, MarketConfig

pytestmark = pytest.mark.anyio

MARKET = MarketConfig(trades_per_second=100.0, speed=60.0)


@pytest.fixture
def exchange(certs: Certs) -> Iterator[Exchange]:
    # weight counted in windows of 10^6 s, not wall-clock minutes: the exact counts asserted
    # here do not restart when a minute ends between two requests
    with Exchange(ssl_context=certs.server_context(), market=MARKET, weight_window=1e6) as running:
        yield running


def client(exchange: Exchange, certs: Certs, **kwargs: object) -> RestClient:
    return RestClient(exchange.rest_url, ssl_context=certs.client_context(), **kwargs)  # type: ignore[arg-type]


async def test_answers_are_parsed_and_weight_is_counted(exchange: Exchange, certs: Certs) -> None:
    await anyio.sleep(0.3)  # some trades
    async with client(exchange, certs, api_key="k" * 64) as rest:
        aggs = await rest.get("/api/v3/aggTrades", {"symbol": "ETHUSDT", "fromId": 0, "limit": 5})
        klines = await rest.get("/api/v3/klines", {"symbol": "ETHUSDT", "interval": "1s"})
        trades = await rest.get("/api/v3/historicalTrades", {"symbol": "ETHUSDT", "limit": 3})
    first = aggs[0]["a"]  # the oldest the history still has
    assert [a["a"] for a in aggs] == list(range(first, first + 5))
    assert all(len(row) == 12 for row in klines) and klines
    assert len(trades) == 3 and {"id", "price", "qty", "time"} <= set(trades[0])
    stats = rest.stats()
    assert stats["requests"] == 3 and stats["errors"] == 0
    assert stats["weight_reserved"] == 4 + 2 + 25
    assert stats["used_weight"] == exchange.weight.used == 31  # the exchange's own count
    assert stats["budget"]["units"] == 31


async def test_the_exchange_count_paces_requests_without_a_429(certs: Certs) -> None:
    with Exchange(
        ssl_context=certs.server_context(), market=MARKET, weight_limit=12, weight_window=2.0
    ) as exchange:
        # another client of the address: its weight is not in our budget, only in the
        # exchange's X-MBX-USED-WEIGHT-1M
        other = client(exchange, certs, weight_budget=WeightBudget(6000, 60.0))
        ours = client(
            exchange,
            certs,
            weight_limit=12,
            weight_window=2.0,
            weight_budget=WeightBudget(6000, 60.0),
        )
        async with other, ours:
            await anyio.sleep(2.0 - time.time() % 2.0)  # at the start of a window
            for _ in range(2):
                await other.get("/api/v3/aggTrades", {"symbol": "ETHUSDT", "limit": 1})
            for _ in range(2):  # the second finds the window full: it waits for the next
                await ours.get("/api/v3/aggTrades", {"symbol": "ETHUSDT", "limit": 1})
        statuses = [status for _, _, status, _ in exchange.rest_requests]
    assert 429 not in statuses and 418 not in statuses
    assert ours.waited > 0 and ours.rate_limited == 0


async def test_a_429_blocks_the_budget_and_is_retried_never_a_418(certs: Certs) -> None:
    with Exchange(
        ssl_context=certs.server_context(), market=MARKET, weight_limit=8, weight_window=2.0
    ) as exchange:
        # the client believes the limit is higher: the exchange answers 429
        async with client(exchange, certs, weight_limit=6000) as rest:
            for _ in range(4):
                got = await rest.get("/api/v3/aggTrades", {"symbol": "ETHUSDT", "limit": 2})
                assert len(got) == 2
        statuses = [status for _, _, status, _ in exchange.rest_requests]
    assert 429 in statuses and 418 not in statuses
    assert statuses.count(200) == 4
    assert rest.rate_limited >= 1 and rest.retries == rest.rate_limited
    assert rest.budget.stats()["waits"] >= 1  # the Retry-After was waited out in the budget


async def test_a_429_not_retried_raises_naming_endpoint_and_status(certs: Certs) -> None:
    with Exchange(
        ssl_context=certs.server_context(), market=MARKET, weight_limit=4, weight_window=2.0
    ) as exchange:
        budget = WeightBudget(6000, 60.0)
        async with client(exchange, certs, weight_budget=budget, max_retries=0) as rest:
            await rest.get("/api/v3/aggTrades", {"symbol": "ETHUSDT", "limit": 1})
            with pytest.raises(RestError) as caught:
                await rest.get("/api/v3/aggTrades", {"symbol": "ETHUSDT", "limit": 1})
            error = caught.value
            assert (error.endpoint, error.status, error.code) == ("/api/v3/aggTrades", 429, -1003)
            assert error.retry_after is not None and error.retry_after >= 1
            assert "GET /api/v3/aggTrades failed (status 429, code -1003)" in str(error)
            started = time.monotonic()
            await rest.get("/api/v3/aggTrades", {"symbol": "ETHUSDT", "limit": 1})
            assert time.monotonic() - started > 0.5  # held back by the blocked budget
        statuses = [status for _, _, status, _ in exchange.rest_requests]
    assert statuses == [200, 429, 200]  # never a 418: the Retry-After was honoured


async def test_errors_are_clear_and_bodies_bounded(exchange: Exchange, certs: Certs) -> None:
    async with client(exchange, certs) as rest:
        with pytest.raises(RestError) as bad:
            await rest.get("/api/v3/aggTrades", {"symbol": "NOPEUSDT"})
        assert (bad.value.status, bad.value.code) == (400, -1121)
        assert "Invalid symbol" in str(bad.value)
    async with client(exchange, certs, max_body_bytes=200) as small:
        with pytest.raises(RestError, match="over max_body_bytes=200"):
            await small.get("/api/v3/klines", {"symbol": "ETHUSDT", "interval": "1s"})
    down = RestClient("https://127.0.0.1:9", ssl_context=certs.client_context(), timeout=2.0)
    async with down:
        with pytest.raises(RestError) as refused:
            await down.get("/api/v3/ping")
    assert refused.value.status is None and "/api/v3/ping" in str(refused.value)
    with pytest.raises(ValueError, match="rest_url"):
        RestClient("wss://example.com")


async def test_the_api_key_never_reaches_the_logs(
    exchange: Exchange, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    key = "Zq8" + "x" * 61
    caplog.set_level(logging.DEBUG)
    async with client(exchange, certs, api_key=key) as rest:
        await rest.get("/api/v3/historicalTrades", {"symbol": "ETHUSDT", "limit": 1})
        with pytest.raises(RestError):
            await rest.get("/api/v3/historicalTrades", {"symbol": "bad symbol"})
    assert "event=rest_request" in caplog.text and "event=rest_error" in caplog.text
    assert key not in caplog.text


class HostileRest:
    """A TLS HTTP server that gives ``answers`` (status, headers, body) in turn and records
    each request's path and headers: wrong shapes, bans, the API key as sent."""

    def __init__(self, certs: Certs, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        import http.server
        import threading

        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                status, headers, body = outer.answers.pop(0) if outer.answers else (404, {}, b"")
                self.send_response(status)
                for name, value in {"content-length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = certs.server_context().wrap_socket(
            self.server.socket, server_side=True
        )
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HostileRest:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_hostile_answers_are_clear_errors_and_the_key_is_sent(certs: Certs) -> None:
    ok = (200, {"x-mbx-used-weight-1m": "99999999999999999999"}, b"[]")  # an absurd count
    answers = [
        ok,
        (200, {}, b"<html>not json</html>"),
        (200, {}, b"[" * 100_000 + b"]" * 100_000),  # nested past the recursion limit
        (418, {"retry-after": "inf"}, b'{"code":-1003,"msg":"banned"}'),
    ]
    with HostileRest(certs, answers) as server:
        async with RestClient(
            server.url, ssl_context=certs.client_context(), api_key="K" * 64
        ) as rest:
            assert await rest.get("/api/v3/aggTrades", {"symbol": "ETHUSDT"}) == []
            assert rest.used_weight == 0  # an absurd header is not believed
            for _ in range(2):
                with pytest.raises(RestError, match="not JSON"):
                    await rest.get("/api/v3/aggTrades")
            with pytest.raises(RestError) as banned:
                await rest.get("/api/v3/klines")
        assert server.requests[0][1]["x-mbx-apikey"] == "K" * 64
        assert server.requests[0][0] == "/api/v3/aggTrades?symbol=ETHUSDT"
    assert banned.value.status == 418 and rest.banned == 1
    # "inf" says nothing usable: the ban is waited out for a capped, finite time
    assert banned.value.retry_after is not None and 0 < banned.value.retry_after < 4 * 86400


async def test_a_request_cancelled_mid_handshake_closes_its_socket(certs: Certs) -> None:
    """A request cancelled while TLS is being set up (a backfill abandoned, the host's own
    deadline) closes the socket it opened: httpcore's does not (its cleanup catches
    ``Exception``, and a cancellation is not one), so each left an open socket behind."""
    with socket.create_server(("127.0.0.1", 0)) as listener:  # takes TCP (backlog), no TLS
        port = listener.getsockname()[1]
        async with RestClient(
            f"https://127.0.0.1:{port}", ssl_context=certs.client_context(), timeout=30.0
        ) as rest:
            with anyio.move_on_after(0.3):
                await rest.get("/api/v3/ping")
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5.0)
                assert conn.recv(65536)[:1] == b"\x16"  # the client's TLS hello, then...
                assert conn.recv(65536) == b""  # ...its close, not a socket left open
            assert rest.errors == 0  # cancelled by the caller: not counted as a failure


@pytest.mark.spec("R4.4")
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rest_url": "ftp://x"}, r"rest_url: must be an http\(s\) URL \(got 'ftp://x'\)"),
        ({"weight_limit": 0}, r"weight_limit: must be an integer >= 1 \(got 0\)"),
        (
            {"weight_window": "60"},
            r"weight_window: must be a finite number of seconds > 0 \(got '60'\)",
        ),
        ({"timeout": float("nan")}, r"timeout: must be a finite number of seconds > 0 \(got nan\)"),
        (
            {"max_retry_wait": True},
            r"max_retry_wait: must be a finite number of seconds > 0 \(got True\)",
        ),
        ({"max_body_bytes": 0}, r"max_body_bytes: must be an integer >= 1 \(got 0\)"),
        ({"max_retries": -1}, r"max_retries: must be an integer >= 0 \(got -1\)"),
        ({"api_key": "k\n"}, r"api_key: must be a printable string$"),
    ],
)
def test_bad_settings_are_refused_naming_field_rule_and_value(
    kwargs: dict[str, Any], message: str
) -> None:
    settings: dict[str, Any] = {"rest_url": "https://127.0.0.1:1", **kwargs}
    with pytest.raises(ValueError, match=message):
        RestClient(**settings)
