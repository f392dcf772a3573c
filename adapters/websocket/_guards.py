"""What the socket refuses to trust: a bad opening handshake, a blocked write, a weakened TLS
context. Each refusal is an exception that carries its failure kind, so the classifier needs
no knowledge of the checks.

httpx-ws 0.9.0 checks only the status of the upgrade response: anything answering 101 (a
misconfigured proxy, a captive portal) would go live. :func:`check_handshake` applies RFC 6455
section 4.1 (the client's checks of the server's opening handshake) to the response before the
session starts.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping

from .._redact import clip

__all__ = [
    "GuardFailure",
    "HandshakeRejected",
    "InsecureContext",
    "SendBlocked",
    "check_handshake",
    "expected_accept",
]

_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


class GuardFailure(Exception):
    """A refusal of ours; ``kind`` is the connection machine's failure kind."""

    kind = "protocol"


class HandshakeRejected(GuardFailure):
    """The server's 101 response breaks RFC 6455 section 4.1 (kind ``protocol``)."""

    kind = "protocol"


class SendBlocked(GuardFailure, TimeoutError):
    """A frame could not be written within the deadline: the peer stopped reading (``timeout``)."""

    kind = "timeout"


class InsecureContext(GuardFailure):
    """The TLS context no longer verifies certificates and host names (``fatal``)."""

    kind = "fatal"


def expected_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value a server must answer for ``Sec-WebSocket-Key``."""
    # SHA-1 is what RFC 6455 prescribes here (a fingerprint, not a security measure)
    digest = hashlib.sha1(key.strip().encode("ascii") + _WS_GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def _echo(value: str | None) -> str:
    """A server's header value as a reason quotes it: repr'd (controls escaped), clipped."""
    return "None" if value is None else repr(clip(value))


def _tokens(value: str | None) -> list[str]:
    return [t.strip().lower() for t in (value or "").split(",") if t.strip()]


def check_handshake(status: int, request: Mapping[str, str], response: Mapping[str, str]) -> None:
    """Raise :class:`HandshakeRejected` naming the header unless the upgrade is valid.

    ``request`` and ``response`` are case-insensitive header mappings (httpx ``Headers``).
    """
    if status != 101:
        raise HandshakeRejected(f"handshake: status {status}, not 101 Switching Protocols")
    upgrade = response.get("upgrade")
    if upgrade is None or upgrade.strip().lower() != "websocket":
        raise HandshakeRejected(
            f"handshake: header Upgrade must be 'websocket' (got {_echo(upgrade)})"
        )
    connection = response.get("connection")
    if "upgrade" not in _tokens(connection):
        raise HandshakeRejected(
            f"handshake: header Connection must contain 'upgrade' (got {_echo(connection)})"
        )
    key = request.get("sec-websocket-key", "")
    accept = response.get("sec-websocket-accept")
    if accept is None or accept.strip() != expected_accept(key):
        raise HandshakeRejected(
            "handshake: header Sec-WebSocket-Accept does not match the key sent"
            f" (got {_echo(accept)})"
        )
    offered = _tokens(request.get("sec-websocket-extensions"))
    offered_ext = {t.split(";")[0].strip() for t in offered}
    for extension in _tokens(response.get("sec-websocket-extensions")):
        if extension.split(";")[0].strip() not in offered_ext:
            raise HandshakeRejected(
                "handshake: header Sec-WebSocket-Extensions names an extension the client did"
                f" not offer (got {_echo(extension)})"
            )
    chosen = response.get("sec-websocket-protocol")
    if chosen is not None and chosen.strip().lower() not in _tokens(
        request.get("sec-websocket-protocol")
    ):
        raise HandshakeRejected(
            "handshake: header Sec-WebSocket-Protocol names a subprotocol the client did not"
            f" offer (got {_echo(chosen)})"
        )
