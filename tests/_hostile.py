"""A hostile WebSocket server on 127.0.0.1: raw sockets in threads (so asyncio and trio clients
can use it), TLS with the trustme certificate, answering the upgrade as told.

``mode`` picks the answer: ``good`` (a correct 101), ``bad_accept``, ``no_upgrade``,
``no_connection``, ``extension`` (an extension nobody offered), ``subprotocol`` (one nobody
offered). After a good 101 it never reads again (``stall``): a dead peer whose receive
buffer fills, so the client's writes block. With ``script`` (bytes), it instead writes those
bytes after the first 101 (server frames, valid or not; a list of chunks is written one
TLS record at a time, ``gap`` seconds apart) and then reads what the client sends back,
decoded by wsproto's server side, into ``received`` (one list of events per connection); with
mode ``vanish`` it closes the socket right after the script instead (no close_notify).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import ssl
import threading
import time
from typing import Any

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


class HostileServer:
    def __init__(
        self,
        context: ssl.SSLContext | None,
        mode: str = "good",
        script: bytes | list[bytes] | None = None,
        gap: float = 0.0,
    ) -> None:
        self.context = context
        self.mode = mode
        self.script = script
        self.gap = gap
        self.received: list[list[Any]] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # a small receive buffer: a client's sends fill it (and its own send buffer) quickly
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.05)  # the accept loop notices stopping (close does not wake it)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.connections: list[Any] = []
        self.upgrades = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        scheme = "wss" if self.context is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/stream"

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.listener.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()
        self.thread.join(5)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            raw.settimeout(None)
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        conn: Any = raw
        self.connections.append(raw)
        try:
            if self.context is not None:
                conn = self.context.wrap_socket(raw, server_side=True)
                self.connections.append(conn)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            headers = {}
            for line in request.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            key = headers.get("sec-websocket-key", "")
            answer = {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Accept": accept_for(key),
            }
            if self.mode == "bad_accept":
                answer["Sec-WebSocket-Accept"] = accept_for(key + "x")
            elif self.mode == "no_upgrade":
                del answer["Upgrade"]
            elif self.mode == "no_connection":
                del answer["Connection"]
            elif self.mode == "extension":
                answer["Sec-WebSocket-Extensions"] = "permessage-deflate"
            elif self.mode == "subprotocol":
                answer["Sec-WebSocket-Protocol"] = "chat"
            lines = ["HTTP/1.1 101 Switching Protocols", *(f"{k}: {v}" for k, v in answer.items())]
            conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            self.upgrades += 1
            if self.script is not None and self.upgrades == 1:  # later ones stall
                self._play(conn)
                return
            # never read again: the peer is dead but the TCP connection stays open
            self.stopping.wait()
        except (OSError, ssl.SSLError):
            return

    def _play(self, conn: Any) -> None:
        from wsproto.connection import Connection, ConnectionType

        events: list[Any] = []
        self.received.append(events)
        client = Connection(ConnectionType.SERVER)  # decodes the client's frames
        assert self.script is not None
        for chunk in [self.script] if isinstance(self.script, bytes) else self.script:
            conn.sendall(chunk)  # a TLS record of its own
            time.sleep(self.gap)
        if self.mode == "vanish":  # gone without a close frame or TLS close_notify
            conn.close()
            return
        while not self.stopping.is_set():
            data = conn.recv(65536)
            if not data:
                return
            client.receive_data(data)
            events.extend(client.events())
