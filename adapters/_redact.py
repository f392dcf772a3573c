"""One redaction policy for every URL, header and text that leaves the library (shared by the
socket's wing, the metrics exporter and the hosts).

Logs, notices, notifier failures, failure reasons and records, stats, exception texts, metrics
labels and the command line's output all pass through :data:`redaction_policy`:

* query values whose *name* looks secret, and headers whose name looks secret (``key``,
  ``token``, ``secret``, ``signature``, ``password``/``passwd``, ``session``, ``jwt``, ``auth``,
  ``cookie``: so ``listenKey``, ``apiKey``, ``X-MBX-APIKEY``, ``Authorization``);
* the userinfo of a URL (``user:password@``);
* path segments that look like tokens (a Binance listenKey in ``/ws/<listenKey>``, a JWT, a
  run of 32+ letters and digits, or of 16+ mixing both), also when percent-encoded; in every
  log line, stat, failure record and exception text;
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
    "clip",
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
    r"^[A-Za-z0-9_\-]{32,}$",  # a Binance listenKey (60), most bearer tokens
    # a shorter token: 16+ letters and digits, both present (no stream name or word is)
    r"^(?=[A-Za-z_\-]*[0-9])(?=[0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{16,}$",
    r"^eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*$",  # a JWT
)
# Every regex here runs on text a server or a user wrote, so each is linear in its input (issue
# 27): a match may only start where a run of its characters starts (the lookbehind), and runs
# are consumed possessively (``*+``, ``++``: no backtracking into them). Without both, a long
# run of letters is rescanned from each of its positions (quadratic), and a name that can be
# split in several ways around a secret word ("keykeykey...") is tried in every split.
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*+://[^\s'\"<>()\[\]{}]++")
#: Path segments longer than this are masked unread (no user pattern runs on a megabyte).
MAX_SEGMENT = 1024
#: How much of one log message (httpx's, with a server's reason phrase) is kept.
MAX_LOG_TEXT = 4096


def clip(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters, saying how many were left out (echoes of what a
    server or a user sent: a 100 KB header is named, never repeated whole)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text) - limit} more characters)"


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
        # name=value or name: value pairs in free text. The name is a whole run of word
        # characters (never a part of one) taken possessively; whether it looks secret is
        # decided afterwards by _name_re, so no secret word sits inside the pattern where
        # the runs around it could be split in many ways (the ReDoS of issue 27). The value
        # is matched apart, only after a secret name, and the scan goes on after it: every
        # character is read a bounded number of times.
        self._pair_re = re.compile(
            r"(?<![A-Za-z0-9_\-])(?P<name>[A-Za-z0-9_\-]++)"
            + r"(?P<sep>\s*+[=:]\s*+|\"\s*+:\s*+\"|'\s*+:\s*+')"  # a=b, a: b, "a": "b"
        )
        self._value_re = re.compile(
            r"(?:(?:bearer|basic|token|digest)\s++)?[^\s&,;'\"]++",
            re.I,  # "Bearer x"
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
        if len(segment) > MAX_SEGMENT:  # no pattern (a host's own included) runs on it
            return True
        if "%" not in segment:  # nothing to decode (most segments): one match per pattern
            return any(r.match(segment) for r in self._segment_res)
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

    def text(self, text: str, secrets: Iterable[str] = (), limit: int | None = None) -> str:
        """``text`` with ``secrets``, every URL in it and every secret-looking pair masked.

        Linear in ``len(text)``. With ``limit``, at most ``limit`` characters are kept (see
        :func:`clip`); only a bounded head is read, so the cost is bounded too, and a secret
        cut in two by the bound is beyond what is kept."""
        secrets = list(secrets)
        if limit is not None:
            longest = max((len(s) for s in secrets), default=0)
            return clip(self.text(text[: 4 * limit + longest + 64], secrets), limit)
        for secret in secrets:
            if secret:
                text = text.replace(secret, MASK)
        text = _URL_IN_TEXT.sub(lambda m: self.url(m.group(0)), text)
        return self._mask_pairs(text)

    def _mask_pairs(self, text: str) -> str:
        out: list[str] = []
        done = pos = 0
        while (pair := self._pair_re.search(text, pos)) is not None:
            pos = pair.end()
            if not self.secret_name(pair.group("name")):
                continue
            value = self._value_re.match(text, pos)
            if value is None:
                continue
            pos = value.end()
            if value.group(0).strip("*") == "":  # already masked
                continue
            out += [text[done : pair.end()], MASK]
            done = pos
        out.append(text[done:])
        return "".join(out)


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
        cleaned = redaction_policy.text(message, limit=MAX_LOG_TEXT)
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
