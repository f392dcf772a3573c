"""ResilientWebSocket and the webhook notifier against servers that ask for too much (issue 27,
items 3, 4, 6): Retry-After values capped, redirects that never leave TLS nor carry secrets to
another origin, fragments per message bounded, the receive buffer bounded in bytes, webhook
bodies read up to a cap. Real TLS servers on 127.0.0.1, asyncio and trio; memory measured with
tracemalloc (the figures are printed with -s)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from _faultbed import Certs, ConnectionSettings
from _hostile import HostileServer
from _hostile_exchange import HostileExchange, Traced
from _rawframes import raw_frame
from regulator.adapters.websocket import ConnectionClosedError, ResilientWebSocket
from regulator.adapters.websocket._classify import MAX_RETRY_AFTER
from regulator.adapters.websocket._frames import MAX_FRAGMENTS
from regulator.adapters.websocket._notifiers import WebhookNotifier
from regulator.fsm import Alarm, ConnectionConfig, parse_kv

pytestmark = pytest.mark.anyio
FAST = ConnectionSettings(
    initial_delay=0.05,
    max_delay=0.2,
    jitter=0.0,
    ping_interval=30.0,
    pong_timeout=5.0,
    handshake_timeout=3.0,
)
SECRETS = {"X-MBX-APIKEY": "k3y-abcdef123456", "Authorization": "Bearer t0ken-abcdef123456"}


async def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def closed_error(ws: ResilientWebSocket) -> ConnectionClosedError:
    with anyio.fail_after(15), pytest.raises(ConnectionClosedError) as caught:
        async for _ in ws:
            pass
    return caught.value


# -- Retry-After (item 3) -------------------------------------------------------------------------
@pytest.mark.spec("R1.1")
@pytest.mark.parametrize(
    ("sent", "used"),
    [
        ("inf", MAX_RETRY_AFTER),
        ("-inf", 0.0),
        ("1e999", MAX_RETRY_AFTER),
        ("9" * 4000, MAX_RETRY_AFTER),
        ("-5", 0.0),
        ("nan", None),
        ("86400000", MAX_RETRY_AFTER),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("12", 12.0),
    ],
)
async def test_retry_after_is_capped_and_logged(
    certs: Certs, sent: str, used: float | None, caplog: pytest.LogCaptureFixture
) -> None:
    answers = [(429, {"Retry-After": sent})]
    with HostileExchange(certs.server_context(), answers=answers) as server:
        ws = ResilientWebSocket(
            server.base_url + "/ws",
            config=ConnectionConfig(**ConnectionSettings({**FAST, "max_retries": 0})),
            ssl_context=certs.client_context(),
        )
        with caplog.at_level(logging.WARNING, logger="regulator.connection"):
            async with ws:
                await closed_error(ws)
    record = ws.machine.history[0]
    assert record.kind == "rate_limited"
    assert record.retry_after == used
    lines = [parse_kv(r.getMessage()) for r in caplog.records if "retry_after_capped" in r.msg]
    if sent == "12":
        assert lines == []  # a sane value is used as sent, silently
    else:
        assert len(lines) == 1 and len(lines[0]["sent"]) <= 43
        assert lines[0]["max"] == str(int(MAX_RETRY_AFTER))


async def test_the_next_attempt_is_never_scheduled_past_the_cap(certs: Certs) -> None:
    answers = [(418, {"Retry-After": "inf"})]
    with HostileExchange(certs.server_context(), answers=answers) as server:
        ws = ResilientWebSocket(
            server.base_url + "/ws",
            config=ConnectionConfig(**FAST),
            ssl_context=certs.client_context(),
        )
        async with ws:
            await wait_for(lambda: ws.machine.failures == 1)
            now = ws.clock.now()
            deadline = ws.machine.next_deadline
    assert deadline is not None and now < deadline <= now + MAX_RETRY_AFTER


# -- redirects (item 4) ---------------------------------------------------------------------------
@pytest.fixture
def plain() -> Iterator[HostileExchange]:
    with HostileExchange(None) as running:
        yield running


@pytest.mark.parametrize(
    "location",
    ["ws://127.0.0.1:{port}/ws", "WS://127.0.0.1:{port}/ws", "http://127.0.0.1:{port}/ws"],
)
async def test_a_redirect_from_wss_to_ws_is_refused(
    certs: Certs, plain: HostileExchange, location: str
) -> None:
    answers = [(302, {"Location": location.format(port=plain.port)})]
    with HostileExchange(certs.server_context(), answers=answers) as origin:
        ws = ResilientWebSocket(
            origin.base_url + "/ws",
            config=ConnectionConfig(**FAST),
            ssl_context=certs.client_context(),
            headers=SECRETS,
            follow_redirects=True,
        )
        async with ws:
            error = await closed_error(ws)
    assert error.kind == "fatal"
    assert "refused: a redirect from wss to ws would leave TLS" in error.reason
    assert plain.requests == []  # nothing went out in clear text
    assert ws.url.startswith("wss://")


async def test_secret_headers_never_go_to_another_origin(
    certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    with HostileExchange(certs.server_context()) as other:
        # another origin: same host, another port; then a redirect back on the new origin
        answers = [(307, {"Location": f"wss://127.0.0.1:{other.port}/elsewhere?x=1"})]
        with HostileExchange(certs.server_context(), answers=answers) as origin:
            headers = {**SECRETS, "Cookie": "session=abc123456", "X-Client": "regulator"}
            ws = ResilientWebSocket(
                origin.base_url + "/ws",
                config=ConnectionConfig(**FAST),
                ssl_context=certs.client_context(),
                headers=headers,
                follow_redirects=True,
            )
            with caplog.at_level(logging.WARNING, logger="regulator.connection"):
                async with ws:
                    await wait_for(lambda: ws.state == "live")
    sent_to_origin = origin.requests[0][1]
    assert sent_to_origin["x-mbx-apikey"] == SECRETS["X-MBX-APIKEY"]
    path, sent_to_other = other.requests[0]
    assert path == "/elsewhere?x=1"
    assert not {"x-mbx-apikey", "authorization", "cookie"} & set(sent_to_other)
    assert sent_to_other["x-client"] == "regulator"  # what is not secret is kept
    dropped = [parse_kv(r.getMessage()) for r in caplog.records if "redirect_headers" in r.msg]
    assert dropped[0]["headers"] == "X-MBX-APIKEY,Authorization,Cookie"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "k3y-abcdef123456" not in text and "t0ken-abcdef123456" not in text


async def test_a_redirect_on_the_same_origin_keeps_the_headers(certs: Certs) -> None:
    answers = [(302, {"Location": "/moved"})]
    with HostileExchange(certs.server_context(), answers=answers) as origin:
        ws = ResilientWebSocket(
            origin.base_url + "/ws",
            config=ConnectionConfig(**FAST),
            ssl_context=certs.client_context(),
            headers=SECRETS,
            follow_redirects=True,
        )
        async with ws:
            await wait_for(lambda: ws.state == "live")
    assert [path for path, _ in origin.requests] == ["/ws", "/moved"]
    assert origin.requests[1][1]["authorization"] == SECRETS["Authorization"]


# -- fragments per message (item 6) ---------------------------------------------------------------
@pytest.mark.parametrize("frames", [MAX_FRAGMENTS + 1, 1_000_000])
async def test_a_message_in_too_many_fragments_fails_the_connection(
    certs: Certs, frames: int
) -> None:
    empty = raw_frame(0, b"", fin=False)
    script = [raw_frame(1, b"x", fin=False), empty * (frames - 1), raw_frame(0, b"", fin=True)]
    with HostileServer(certs.server_context(), script=script) as server:
        ws = ResilientWebSocket(
            server.url,
            config=ConnectionConfig(**ConnectionSettings({**FAST, "max_retries": 0})),
            ssl_context=certs.client_context(),
            max_message_bytes=1024,
        )
        with Traced() as traced:
            async with ws:
                error = await closed_error(ws)
        peak = traced.peak
    assert error.kind == "protocol"
    assert f"more than max_fragments={MAX_FRAGMENTS} frames" in error.reason
    print(f"{frames} empty continuation frames: peak {peak / 1024:.0f} KiB traced")
    assert peak < 4 * 1024 * 1024  # the frames are 2 bytes each on the wire


async def test_a_message_in_max_fragments_frames_arrives_whole(certs: Certs) -> None:
    parts = [raw_frame(1, b"a", fin=False)]
    parts += [raw_frame(0, b"b" if i % 2 else b"", fin=False) for i in range(MAX_FRAGMENTS - 2)]
    parts.append(raw_frame(0, "é".encode(), fin=True))
    with HostileServer(certs.server_context(), script=b"".join(parts)) as server:
        ws = ResilientWebSocket(
            server.url, config=ConnectionConfig(**FAST), ssl_context=certs.client_context()
        )
        async with ws:
            with anyio.fail_after(10):
                message = await ws.receive()
    assert message == "a" + "b" * ((MAX_FRAGMENTS - 2) // 2) + "é"


# -- the receive buffer's size bound (item 6) -----------------------------------------------------
def test_buffer_bytes_has_a_documented_default() -> None:
    assert ConnectionConfig().buffer_bytes == 32 * 1024 * 1024


@pytest.mark.parametrize("policy", ["drop_oldest", "block", "fail"])
async def test_a_paused_consumer_holds_at_most_buffer_bytes(certs: Certs, policy: Any) -> None:
    size, count, bound = 64 * 1024, 200, 1024 * 1024  # 12.5 MiB sent, 1 MiB allowed
    messages = [raw_frame(2, bytes([i % 251]) * size) for i in range(count)]
    with HostileServer(certs.server_context(), script=messages) as server:
        ws = ResilientWebSocket(
            server.url,
            config=ConnectionConfig(
                **ConnectionSettings({**FAST, "buffer_bytes": bound, "max_retries": 0})
            ),
            ssl_context=certs.client_context(),
            overflow_policy=policy,
        )
        traced = Traced().__enter__()
        async with ws:
            if policy == "block":
                await wait_for(lambda: ws._buffer.bytes + size > bound)
                await anyio.sleep(0.5)  # the reader is held back: nothing more comes in
            elif policy == "drop_oldest":
                await wait_for(lambda: ws.messages_received == count)
            else:
                await wait_for(lambda: ws.machine.failures == 1)
            held = ws._buffer.bytes
            traced.__exit__()
            peak = traced.peak
            stats = ws.get_connection_stats()
            if policy == "block":
                received = [await ws.receive() for _ in range(count)]  # all of it, in order
                assert [m[0] for m in received] == [i % 251 for i in range(count)]
    assert held <= bound
    print(
        f"{policy}: {count} x 64 KiB, buffer_bytes=1 MiB: held {held // 1024} KiB,"
        f" peak {peak / 1024 / 1024:.1f} MiB traced"
    )
    assert peak < 6 * 1024 * 1024
    if policy == "drop_oldest":
        assert stats["messages_buffered"] == bound // size
        assert stats["messages_dropped"] == count - bound // size
    if policy == "fail":
        assert "buffer_bytes=1048576" in ws.machine.history[0].reason


# -- webhook bodies (item 6) ----------------------------------------------------------------------
class _BigBodyServer:
    """An HTTPS server answering every request with ``status`` and a 256 MiB body, written
    until the client stops reading."""

    def __init__(self, context: ssl.SSLContext, status: int) -> None:
        self.context = context
        self.status = status
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> _BigBodyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            conn: Any = raw
            try:
                conn = self.context.wrap_socket(raw, server_side=True)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head = f"HTTP/1.1 {self.status} X\r\nContent-Length: {256 << 20}\r\n\r\n"
                conn.sendall(head.encode())
                chunk = b"z" * 65536
                while self.sent < 256 << 20:
                    conn.sendall(chunk)
                    self.sent += len(chunk)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()
                raw.close()


@pytest.mark.parametrize("status", [200, 500])
async def test_a_webhook_body_is_never_read(certs: Certs, status: int) -> None:
    with _BigBodyServer(certs.server_context(), status) as server:
        notifier = WebhookNotifier(
            f"https://127.0.0.1:{server.port}/hook",
            verify=certs.client_context(),
            retries=0,
            timeout=10.0,
        )
        alarm = Alarm(
            at=1.0,
            failures_in_window=4,
            window=300.0,
            threshold=3,
            last_kind="ssl",
            last_reason="x",
        )
        with Traced() as traced, anyio.fail_after(10):
            if status == 200:
                await notifier(alarm)
            else:
                with pytest.raises(httpx.HTTPStatusError):
                    await notifier(alarm)
        peak = traced.peak
    print(f"webhook answering {status} with 256 MiB: peak {peak / 1024:.0f} KiB traced")
    assert peak < 2 * 1024 * 1024
    assert server.sent < 64 << 20  # the client hung up long before the end
