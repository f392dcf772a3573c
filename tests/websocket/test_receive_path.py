"""The receive path through a real socket (issue 18): a TLS server on 127.0.0.1 writes server
frames, good and bad, byte for byte; the client's answers (pongs, its close frame and code) are
decoded by wsproto's server side. On asyncio and on trio."""

from __future__ import annotations

import struct
from typing import Any

import anyio
import pytest
import wsproto.events as wev
from _faultbed import Certs, ConnectionSettings
from _hostile import HostileServer
from _rawframes import raw_frame
from regulator.adapters.websocket import ResilientWebSocket
from regulator.fsm import ConnectionConfig

pytestmark = pytest.mark.anyio
# one attempt is all a test looks at: the backoff keeps the others away meanwhile
CONFIG = ConnectionSettings(
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


def cut_script(count: int) -> tuple[list[bytes], list[str], list[bytes]]:
    """``count`` text messages as TLS-record-sized chunks cut inside headers, payloads and
    UTF-8 characters; every third message fragmented around a ping. Returns (chunks, the
    messages, the ping payloads)."""
    chunks: list[bytes] = []
    messages: list[str] = []
    pings: list[bytes] = []
    for i in range(count):
        text = f"message {i:03d} costs 5 €"
        messages.append(text)
        body = text.encode()
        if i % 3 == 0:
            ping = f"ping-{i}".encode()
            pings.append(ping)
            blob = raw_frame(1, body[:-2], fin=False) + raw_frame(9, ping) + raw_frame(0, body[-2:])
        else:
            blob = raw_frame(1, body)
        # cuts: inside the first header, inside the payload (the euro sign is 3 bytes)
        for start, stop in ((0, 1), (1, len(blob) - 2), (len(blob) - 2, len(blob))):
            chunks.append(blob[start:stop])
    chunks.append(raw_frame(8, struct.pack("!H", 1001) + b"done"))
    return chunks, messages, pings


async def test_a_consumer_cancelled_inside_receive_loses_nothing(certs: Certs) -> None:
    # The consumer reads the socket itself while it waits; cancelled there (a move_on_after
    # far shorter than the gaps between TLS records, so most land inside a read or between
    # the records of one frame), it must lose no message and leave the TLS stream and the
    # frame decoder intact: the run ends with the server's close, not with an error.
    chunks, expected, pings = cut_script(40)
    got: list[Any] = []
    cancelled = 0
    with HostileServer(certs.server_context(), script=chunks, gap=0.004) as server:
        ws = ResilientWebSocket(
            server.url, config=ConnectionConfig(**CONFIG), ssl_context=certs.client_context()
        )
        async with ws:
            with anyio.fail_after(20):
                while not ws.machine.history:
                    with anyio.move_on_after(0.001) as scope:
                        got.append(await ws.receive())
                    cancelled += scope.cancelled_caught
                while len(got) < len(expected):  # what the reader buffered before the close
                    got.append(await ws.receive())
            with anyio.fail_after(5):
                while not any(isinstance(e, wev.CloseConnection) for e in server.received[0]):
                    await anyio.sleep(0.01)
        received = list(server.received[0])
    assert got == expected  # every message, once, in order
    assert cancelled > len(expected)  # the cancellations did happen, many of them
    record = ws.machine.history[0]
    assert (record.kind, "done" in record.reason) == ("server_closed", True)
    assert [bytes(e.payload) for e in received if isinstance(e, wev.Pong)] == pings
    assert ws.pings_answered == len(pings)
    assert ws.messages_received == len(expected)
    assert close_code(received) == 1001


async def test_pings_are_answered_while_the_consumer_is_away_after_reading_itself(
    certs: Certs,
) -> None:
    # The consumer reads the first message itself, then stays away (busy): the reader task
    # must take the stream over, answer the pings and buffer what follows.
    script = [raw_frame(1, b"first")]
    script += [raw_frame(9, f"p{i}".encode()) + raw_frame(1, f"m{i}".encode()) for i in range(5)]
    with HostileServer(certs.server_context(), script=script, gap=0.05) as server:
        ws = ResilientWebSocket(
            server.url, config=ConnectionConfig(**CONFIG), ssl_context=certs.client_context()
        )
        async with ws:
            with anyio.fail_after(10):
                assert await ws.receive() == "first"
                while sum(isinstance(e, wev.Pong) for e in server.received[0]) < 5:
                    await anyio.sleep(0.01)  # away: not in receive()
            assert ws.get_connection_stats()["messages_buffered"] == 5
            assert [await ws.receive() for _ in range(5)] == [f"m{i}" for i in range(5)]
    assert ws.pings_answered == 5
    assert not ws.machine.history  # no failure
