"""What the benchmarks' WebSocket servers share (each runs as a script in its own process, so
that it is not measured): frames out, the client's frames in, the upgrade's answer, and a TLS
listener on 127.0.0.1 that prints its port."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["accept_upgrade", "client_frames", "frame", "serve_tls"]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked final frame (a server's), text by default."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        return head + bytes([n]) + payload
    if n < 65536:
        return head + bytes([126]) + n.to_bytes(2, "big") + payload
    return head + bytes([127]) + n.to_bytes(8, "big") + payload


async def client_frames(reader: asyncio.StreamReader) -> AsyncIterator[tuple[int, bytes]]:
    """(opcode, unmasked payload) of each frame the client sends, until EOF."""
    data = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return
        data += chunk
        while len(data) >= 2:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            masked = data[1] & 0x80
            head = 2 + (2 if length == 126 else 8 if length == 127 else 0)
            if len(data) < head + (4 if masked else 0):
                break
            if length >= 126:
                length = int.from_bytes(data[2:head], "big")
            mask = data[head : head + 4] if masked else b"\0\0\0\0"
            start = head + (4 if masked else 0)
            if len(data) < start + length:
                break
            body = bytes(b ^ mask[i % 4] for i, b in enumerate(data[start : start + length]))
            data = data[start + length :]
            yield opcode, body


def accept_upgrade(writer: asyncio.StreamWriter, key: str) -> None:
    """The 101 answer to an upgrade request with ``Sec-WebSocket-Key: key``."""
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )


async def serve_tls(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    cert: str,
    key: str,
) -> None:
    """Serve ``handle`` over TLS on 127.0.0.1 (a free port, printed first) until killed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()
