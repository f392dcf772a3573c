"""A fault-injecting TCP proxy on 127.0.0.1 (asyncio), for tests and demos.

Between a client and a server it forwards bytes both ways and, on command: flips one bit of
the next server-to-client chunk (inside a TLS record's MAC: a genuine
``DECRYPTION_FAILED_OR_BAD_RECORD_MAC`` on the client), resets every link with a TCP RST,
black-holes traffic both ways (a half-open link: nothing arrives, nothing fails), accepts new
connections and then says nothing (a stalled handshake), or stops listening (connection
refused). Its methods run on the loop that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Coroutine
from typing import Any

from ._loops import close_server

__all__ = ["FaultProxy"]


class FaultProxy:
    """TCP proxy to ``127.0.0.1:upstream_port`` with switchable faults."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.flip_next = False
        self.flipped = 0
        self.black_hole = False
        self.stall_new = False
        self.stalled: list[asyncio.StreamWriter] = []
        self.accepted = 0
        # every socket the proxy holds, from the moment it is accepted or opened (before its
        # handler task first runs: a task cancelled before it starts runs no `finally`)
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> None:
        self.server = await asyncio.start_server(self._accepted, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        if self.server is not None:
            await close_server(self.server)  # no connection in flight dropped unclosed
            self.server = None

    async def aclose(self) -> None:
        """Stop listening and abort every connection, the ones still being set up included."""
        await self.stop_listening()
        self.abort_all()

    def abort_all(self) -> None:
        """Abort every socket the proxy holds (an RST where the link is still up)."""
        self.reset_all()
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        self.stalled.clear()

    def _accepted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Coroutine[Any, Any, None]:
        self._open.add(writer)
        return self._accept(reader, writer)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_writer: asyncio.StreamWriter | None = None
        try:
            if self.stall_new:
                self.stalled.append(writer)
                await asyncio.sleep(3600)  # accept, then say nothing: the TLS handshake hangs
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream_port
                )
            except OSError:
                writer.close()
                return
            self._open.add(up_writer)
            self.links.append((writer, up_writer))
            await asyncio.gather(
                self._pump(reader, up_writer, downstream=False),
                self._pump(up_reader, writer, downstream=True),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            # cancelled only at shutdown: both sockets close now, not in a garbage collection
            # after the loop is gone (where Python reports them in whichever test runs then);
            # then end quietly (asyncio 3.11 logs a stream handler that ends cancelled)
            for held in (writer, up_writer):
                if held is not None:
                    held.transport.abort()
        finally:
            self._open.discard(writer)
            if up_writer is not None:
                self._open.discard(up_writer)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if self.black_hole:
                    continue  # silently dropped, both ways: a half-open link
                if downstream and self.flip_next and len(data) >= 16:
                    # Any changed byte of an encrypted record fails its AEAD tag check; the
                    # last byte of a chunk is in a record (often in its tag). No minimum
                    # beyond a few bytes: small messages arrive as one ~40-byte record per
                    # read on an idle machine, and a larger threshold could wait forever.
                    self.flip_next = False
                    self.flipped += 1
                    data = data[:-1] + bytes([data[-1] ^ 0x01])
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    def reset_all(self) -> None:
        """Close every link with a TCP RST (SO_LINGER 0)."""
        for client, upstream in self.links:
            for writer in (client, upstream):
                if writer.transport.is_closing():
                    continue
                sock = writer.get_extra_info("socket")
                with contextlib.suppress(OSError):  # already gone
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
        self.links.clear()

    def abort_stalled(self) -> None:
        for writer in self.stalled:
            writer.transport.abort()
        self.stalled.clear()
