"""The receive benchmark's server, run in its own process so that it is not measured: a raw
asyncio TLS server that completes the WebSocket upgrade and then writes pre-encoded frames.

``python receive_server.py CERT_PEM KEY_PEM`` prints its port and serves until killed. The
request path says what to send: ``/blast/N`` (N numbered frames at once, in large writes),
``/paced/N/RATE`` (N frames stamped with ``time.perf_counter()``, RATE per second) or ``/idle``
(nothing). A client's close frame is answered with one and the connection closed.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time

from _wsserve import accept_upgrade, client_frames, frame, serve_tls

# a kline-like text message; the sequence number is 9 digits at a fixed place (147-byte frames)
TEMPLATE = (
    '{"stream":"ethusdt@kline_1m","data":{"e":"kline","E":1700000000000,"s":"ETHUSDT",'
    '"seq":%09d,"k":{"o":"2051.1","c":"2052.40","v":"812.3"}}}'
)


def message(seq: int) -> bytes:
    return (TEMPLATE % seq).encode()


async def answer_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the client's frames until its close frame (or EOF); answer a close with 1000."""
    async for opcode, _ in client_frames(reader):
        if opcode == 0x8:
            writer.write(frame(b"\x03\xe8", 0x8))
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
        accept_upgrade(writer, key)
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
    await serve_tls(handle, sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    asyncio.run(main())
