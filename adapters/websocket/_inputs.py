"""Arguments checked before a socket starts anything: the URL and the upgrade's headers.

A bad value raises ``ValueError`` naming the argument, the value (masked where it may be a
secret) and the rule, and nothing has been started or changed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import httpx

from ._redact import MASK, redact_url, redaction_policy

__all__ = ["check_count", "check_headers", "check_seconds", "check_url"]

_SCHEMES = {"ws": False, "wss": True, "http": False, "https": True}
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field-name
# the handshake's own headers: set by httpx-ws, a second copy would break the upgrade
_RESERVED = {
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
}


def check_url(url: object) -> bool:
    """Whether ``url`` needs TLS; raises ValueError unless it is a usable WebSocket URL.

    Schemes are case-insensitive (``WSS://`` is ``wss://``, with the same TLS context)."""
    if not isinstance(url, str):
        raise ValueError(f"url: must be a string (got {type(url).__name__})")
    shown = redact_url(url) if url else repr(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise ValueError(f"url: not a valid URL ({exc}) (got {shown})") from None
    scheme = parsed.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"url: the scheme must be ws, wss, http or https (got {shown})")
    if not parsed.host:
        raise ValueError(f"url: must name a host (got {shown})")
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise ValueError(f"url: the port must be 1 to 65535 (got {shown})")
    return _SCHEMES[scheme]


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """A copy of ``headers``; raises ValueError for a name or value HTTP cannot carry."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValueError(f"headers: must be a mapping of str to str (got {type(headers).__name__})")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise ValueError(f"headers: {name!r} is not a valid header name (RFC 9110 token)")
        if name.lower() in _RESERVED:
            raise ValueError(f"headers[{name!r}]: set by the WebSocket handshake itself")
        shown = MASK if redaction_policy.secret_name(name) else repr(value)
        if not isinstance(value, str):
            raise ValueError(f"headers[{name!r}]: must be a string (got {type(value).__name__})")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"headers[{name!r}]: must contain no CR, LF or NUL (got {shown})")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"headers[{name!r}]: must be Latin-1 text (got {shown})") from None
        checked[name] = value
    return checked


def check_count(name: str, value: object) -> int:
    """``value`` as a whole number >= 1, or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer (got {value!r})")
    if value < 1:
        raise ValueError(f"{name}: must be >= 1 (got {value!r})")
    return value


def check_seconds(name: str, value: object) -> float:
    """``value`` as a finite number of seconds > 0, or ValueError naming ``name``."""
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond float range
            seconds = math.inf
    if not math.isfinite(seconds) or not seconds > 0:
        raise ValueError(f"{name}: must be a finite number of seconds > 0 (got {value!r})")
    return seconds
