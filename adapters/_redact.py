"""One redaction policy for every URL, header and text that leaves the library (shared by the
socket's wing, the metrics exporter and the hosts).

Logs, notices, notifier failures, failure reasons and records, stats, exception texts, metrics
labels and the command line's output all pass through :data:`redaction_policy`:

* query values whose *name* looks secret, and headers whose name looks secret (``key``,
  ``token``, ``secret``, ``signature``, ``password``/``passwd``, ``session``, ``jwt``, ``auth``,
  ``cookie``: so ``listenKey``, ``apiKey``, ``X-MBX-APIKEY``, ``Authorization``);
* the userinfo of a URL (``user:password@``);
* path segments that look like tokens (a Binance listenKey, a JWT, a long run of letters and
  digits), also when percent-encoded;
* in free text (an exception's message), every URL found, every ``name=value`` pair with a
  secret-looking name, and every secret value of the URL and headers the text is about, as
  written and percent-encoded.

A host extends the policy (``redaction_policy.add_names("tenant")``,
``redaction_policy.add_pattern(r"^acct-[0-9]+$")``); the change applies everywhere at once.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit, urlunsplit

__all__ = [
    "MASK",
    "RedactionPolicy",
    "guard_third_party_logs",
    "redact",
    "redact_url",
    "redaction_policy",
]

MASK = "***"
_DEFAULT_NAMES = (
    "key",
    "token",
    "secret",
    "signature",
    "sig",
    "password",
    "passwd",
    "pass",
    "session",
    "jwt",
    "auth",
    "cookie",
    "credential",
)
_DEFAULT_PATTERNS = (
    r"^[A-Za-z0-9_\-]{32,}$",  # a Binance listenKey, most bearer tokens
    r"^eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*$",  # a JWT
)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>()\[\]{}]+")


class RedactionPolicy:
    """What counts as secret, and how each kind of text is masked (thread-safe to extend)."""

    def __init__(
        self, names: Iterable[str] = _DEFAULT_NAMES, patterns: Iterable[str] = _DEFAULT_PATTERNS
    ) -> None:
        self._lock = threading.Lock()
        self._names = list(names)
        self._patterns = list(patterns)
        self._compile()

    def _compile(self) -> None:
        self._name_re = re.compile("|".join(re.escape(n) for n in self._names), re.I)
        self._segment_res = [re.compile(p) for p in self._patterns]
        # name=value or name: value pairs in free text, the name secret-looking
        self._pair_re = re.compile(
            r"(?P<name>[A-Za-z0-9_\-]*(?:"
            + "|".join(re.escape(n) for n in self._names)
            + r")[A-Za-z0-9_\-]*)"
            + r"(?P<sep>\s*[=:]\s*|\"\s*:\s*\"|'\s*:\s*')"  # a=b, a: b, "a": "b"
            + r"(?P<value>(?:(?:bearer|basic|token|digest)\s+)?[^\s&,;'\"]+)",  # "Bearer x"
            re.I,
        )

    def add_names(self, *names: str) -> None:
        """Treat query keys and headers whose name contains any of ``names`` as secret."""
        with self._lock:
            self._names += [n for n in names if n]
            self._compile()

    def add_pattern(self, pattern: str) -> None:
        """Treat path segments matching the regular expression ``pattern`` as secret."""
        re.compile(pattern)  # a bad pattern fails here, naming itself
        with self._lock:
            self._patterns.append(pattern)
            self._compile()

    def secret_name(self, name: str) -> bool:
        return self._name_re.search(name) is not None

    def secret_segment(self, segment: str) -> bool:
        plain = unquote(segment)
        return any(r.match(plain) or r.match(segment) for r in self._segment_res)

    def url(self, url: str) -> str:
        """``url`` with userinfo, secret query values and token-like path segments masked."""
        try:
            parts = urlsplit(url)
        except ValueError:  # not a URL at all (e.g. a bad IPv6 literal): mask it whole
            return MASK
        path = "/".join(MASK if self.secret_segment(s) else s for s in parts.path.split("/"))
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = urlencode([(k, MASK if self.secret_name(k) else v) for k, v in pairs], safe="*@/:")
        netloc = parts.netloc
        if "@" in netloc:  # user:password@host
            netloc = MASK + "@" + netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {k: MASK if self.secret_name(k) else v for k, v in headers.items()}

    def secrets_of(
        self, url: str | None = None, headers: Mapping[str, str] | None = None
    ) -> list[str]:
        """The secret values in ``url`` and ``headers``, in every spelling a text may hold."""
        found: list[str] = []
        if url:
            try:
                parts = urlsplit(url)
            except ValueError:
                parts = None
                found.append(url)
            if parts is not None:
                found += [s for s in parts.path.split("/") if s and self.secret_segment(s)]
                for raw in parts.query.split("&"):
                    name, _, value = raw.partition("=")
                    if value and self.secret_name(unquote(name)):
                        found += [value, unquote(value), unquote(value.replace("+", " "))]
                if "@" in parts.netloc:
                    userinfo = parts.netloc.rsplit("@", 1)[0]
                    found += [userinfo, unquote(userinfo)]
                    found += [p for p in userinfo.split(":")[1:] if p]
        for name, value in (headers or {}).items():
            if value and self.secret_name(name):
                found.append(str(value))
        spelled: set[str] = set()
        for secret in found:
            if len(secret) < 3:  # masking "a" would shred every text
                continue
            spelled.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
        return sorted(spelled, key=len, reverse=True)

    def text(self, text: str, secrets: Iterable[str] = ()) -> str:
        """``text`` with ``secrets``, every URL in it and every secret-looking pair masked."""
        for secret in secrets:
            if secret:
                text = text.replace(secret, MASK)
        text = _URL_IN_TEXT.sub(lambda m: self.url(m.group(0)), text)
        return self._pair_re.sub(
            lambda m: (
                m.group(0)
                if m.group("value").strip("*") == ""
                else f"{m.group('name')}{m.group('sep')}{MASK}"
            ),
            text,
        )


#: The process-wide policy every channel uses; extend it, never replace it.
redaction_policy = RedactionPolicy()


def redact_url(url: str) -> str:
    """``url`` with secret query values, userinfo and token-like path segments masked."""
    return redaction_policy.url(url)


def redact(text: str, url: str, headers: Mapping[str, str] | None = None) -> str:
    """``text`` with every secret of ``url`` (and ``headers``) masked (tracebacks, reasons)."""
    policy = redaction_policy
    return policy.text(text, policy.secrets_of(url, headers))


class RedactingFilter(logging.Filter):
    """Rewrites a record's message through the policy (httpx logs raw request URLs at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is logging's to report, not ours
            return True
        cleaned = redaction_policy.text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_FILTER = RedactingFilter()
_THIRD_PARTY_LOGGERS = ("httpx", "httpcore", "httpcore.connection", "httpcore.http11")


def guard_third_party_logs() -> None:
    """Put the redacting filter on the loggers of httpx/httpcore (idempotent)."""
    for name in _THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
