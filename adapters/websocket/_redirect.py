"""Where a 3xx answer to the upgrade may take a connection, and which headers go with it.

A redirect is the server's word, so it is held to two rules (the ones browsers and httpx
follow for HTTP):

* **never from wss to ws**: a ``Location`` that would leave TLS (``ws://``, ``http://``,
  in any case) is refused; the connection fails as ``fatal`` and nothing is sent in clear text;
* **secret headers stay with their origin**: on a redirect to another origin (scheme, host or
  port differ; ``ws`` to ``wss`` on the same host with default ports excepted, as httpx does)
  every header whose name looks secret (the redaction policy's rule: ``X-MBX-APIKEY``,
  ``Authorization``, ...) and ``Cookie`` are dropped, for this and every later attempt.
"""

from __future__ import annotations

import attrs
import httpx

from ._redact import redaction_policy

__all__ = ["Redirect", "follow"]

_SECURE = {"wss": True, "https": True, "ws": False, "http": False}
_AS_WS = {"https": "wss", "http": "ws"}
_DEFAULT_PORT = {"ws": 80, "wss": 443}
# always secret whatever the policy says (httpx strips Authorization across origins)
_ALWAYS = frozenset({"authorization", "proxy-authorization", "cookie"})


@attrs.frozen
class Redirect:
    #: the URL to connect to next (``ws``/``wss``), or None when refused
    target: str | None
    #: the headers to send there
    headers: dict[str, str]
    #: why it is refused (None: followed)
    refused: str | None = None
    #: names of the headers dropped because the target is another origin
    dropped: tuple[str, ...] = ()


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    scheme = _AS_WS.get(url.scheme, url.scheme)
    return scheme, url.host.lower(), url.port or _DEFAULT_PORT.get(scheme)


def _same_origin(old: httpx.URL, new: httpx.URL) -> bool:
    a, b = _origin(old), _origin(new)
    if a == b:
        return True
    # ws -> wss on the same host, default ports both: a TLS upgrade, as httpx allows
    return a == ("ws", b[1], 80) and b == ("wss", a[1], 443)


def secret_header(name: str) -> bool:
    return name.lower() in _ALWAYS or redaction_policy.secret_name(name)


def follow(url: str, location: str, headers: dict[str, str]) -> Redirect:
    """Where ``location`` (relative to ``url``) leads and the headers that may go there."""
    old = httpx.URL(url)
    try:
        new = old.join(location)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        return Redirect(None, headers, f"the Location is not a valid URL ({exc})")
    scheme = new.scheme.lower()
    if scheme not in _SECURE:
        return Redirect(None, headers, f"a redirect to a {scheme or 'missing'} scheme")
    new = new.copy_with(scheme=_AS_WS.get(scheme, scheme))
    if _SECURE.get(old.scheme.lower(), False) and not _SECURE[scheme]:
        return Redirect(None, headers, "a redirect from wss to ws would leave TLS")
    if not new.host:
        return Redirect(None, headers, "a redirect to no host")
    if _same_origin(old.copy_with(scheme=old.scheme.lower()), new):
        return Redirect(str(new), headers)
    kept = {k: v for k, v in headers.items() if not secret_header(k)}
    dropped = tuple(k for k in headers if k not in kept)
    return Redirect(str(new), kept, dropped=dropped)
