"""The receive path through a real socket (issue 18): a TLS server on 127.0.0.1 writes server
frames, good and bad, byte for byte; the client's answers (pongs, its close frame and code) are
decoded by wsproto's server side. On asyncio and on trio."""

from __future__ import annotations

import struct
from typing import Any

import anyio
import pytest
import wsproto.events as wev
from _faultbed import Certs
from _hostile import HostileServer
from _rawframes import raw_frame
from regulator.adapters.websocket import ResilientWebSocket
from regulator.fsm import ConnectionConfig

pytestmark = pytest.mark.anyio
# one attempt is all a test looks at: the backoff keeps the others away meanwhile
CONFIG = dict(
    initial_delay=5.0,
    max_delay=5.0,
    jitter=0.0,
    ping_interval=30.0,
    pong_timeout=1.0,
    handshake_timeout=3.0,
)


async def run_script(
    certs: Certs, script: bytes, *, want: int = 0, **options: Any
) -> tuple[ResilientWebSocket, list[Any], list[Any]]:
    """Connect once to a server playing ``script``; return the socket, the messages the
    consumer got and what the server received on the first connection."""
    messages: list[Any] = []
    with HostileServer(certs.server_context(), script=script) as server:
        ws = ResilientWebSocket(
            server.url,
            config=ConnectionConfig(**CONFIG),
            ssl_context=certs.client_context(),
            **options,
        )
        async with ws:
            with anyio.fail_after(10):
                while not ws.machine.history and len(messages) < want:
                    messages.append(await ws.receive())
                while not ws.machine.history:
                    await anyio.sleep(0.01)
            # the server reads the client's answer in its own thread
            with anyio.fail_after(5):
                while not any(isinstance(e, wev.CloseConnection) for e in server.received[0]):
                    await anyio.sleep(0.01)
        return ws, messages, list(server.received[0])


def close_code(received: list[Any]) -> int:
    closes = [e for e in received if isinstance(e, wev.CloseConnection)]
    return int(closes[0].code)


@pytest.mark.parametrize(
    ("name", "blob", "code"),
    [
        ("unknown opcode", raw_frame(3, b"x"), 1002),
        ("reserved bit", raw_frame(1, b"x", rsv=4), 1002),
        ("masked frame", raw_frame(1, b"hi", mask=b"abcd"), 1002),
        ("fragmented ping", raw_frame(9, b"x", fin=False), 1002),
        ("long ping", raw_frame(9, bytes(126)), 1002),
        ("orphan continuation", raw_frame(0, b"x"), 1002),
        ("message inside fragments", raw_frame(2, b"a", fin=False) + raw_frame(2, b"b"), 1002),
        ("bad UTF-8", raw_frame(1, b"\xff"), 1007),
        (
            "bad UTF-8 in a later fragment",
            raw_frame(1, b"a", fin=False) + raw_frame(0, b"\xc3("),
            1007,
        ),
        ("close with a 1-byte payload", raw_frame(8, b"\x03"), 1002),
        ("close with code 1005", raw_frame(8, struct.pack("!H", 1005)), 1002),
        ("close reason not UTF-8", raw_frame(8, struct.pack("!H", 1000) + b"\xff"), 1007),
    ],
)
async def test_a_bad_frame_fails_the_connection_with_its_close_code(
    certs: Certs, name: str, blob: bytes, code: int
) -> None:
    good = raw_frame(1, b"before")
    ws, messages, received = await run_script(certs, good + blob, want=1)
    assert messages == ["before"]  # what came before the bad frame is delivered
    record = ws.machine.history[0]
    assert record.kind == "protocol"
    assert f"close {code}" in record.reason
    assert close_code(received) == code  # the client told the server why


async def test_fragments_pings_and_utf8_across_fragments_arrive_whole_and_in_order(
    certs: Certs,
) -> None:
    euro = "€".encode()
    script = (
        raw_frame(1, b"price " + euro[:1], fin=False)
        + raw_frame(9, b"ping-1")  # between fragments
        + raw_frame(0, euro[1:2], fin=False)
        + raw_frame(10, b"unsolicited")  # a pong nobody asked for is tolerated
        + raw_frame(0, euro[2:] + b" 3")
        + raw_frame(2, bytes(70_000))  # 64-bit length
        + raw_frame(2, b"", fin=False)
        + raw_frame(0, b"\x01\x02")
        + raw_frame(9, b"")
        + raw_frame(8, struct.pack("!H", 1001) + b"restart")
    )
    ws, messages, received = await run_script(certs, script, want=3)
    assert messages == ["price € 3", bytes(70_000), b"\x01\x02"]
    pongs = [bytes(e.payload) for e in received if isinstance(e, wev.Pong)]
    assert pongs == [b"ping-1", b""]  # answered with the same payload
    assert ws.pings_answered == 2
    assert ws.unsolicited_pongs == 1
    assert close_code(received) == 1001  # the close handshake completed with the server's code
    record = ws.machine.history[0]
    assert record.kind == "server_closed"
    assert "restart" in record.reason
    assert ws.messages_received == 3


async def test_a_message_over_the_bound_is_refused_from_its_header_with_1009(
    certs: Certs,
) -> None:
    # the header announces 2 MB and no payload follows: refused before anything is buffered
    script = raw_frame(1, b"small") + b"\x82\x7f" + struct.pack("!Q", 2_000_000)
    ws, messages, received = await run_script(certs, script, want=1, max_message_bytes=10_000)
    assert messages == ["small"]
    record = ws.machine.history[0]
    assert record.kind == "protocol"
    assert "max_message_bytes=10000" in record.reason
    assert close_code(received) == 1009


async def test_a_server_vanishing_without_a_close_frame_is_a_network_failure(
    certs: Certs,
) -> None:
    # no close frame, no TLS close_notify: the TLS layer's EOF error must not turn it into `ssl`
    with HostileServer(certs.server_context(), "vanish", script=raw_frame(1, b"last")) as server:
        ws = ResilientWebSocket(
            server.url, config=ConnectionConfig(**CONFIG), ssl_context=certs.client_context()
        )
        async with ws:
            with anyio.fail_after(10):
                assert await ws.receive() == "last"
                while not ws.machine.history:
                    await anyio.sleep(0.01)
    record = ws.machine.history[0]
    assert (record.kind, record.reason) == ("network", "connection closed without a close frame")
