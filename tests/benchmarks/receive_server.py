"""The receive benchmark's server, run in its own process so that it is not measured: a raw
asyncio TLS server that completes the WebSocket upgrade and then writes pre-encoded frames.

``python receive_server.py CERT_PEM KEY_PEM`` prints its port and serves until killed. The
request path says what to send: ``/blast/N`` (N numbered frames at once, in large writes),
``/paced/N/RATE`` (N frames stamped with ``time.perf_counter()``, RATE per second) or ``/idle``
(nothing). A client's close frame is answered with one and the connection closed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# a kline-like text message; the sequence number is 9 digits at a fixed place (147-byte frames)
TEMPLATE = (
    '{"stream":"ethusdt@kline_1m","data":{"e":"kline","E":1700000000000,"s":"ETHUSDT",'
    '"seq":%09d,"k":{"o":"2051.1","c":"2052.40","v":"812.3"}}}'
)


def frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    return bytes([0x81, 126]) + n.to_bytes(2, "big") + payload


def message(seq: int) -> bytes:
    return (TEMPLATE % seq).encode()


async def answer_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the client's frames until its close frame (or EOF); answer a close with 1000."""
    data = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return
        data += chunk
        while len(data) >= 2:
            opcode, length = data[0] & 0x0F, data[1] & 0x7F
            head = 2 + (2 if length == 126 else 8 if length == 127 else 0) + 4
            if len(data) < head:
                break
            if length >= 126:
                length = int.from_bytes(data[2 : head - 4], "big")
            if len(data) < head + length:
                break
            data = data[head + length :]
            if opcode == 8:
                writer.write(b"\x88\x02\x03\xe8")
                await writer.drain()
                return


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await reader.readuntil(b"\r\n\r\n")
        lines = request.decode("latin-1").split("\r\n")
        path = lines[0].split()[1]
        key = next(
            line.split(":", 1)[1].strip()
            for line in lines
            if line.lower().startswith("sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        parts = path.strip("/").split("/")
        closing = asyncio.ensure_future(answer_close(reader, writer))
        if parts[0] == "blast":
            n = int(parts[1])
            blob = b"".join(frame(message(i)) for i in range(n))
            for start in range(0, len(blob), 1 << 20):
                writer.write(blob[start : start + (1 << 20)])
                await writer.drain()
        elif parts[0] == "paced":
            n, rate = int(parts[1]), float(parts[2])
            begin = time.perf_counter()
            for i in range(n):
                delay = begin + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                stamp = f'{{"t":{time.perf_counter()!r},"seq":{i}}}'.encode()
                writer.write(frame(stamp))
        await closing
    except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def main() -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context, backlog=512)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
