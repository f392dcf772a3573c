"""httpx transports that own every socket they open.

Measured here (httpcore 1.0.9, asyncio and trio): when a cancellation lands during TLS setup,
httpcore does not close the raw TCP stream (its cleanup catches ``Exception``; a cancellation
is a ``BaseException``), so each stalled handshake leaks a socket (fd exhaustion after days of
faults). Two answers:

* :class:`TrackingTransport`, one WebSocket connection attempt's: its backend records every
  stream it opens; :meth:`~TrackingTransport.close_streams` closes what is left when the
  attempt ends.
* :func:`closing_transport`, a pooled one (the REST client's): its streams close themselves
  when their TLS setup ends in anything but success, cancellation included.
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

__all__ = ["TrackingTransport", "closing_transport"]


class _Backend(httpcore.AsyncNetworkBackend):
    """httpcore's own backend for the running library (asyncio or trio); :meth:`_opened`
    decides what the pool gets of each stream it opens."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        trio = sniffio.current_async_library() == "trio"
        inner = httpcore.TrioBackend() if trio else httpcore.AnyIOBackend()
        stream = await inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return self._opened(stream)

    def _opened(self, stream: httpcore.AsyncNetworkStream) -> httpcore.AsyncNetworkStream:
        return stream

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class _TrackingBackend(_Backend):
    """Records every stream (the socket's receive path reads the stream itself: unwrapped)."""

    def __init__(self) -> None:
        self.streams: list[httpcore.AsyncNetworkStream] = []

    def _opened(self, stream: httpcore.AsyncNetworkStream) -> httpcore.AsyncNetworkStream:
        self.streams.append(stream)
        return stream


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


class _ClosingStream(httpcore.AsyncNetworkStream):
    """A raw stream that closes itself when TLS setup on it fails or is cancelled."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            # the TLS stream replaces this one; httpcore closes that one like any other
            return await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self._inner.aclose()
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _ClosingBackend(_Backend):
    def _opened(self, stream: httpcore.AsyncNetworkStream) -> httpcore.AsyncNetworkStream:
        return _ClosingStream(stream)


def closing_transport(ssl_context: ssl.SSLContext | None) -> httpx.AsyncHTTPTransport:
    """httpx's pooled HTTP/1.1 transport (its default limits), on streams that close when
    their TLS setup is cancelled. ``ssl_context`` None: httpx's default verification."""
    transport = httpx.AsyncHTTPTransport(verify=ssl_context if ssl_context is not None else True)
    limits = httpx.Limits()  # what httpx.AsyncClient would give its own transport
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=transport._pool._ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        http1=True,
        http2=False,
        network_backend=_ClosingBackend(),
    )
    return transport
