"""ResilientWebSocket against servers that misbehave on purpose (a raw TLS server answering a
bad 101, a peer that stops reading), a weakened TLS context and bad arguments, on asyncio and
on trio (issue 17)."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from _faultbed import Certs, ConnectionSettings, FaultBed
from _hostile import HostileServer
from regulator.adapters.binance import BinanceStream
from regulator.adapters.websocket import ConnectionClosedError, NotLiveError, ResilientWebSocket
from regulator.adapters.websocket._support import default_tls_context, tls_context
from regulator.fsm import ConnectionConfig

pytestmark = pytest.mark.anyio
FAST = ConnectionSettings(
    initial_delay=0.05,
    max_delay=0.2,
    jitter=0.0,
    ping_interval=30.0,
    pong_timeout=0.3,
    handshake_timeout=2.0,
)


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def drain(ws: ResilientWebSocket) -> None:
    async for _ in ws:
        pass


@pytest.fixture
def bed(certs: Certs) -> Iterator[FaultBed]:
    with FaultBed(certs=certs) as running:
        yield running


# -- the opening handshake (RFC 6455 section 4.1) -----------------------------------------------
@pytest.mark.parametrize(
    ("mode", "header"),
    [
        ("bad_accept", "Sec-WebSocket-Accept"),
        ("no_upgrade", "Upgrade"),
        ("no_connection", "Connection"),
        ("extension", "Sec-WebSocket-Extensions"),
        ("subprotocol", "Sec-WebSocket-Protocol"),
    ],
)
async def test_a_bad_101_never_goes_live_and_names_the_header(
    certs: Certs, mode: str, header: str
) -> None:
    with HostileServer(certs.server_context(), mode) as server:
        ws = ResilientWebSocket(
            server.url,
            config=ConnectionConfig(**ConnectionSettings({**FAST, "max_retries": 0})),
            ssl_context=certs.client_context(),
        )
        async with ws:
            with anyio.fail_after(10), pytest.raises(ConnectionClosedError) as caught:
                await drain(ws)
        assert server.upgrades >= 1  # the server did answer 101
        assert ws.machine.successes == 0  # ... and nothing went live
        record = ws.machine.history[0]
        assert record.kind == "protocol"
        assert header in record.reason
        assert caught.value.kind == "protocol"


async def test_a_correct_101_goes_live(certs: Certs) -> None:
    with HostileServer(certs.server_context(), "good") as server:
        ws = ResilientWebSocket(
            server.url, config=ConnectionConfig(**FAST), ssl_context=certs.client_context()
        )
        async with ws:
            await wait_for(lambda: ws.state == "live")
        assert not ws.machine.history


# -- the heartbeat never waits behind the host ---------------------------------------------------
async def _send_until_refused(ws: ResilientWebSocket) -> str:
    chunk = b"x" * 65536
    while True:
        try:
            await ws.send(chunk)
        except NotLiveError as exc:
            return str(exc)


async def test_a_send_blocked_by_a_dead_peer_fails_as_timeout(certs: Certs) -> None:
    with HostileServer(certs.server_context(), "good") as server:
        ws = ResilientWebSocket(
            server.url, config=ConnectionConfig(**FAST), ssl_context=certs.client_context()
        )
        async with ws:
            await wait_for(lambda: ws.state == "live")
            # ping_interval is 30 s: only the blocked send can notice the dead peer
            with anyio.fail_after(10):
                refused = await _send_until_refused(ws)
            await wait_for(lambda: bool(ws.machine.history))
        assert "send blocked" in refused
        record = ws.machine.history[0]
        assert record.kind == "timeout"
        assert "send blocked" in record.reason


@pytest.mark.spec("R1.2")
async def test_the_pong_deadline_holds_while_the_host_send_is_blocked(certs: Certs) -> None:
    config = ConnectionConfig(
        **ConnectionSettings({**FAST, "ping_interval": 0.3, "pong_timeout": 1.0})
    )
    with HostileServer(certs.server_context(), "good") as server:
        ws = ResilientWebSocket(server.url, config=config, ssl_context=certs.client_context())
        async with ws, anyio.create_task_group() as tg:
            await wait_for(lambda: ws.state == "live")
            live_at = anyio.current_time()
            tg.start_soon(_send_until_refused, ws)  # stuck on a full send buffer
            await wait_for(lambda: bool(ws.machine.history))
            failed_after = anyio.current_time() - live_at
            tg.cancel_scope.cancel()
        assert ws.machine.history[0].kind == "timeout"
        # the promise of R1.2: detected by ping_interval + pong_timeout (plus scheduling slack
        # on a loaded machine), never later
        assert failed_after < config.ping_interval + config.pong_timeout + 2.0


async def test_a_slow_consumer_causes_no_false_timeout(bed: FaultBed) -> None:
    config = ConnectionConfig(
        **ConnectionSettings({**FAST, "ping_interval": 0.2, "pong_timeout": 0.3})
    )
    ws = ResilientWebSocket(
        bed.url, config=config, ssl_context=bed.certs.client_context(), buffer_size=100_000
    )
    async with ws:
        taken = 0
        with anyio.move_on_after(2.0):
            async for _ in ws:
                taken += 1
                await anyio.sleep(0.5)  # far slower than the heartbeat
        assert ws.state == "live"
        assert ws.machine.failures == 0
        assert ws.machine.successes == 1


# -- TLS: the caller's context is never changed and is checked before every attempt ------------
def test_a_context_allowing_tls_below_1_2_is_refused_and_left_unchanged(certs: Certs) -> None:
    context = certs.client_context()
    with pytest.warns(DeprecationWarning, match="TLSv1"):  # Python itself frowns on TLS 1.0
        context.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.raises(ValueError, match=r"ssl_context: minimum_version must be TLS 1\.2"):
        ResilientWebSocket("wss://127.0.0.1:1/", ssl_context=context)
    assert context.minimum_version == ssl.TLSVersion.TLSv1


async def test_verification_switched_off_later_fails_the_attempt_as_fatal(certs: Certs) -> None:
    context = certs.client_context()
    with HostileServer(certs.server_context(), "good") as server:
        ws = ResilientWebSocket(server.url, config=ConnectionConfig(**FAST), ssl_context=context)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        async with ws:
            with anyio.fail_after(10), pytest.raises(ConnectionClosedError) as caught:
                await drain(ws)
        assert caught.value.kind == "fatal"
        assert "verification must stay on" in caught.value.reason
        assert server.upgrades == 0  # nothing was sent to the untrusted server


async def test_an_upper_case_scheme_uses_the_given_context(certs: Certs) -> None:
    with HostileServer(certs.server_context(), "good") as server:
        url = server.url.replace("wss://", "WSS://")
        ws = ResilientWebSocket(
            url, config=ConnectionConfig(**FAST), ssl_context=certs.client_context()
        )
        async with ws:
            await wait_for(lambda: ws.state == "live")  # certifi would not trust trustme's CA


def test_one_default_context_is_shared_by_every_socket() -> None:
    a = ResilientWebSocket("wss://example.invalid/a")
    b = ResilientWebSocket("WSS://example.invalid/b")
    assert a._tls is b._tls is default_tls_context() is tls_context(None)


# -- clean entry: bad input fails before anything starts, on both backends ------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "ftp://example.invalid"},
        {"base_url": "wss://[::1"},
        {"ssl_context": "not a context"},
    ],
)
async def test_binance_stream_with_bad_input_leaves_the_event_loop_intact(
    kwargs: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match=r"^(base_url|url|ssl_context): "):
        async with BinanceStream(["ethusdt@aggTrade"], **kwargs):
            pass  # pragma: no cover - never entered
    # cancel scopes (asyncio) and nurseries (trio) still work after the refusal
    with anyio.move_on_after(0.01):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 1)
    await anyio.sleep(0)


async def test_a_failing_aenter_leaves_its_task_group_whole() -> None:
    stream = BinanceStream(["ethusdt@aggTrade"], base_url="wss://127.0.0.1:1")

    def broken(**_: Any) -> Any:
        raise ValueError("leg: refused")

    stream._start_leg = broken  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="leg: refused"):
        async with stream:
            pass  # pragma: no cover - never entered
    assert stream._tg is None
    with anyio.move_on_after(0.01):
        async with anyio.create_task_group() as tg:
            tg.start_soon(anyio.sleep, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://h/"}, r"url: the scheme must be ws, wss, http or https"),
        ({"url": "wss://"}, r"url: must name a host"),
        ({"url": "wss://h:99999/"}, r"url: the port must be 1 to 65535"),
        (
            {"headers": {"X-MBX-APIKEY": "abc\r\nX-Evil: 1"}},
            r"headers\['X-MBX-APIKEY'\]: .* \*\*\*",
        ),
        ({"headers": {"bad name": "v"}}, r"headers: 'bad name' is not a valid header name"),
        ({"max_message_bytes": 0}, r"max_message_bytes: must be >= 1"),
        ({"buffer_size": 0}, r"buffer_size: must be >= 1"),
        ({"buffer_size": 2.5}, r"buffer_size: must be an integer"),
        ({"notify_timeout": float("nan")}, r"notify_timeout: must be a finite number of seconds"),
        ({"notify_timeout": -1}, r"notify_timeout: must be a finite number of seconds"),
        ({"overflow_policy": "explode"}, r"overflow_policy: must be 'drop_oldest', 'fail'"),
    ],
)
def test_bad_socket_arguments_are_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    options = {"url": "wss://127.0.0.1:1/", **kwargs}
    with pytest.raises(ValueError, match=message) as caught:
        ResilientWebSocket(**options)
    assert "abc" not in str(caught.value)  # a secret header's value is never shown


# -- counters: received == delivered + dropped + failed (+ still buffered) ------------------------
@pytest.mark.parametrize("policy", ["drop_oldest", "fail", "block"])
async def test_message_counters_add_up_under_every_overflow_policy(
    bed: FaultBed, policy: Any
) -> None:
    config = ConnectionConfig(
        **ConnectionSettings({**FAST, "ping_interval": 0.5, "pong_timeout": 2.0})
    )
    ws = ResilientWebSocket(
        bed.url,
        config=config,
        ssl_context=bed.certs.client_context(),
        buffer_size=3,
        overflow_policy=policy,
    )
    async with ws:
        with anyio.move_on_after(1.5):
            async for raw in ws:
                json.loads(raw)
                await anyio.sleep(0.1)  # slower than the feed: the buffer overflows
    stats = ws.get_connection_stats()
    assert stats["messages_received"] > 0
    assert stats["messages_received"] == (
        stats["messages_delivered"]
        + stats["messages_dropped"]
        + stats["messages_failed"]
        + stats["messages_buffered"]
    )
    if policy == "fail":
        assert stats["messages_failed"] >= 1
