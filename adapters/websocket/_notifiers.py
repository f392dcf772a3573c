"""Notifiers: who hears about alarms, resolutions and pattern reports (R1.3, R3.5).

A notifier is an async callable taking one of :class:`Alarm`, :class:`AlarmResolved` or
:class:`PatternReport`. The adapter runs each in its own task with a timeout and logs (never
raises) its failures: a broken notifier never breaks the connection.

A webhook's answer body is never read: only its status matters, so the response is closed
unread (with its connection) and a server answering with a body of any size costs nothing.
(Reading a prefix would need httpx's async-generator streams, which trio reports as leaked
when they are left before their end.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import httpx

from ...fsm import Alarm, AlarmResolved, PatternReport, format_kv
from ._logfields import iso_utc

__all__ = [
    "CallbackNotifier",
    "LoggingNotifier",
    "Notice",
    "Notifier",
    "WebhookNotifier",
    "notice_payload",
]

Notice = Alarm | AlarmResolved | PatternReport


class Notifier(Protocol):
    async def __call__(self, notice: Notice) -> None: ...


def notice_payload(notice: Notice, *, source: str = "") -> dict[str, Any]:
    """A JSON-able dict: ``{"type": "alarm" | "resolved" | "pattern", "source", ...facts}``;
    wall times (``wall_at``, ``raised_wall_at``) also as ISO-8601 UTC (``wall_at_iso``)."""
    kind = {Alarm: "alarm", AlarmResolved: "resolved", PatternReport: "pattern"}[type(notice)]
    payload: dict[str, Any] = {"type": kind, "source": source, **notice.as_dict()}
    # wall times also as ISO-8601 UTC, the form an operator matches with a status page (R3.1)
    for key in ("wall_at", "raised_wall_at"):
        if key in payload:
            payload[f"{key}_iso"] = iso_utc(payload[key])
    return payload


class LoggingNotifier:
    """Logs alarms at ERROR, resolutions at INFO, pattern reports at WARNING."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("regulator.connection")

    async def __call__(self, notice: Notice) -> None:
        payload = notice_payload(notice)
        kind = payload.pop("type")
        level = {"alarm": logging.ERROR, "resolved": logging.INFO}.get(kind, logging.WARNING)
        payload.pop("source")
        fields = {k: v for k, v in payload.items() if not isinstance(v, dict | list)}
        self.logger.log(level, format_kv(event=f"notify_{kind}", **fields))


class CallbackNotifier:
    """Calls ``callback(notice)``; the callback may be sync or async."""

    def __init__(self, callback: Callable[[Notice], Awaitable[None] | None]) -> None:
        self.callback = callback

    async def __call__(self, notice: Notice) -> None:
        result = self.callback(notice)
        if result is not None:
            await result


class WebhookNotifier:
    """POSTs ``notice_payload(notice)`` as JSON to ``url``; one retry after ``retry_delay``."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 1,
        retry_delay: float = 1.0,
        headers: dict[str, str] | None = None,
        source: str = "regulator",
        verify: Any = True,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.headers = headers or {}
        self.source = source
        self.verify = verify

    async def __call__(self, notice: Notice) -> None:
        payload = notice_payload(notice, source=self.source)
        last: Exception | None = None
        async with httpx.AsyncClient(timeout=self.timeout, verify=self.verify) as client:
            for attempt in range(self.retries + 1):
                try:
                    async with client.stream(
                        "POST", self.url, json=payload, headers=self.headers
                    ) as response:  # closed unread on the way out: the body never counts
                        response.raise_for_status()
                    return
                except httpx.HTTPError as exc:
                    last = exc
                    if attempt < self.retries:
                        await anyio.sleep(self.retry_delay)
        assert last is not None
        raise last
