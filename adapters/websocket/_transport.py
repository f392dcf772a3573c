"""An httpx transport that owns every socket a connection attempt opens.

Measured here (asyncio, httpcore 1.0.9): when the handshake deadline cancels an attempt
during TLS setup, httpcore does not close the raw TCP stream, so each stalled handshake leaks
a socket (fd exhaustion after days of faults). This transport's network backend records every
stream it opens; :meth:`close_streams` closes what is left when the attempt ends.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

import anyio
import httpcore
import httpx
import sniffio

__all__ = ["TrackingTransport"]


class _TrackingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.streams: list[httpcore.AsyncNetworkStream] = []

    def _inner(self) -> httpcore.AsyncNetworkBackend:
        if sniffio.current_async_library() == "trio":
            return httpcore.TrioBackend()
        return httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner().connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        self.streams.append(stream)
        return stream

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class TrackingTransport(httpx.AsyncHTTPTransport):
    """One connection attempt's transport (no pooling across attempts)."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        super().__init__(verify=ssl_context if ssl_context is not None else True)
        self._backend = _TrackingBackend()
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=1,
            http1=True,
            http2=False,
            network_backend=self._backend,
        )

    async def close_streams(self) -> None:
        """Close every raw stream this attempt opened (a no-op for closed ones)."""
        with anyio.CancelScope(shield=True):
            for stream in self._backend.streams:
                # already broken streams may raise: closing is all we wanted
                with anyio.move_on_after(1.0), contextlib.suppress(Exception):
                    await stream.aclose()
            self._backend.streams.clear()
