"""Real exceptions -> the machine's failure kinds (the only place that knows about them).

httpx-ws 0.9.0 wraps whatever leaves its session in an ExceptionGroup, leaks ``ssl.SSLError``
and ``anyio.EndOfStream`` unmapped on asyncio, and on trio turns a corrupted TLS record into a
bare ``WebSocketNetworkError()``. So: flatten the groups, skip cancellations, walk each leaf's
``__cause__``/``__context__`` chain (httpcore raises ``ReadError from SSLError``), and take the
most specific fact found.

A server's ``Retry-After`` is its word, not ours to trust: a value that is not a finite
number of seconds >= 0 (``inf``, ``1e999``, ``-5``, ``nan``) or is above
:data:`MAX_RETRY_AFTER` (3 days, the longest ban Binance documents) is capped into
``[0, MAX_RETRY_AFTER]`` (``nan``, which says nothing, is ignored) and
:attr:`Classified.retry_after_capped` keeps what the server sent, so the adapter logs it. A
date (RFC 9110 allows one) is not used either. So no wait a server asks for is ever endless.
"""

from __future__ import annotations

import math
import ssl
import traceback
from collections.abc import Iterator
from typing import Final

import anyio
import attrs
import httpx
from httpx_ws import (
    WebSocketDisconnect,
    WebSocketInvalidTypeReceived,
    WebSocketNetworkError,
    WebSocketUpgradeError,
)

# httpx-ws 0.9 raises its own EndOfStream when the peer closes TCP without a close frame
from httpx_ws._api import EndOfStream as HttpxWsEndOfStream

from .._redact import clip
from ._buffer import BufferFull
from ._guards import GuardFailure

__all__ = ["MAX_RETRY_AFTER", "Classified", "MessageTooBig", "classify_exception"]

#: The longest Retry-After honoured, in seconds: 3 days, Binance's longest documented ban.
MAX_RETRY_AFTER: Final = 259_200.0
# the longest excerpt of a server's Retry-After kept for the log line
_SHOWN: Final = 40

#: Close codes that announce a planned restart: reconnect at once, not a failure.
PLANNED_CLOSE_CODES = frozenset({1001, 1012})


class MessageTooBig(Exception):
    """A message grew past ``max_message_bytes`` before it was complete."""


@attrs.frozen
class Classified:
    kind: str
    reason: str
    retry_after: float | None
    detail: str
    #: the Location of a 3xx answer to the upgrade (the adapter may follow it)
    location: str | None = None
    #: the server's Retry-After as sent (cut to 40 characters) when it was not used as is
    retry_after_capped: str | None = None


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes; a group in the chain (anyio's "All connection attempts
    failed" is caused by one per address tried) contributes its leaves' chains."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BaseExceptionGroup):
            for leaf in _leaves(current):
                yield from _chain(leaf)
        else:
            yield current
        current = current.__cause__ or current.__context__


def _retry_after(response: httpx.Response) -> float | None:
    return retry_after_seconds(response.headers.get("retry-after"))[0]


def retry_after_seconds(value: str | None) -> tuple[float | None, str | None]:
    """``(seconds to wait or None, the value as sent when it was not used as is)``."""
    if value is None:
        return None, None
    shown = value if len(value) <= _SHOWN else value[:_SHOWN] + "..."
    try:
        seconds = float(value)
    except ValueError:
        return None, shown
    if math.isnan(seconds):
        return None, shown
    if not 0.0 <= seconds <= MAX_RETRY_AFTER:
        return min(max(seconds, 0.0), MAX_RETRY_AFTER), shown
    return seconds, None


def _one(exc: BaseException) -> tuple[int, str, str, float | None]:
    """(priority, kind, reason, retry_after) of one leaf; higher priority wins."""
    for link in _chain(exc):
        if isinstance(link, ssl.SSLCertVerificationError):
            return (100, "fatal", f"certificate verify failed: {link.verify_message}", None)
        if isinstance(link, ssl.SSLError):
            reason = link.reason or str(link)
            return (90, "ssl", str(reason), None)
    for link in _chain(exc):
        if isinstance(link, GuardFailure):  # our own refusals know their kind
            return (85, link.kind, str(link), None)
        if isinstance(link, WebSocketUpgradeError):
            status = link.response.status_code
            if status == 429:
                return (80, "rate_limited", "HTTP 429", _retry_after(link.response))
            if status == 418:
                return (80, "banned", "HTTP 418: IP banned", _retry_after(link.response))
            if status in (400, 401, 403, 404, 410):
                return (80, "fatal", f"HTTP {status}: the upgrade was refused", None)
            if 300 <= status < 400:
                # Retrying the same URL gets the same answer forever: fatal, and the reason
                # says where the server points (the adapter may follow it when asked to).
                location = link.response.headers.get("location") or "(no Location)"
                return (80, "fatal", f"HTTP {status}: redirected to {clip(location)}", None)
            # 503 (and any other answer) may carry Retry-After: honoured like 429's
            kind = "network" if status >= 500 else "protocol"
            return (70, kind, f"HTTP {status}", _retry_after(link.response))
        if isinstance(link, WebSocketDisconnect):
            code = int(link.code)
            if code in PLANNED_CLOSE_CODES:
                return (80, "server_closed", f"close {code}: {link.reason or ''}".strip(), None)
            return (70, "protocol", f"close {code}: {link.reason or ''}".strip(), None)
        if isinstance(link, MessageTooBig | BufferFull):
            return (75, "protocol", str(link), None)
        if isinstance(link, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return (80, "fatal", f"bad URL: {link}", None)
        if isinstance(link, TimeoutError | httpx.TimeoutException):
            return (60, "timeout", type(link).__name__, None)
        if isinstance(link, WebSocketInvalidTypeReceived | KeyError):
            return (50, "protocol", f"{type(link).__name__}: {link}", None)
    for link in _chain(exc):
        if isinstance(link, ConnectionRefusedError):
            return (40, "network", "connection refused", None)
        if isinstance(link, ConnectionResetError):
            return (40, "network", "connection reset by peer", None)
    for link in _chain(exc):
        if isinstance(link, HttpxWsEndOfStream):  # it carries no message of its own
            return (30, "network", "connection closed without a close frame", None)
        if isinstance(
            link,
            WebSocketNetworkError
            | anyio.EndOfStream
            | anyio.BrokenResourceError
            | anyio.ClosedResourceError
            | httpx.NetworkError
            | httpx.RemoteProtocolError
            | OSError,
        ):
            text = str(link) or type(link).__name__
            return (30, "network", text, None)
    return (0, "unknown", f"{type(exc).__name__}: {exc}", None)


def classify_exception(exc: BaseException) -> Classified:
    """The failure kind, reason and Retry-After of ``exc`` (a leaf or an ExceptionGroup)."""
    leaves = [
        leaf for leaf in _leaves(exc) if not isinstance(leaf, anyio.get_cancelled_exc_class())
    ] or [exc]
    best = max((_one(leaf) for leaf in leaves), key=lambda item: item[0])
    detail = "".join(traceback.format_exception(exc)).strip()
    return Classified(
        kind=best[1],
        reason=best[2],
        retry_after=best[3],
        detail=detail,
        location=_redirect_location(leaves) if best[2].startswith("HTTP 3") else None,
        retry_after_capped=_retry_after_sent(leaves) if best[1] != "fatal" else None,
    )


def _retry_after_sent(leaves: list[BaseException]) -> str | None:
    """The Retry-After the server sent, when :func:`retry_after_seconds` did not use it as is."""
    for leaf in leaves:
        for link in _chain(leaf):
            if isinstance(link, WebSocketUpgradeError):
                return retry_after_seconds(link.response.headers.get("retry-after"))[1]
    return None


def _redirect_location(leaves: list[BaseException]) -> str | None:
    for leaf in leaves:
        for link in _chain(leaf):
            if isinstance(link, WebSocketUpgradeError) and 300 <= link.response.status_code < 400:
                location = link.response.headers.get("location")
                return str(location) if location else None
    return None
