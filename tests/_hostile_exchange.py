"""A Binance-like stream server on 127.0.0.1 that misbehaves on cue (issue 27, items 2-7).

Raw sockets in threads (so asyncio and trio clients can use it), TLS with the trustme
certificate or plain TCP. Each upgrade request is recorded (path and headers, names lower
case) in ``requests``; ``answers`` are given to the first requests in turn (a status and
headers, e.g. ``(429, {"Retry-After": "inf"})`` or a 302 with a ``Location``), later ones get a
correct 101. After a 101 the connection answers the client's requests the exchange's way:
SUBSCRIBE and UNSUBSCRIBE ``{"result": null, "id": ...}``, LIST_SUBSCRIPTIONS the list of
streams subscribed on it, unless ``replies`` maps a method to the ``result`` to send instead
(any JSON value: the wrong shape on purpose). ``push`` sends text messages to every live
connection, ``push_raw`` raw bytes (frames of any shape, see ``_rawframes``), one TLS record
each; both from the test's thread, while the connection's own thread reads.
"""

from __future__ import annotations

import contextlib
import json
import queue
import select
import socket
import ssl
import threading
from typing import Any

from _hostile import accept_for
from _rawframes import raw_frame


class _Conn:
    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.outbox: queue.Queue[bytes] = queue.Queue()
        self.subscribed: list[str] = []
        self.open = True


class HostileExchange:
    def __init__(
        self,
        context: ssl.SSLContext | None,
        *,
        answers: list[tuple[int, dict[str, str]]] | None = None,
        replies: dict[str, Any] | None = None,
    ) -> None:
        self.context = context
        self.answers = list(answers or [])
        self.replies = dict(replies or {})
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.conns: list[_Conn] = []
        self.upgrades = 0
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def base_url(self) -> str:
        scheme = "wss" if self.context is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}"

    def __enter__(self) -> HostileExchange:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.listener.close()
        with self.lock:
            for conn in self.conns:
                with contextlib.suppress(OSError):
                    conn.sock.close()
        self.thread.join(5)

    def live(self) -> list[_Conn]:
        with self.lock:
            return [c for c in self.conns if c.open]

    def push(self, *texts: str) -> None:
        """Text messages to every live connection (each its own frame)."""
        self.push_raw(b"".join(raw_frame(1, t.encode()) for t in texts))

    def push_raw(self, data: bytes) -> None:
        for conn in self.live():
            conn.outbox.put(data)

    # -- the server's threads --------------------------------------------------------------
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
        sock: Any = raw
        conn = _Conn(raw)
        try:
            if self.context is not None:
                sock = self.context.wrap_socket(raw, server_side=True)
            conn.sock = sock
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                request += chunk
            head, _, rest = request.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            with self.lock:
                self.requests.append((path, headers))
                answer = self.answers.pop(0) if self.answers else None
            if answer is not None:
                status, extra = answer
                out = [f"HTTP/1.1 {status} Refused", "Content-Length: 0", "Connection: close"]
                out += [f"{k}: {v}" for k, v in extra.items()]
                sock.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
                return
            key = headers.get("sec-websocket-key", "")
            upgrade = [
                "HTTP/1.1 101 Switching Protocols",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Accept: {accept_for(key)}",
            ]
            sock.sendall(("\r\n".join(upgrade) + "\r\n\r\n").encode())
            with self.lock:
                self.upgrades += 1
                self.conns.append(conn)
            self._loop(conn, rest)
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            conn.open = False
            with contextlib.suppress(OSError):
                sock.close()

    def _loop(self, conn: _Conn, pending: bytes) -> None:
        from wsproto.connection import Connection, ConnectionType
        from wsproto.events import CloseConnection, Ping, TextMessage

        peer = Connection(ConnectionType.SERVER)
        sock = conn.sock
        # blocking writes (a timeout could cut a TLS record and drop a slow client); reads
        # only when select or the TLS layer says there is something to read
        sock.settimeout(None)
        if pending:
            peer.receive_data(pending)
        text = ""
        while not self.stopping.is_set():
            while True:
                try:
                    sock.sendall(conn.outbox.get_nowait())
                except queue.Empty:
                    break
            for event in peer.events():
                if isinstance(event, Ping):
                    sock.sendall(peer.send(event.response()))
                elif isinstance(event, CloseConnection):
                    sock.sendall(peer.send(event.response()))
                    return
                elif isinstance(event, TextMessage):
                    text += event.data
                    if event.message_finished:
                        self._answer(conn, peer, text)
                        text = ""
            buffered = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
            if not buffered and not select.select([sock], [], [], 0.005)[0]:
                continue
            data = sock.recv(65536)
            if not data:
                return
            peer.receive_data(data)

    def _answer(self, conn: _Conn, peer: Any, text: str) -> None:
        from wsproto.events import TextMessage

        body = json.loads(text)
        method = body.get("method")
        params = body.get("params") or []
        if method == "SUBSCRIBE":
            conn.subscribed += [p for p in params if p not in conn.subscribed]
        elif method == "UNSUBSCRIBE":
            conn.subscribed = [s for s in conn.subscribed if s not in params]
        default = list(conn.subscribed) if method == "LIST_SUBSCRIPTIONS" else None
        result = self.replies.get(method, default)
        reply = json.dumps({"result": result, "id": body.get("id")})
        conn.sock.sendall(peer.send(TextMessage(data=reply)))


class Traced:
    """Memory the code under ``with`` allocates (tracemalloc): ``grown`` (still held at the
    end) and ``peak`` (the most held at once), both relative to the start; works when
    tracemalloc already runs (PYTHONTRACEMALLOC)."""

    def __enter__(self) -> Traced:
        import gc
        import tracemalloc

        gc.collect()
        self._owner = not tracemalloc.is_tracing()
        if self._owner:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self._base = tracemalloc.get_traced_memory()[0]
        self.grown = self.peak = 0
        return self

    def __exit__(self, *exc: object) -> None:
        import gc
        import tracemalloc

        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        self.grown, self.peak = current - self._base, peak - self._base
        if self._owner:
            tracemalloc.stop()
