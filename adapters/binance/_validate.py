"""What a Binance message must look like before it reaches the tracker or a request, and a
rate limit for the log lines a hostile server can cause.

How it works
------------
A server decides every byte of what it sends, so a message is checked against the shapes the
exchange documents (binance-spot-api-docs, web-socket-streams.md) before anything relies on
it: a kline's interval is one of the documented ones (``0m`` would divide by zero, ``9999…9m``
would overflow a conversion), a reply's ``result`` is ``null`` for SUBSCRIBE and UNSUBSCRIBE
and a list of stream names for LIST_SUBSCRIPTIONS. A message that fails is *malformed*: the
stream counts it, logs it (rate-limited) and goes on.

:class:`LogLimiter` keeps those log lines from becoming a flood a server controls: at most
``burst`` lines per ``period`` seconds; the lines it holds back are counted and the next line
it lets through says how many (``suppressed=N``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "KLINE_INTERVALS_MS",
    "LogLimiter",
    "kline_problem",
    "reply_problem",
    "short",
]

#: The kline intervals the exchange documents, in ms; months (``1M``) have no fixed length.
KLINE_INTERVALS_MS: Final[dict[str, int | None]] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
    "1M": None,
}

#: Longest excerpt of server text (a reason, a value) a log line carries.
EXCERPT_CHARS: Final = 200


def short(text: str, limit: int = EXCERPT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} chars)"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def kline_problem(data: dict[str, Any]) -> str | None:
    """Why a ``kline`` payload does not have the documented shape; None when it does."""
    k = data.get("k")
    if not isinstance(k, dict):
        return "a kline needs an object k"
    if not _is_int(k.get("t")):
        return "a kline needs an integer open time k.t"
    interval = k.get("i")
    if not isinstance(interval, str) or interval not in KLINE_INTERVALS_MS:
        shown = short(repr(interval), 40)
        return f"kline interval k.i={shown} is not a documented interval"
    return None


def _stream_names(result: Any) -> bool:
    return isinstance(result, list) and all(isinstance(name, str) for name in result)


# method -> (the documented result's check, how it is described)
_RESULTS: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    "SUBSCRIBE": (lambda result: result is None, "null"),
    "UNSUBSCRIBE": (lambda result: result is None, "null"),
    "LIST_SUBSCRIPTIONS": (_stream_names, "a list of stream names"),
}


def reply_problem(method: str, result: Any) -> str | None:
    """Why ``result`` is not what the exchange documents for ``method``; None when it is."""
    expected = _RESULTS.get(method)
    if expected is None or expected[0](result):
        return None
    return f"the result of {method} must be {expected[1]} (got a {type(result).__name__})"


class LogLimiter:
    """At most ``burst`` log lines per ``period`` seconds (see the module doc)."""

    def __init__(
        self,
        burst: int = 10,
        period: float = 10.0,
        time_fn: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.period = period
        self._time = time_fn
        self._window_start = -float("inf")
        self._lines = 0
        self.suppressed = 0  # held back since the last line let through
        self.suppressed_total = 0

    def allow(self) -> int | None:
        """None: hold this line back. Else the number of lines held back before it."""
        now = self._time()
        if now - self._window_start >= self.period:
            self._window_start = now
            self._lines = 0
        if self._lines >= self.burst:
            self.suppressed += 1
            self.suppressed_total += 1
            return None
        self._lines += 1
        held, self.suppressed = self.suppressed, 0
        return held
