"""Secrets out of URLs before they reach logs, history or stats."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["redact", "redact_url"]

_SECRET_KEYS = re.compile(r"(key|token|secret|signature|sig|auth|password|pass)", re.I)
# A Binance listenKey (and most bearer tokens in paths) is a long run of letters and digits.
_LONG_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{32,}$")
MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with secret query values and token-like path segments masked."""
    parts = urlsplit(url)
    path = "/".join(MASK if _LONG_TOKEN.match(seg) else seg for seg in parts.path.split("/"))
    query = urlencode(
        [(k, MASK if _SECRET_KEYS.search(k) else v) for k, v in parse_qsl(parts.query, True)],
        safe="*@/",
    )
    netloc = parts.netloc
    if "@" in netloc:  # user:password@host
        netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` masked (for tracebacks and reasons)."""
    parts = urlsplit(url)
    secrets = [seg for seg in parts.path.split("/") if _LONG_TOKEN.match(seg)]
    secrets += [v for k, v in parse_qsl(parts.query, True) if _SECRET_KEYS.search(k) and v]
    if "@" in parts.netloc:
        secrets.append(parts.netloc.rsplit("@", 1)[0])
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
