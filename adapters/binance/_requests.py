"""Requests to the exchange and their replies, matched by ``id``.

How it works
------------
SUBSCRIBE, UNSUBSCRIBE and LIST_SUBSCRIPTIONS go out as ``{"method", "params", "id"}``; the
exchange answers each with ``{"result", "id"}`` or an error, in any order, between events. An
error comes flat, ``{"code", "msg", "id"}`` (the documentation's table), or wrapped,
``{"error": {"code", "msg"}, "id"}`` (what the live service and the official SDK use): both
fail the request at once with :class:`BinanceRequestError` carrying the code and message.
Each connection (a :class:`~._leg.Leg`) keeps its requests in flight by id; :meth:`Requests.call`
sends one once the leg's pacer allows, waits for its reply up to ``timeout`` and counts the
outcome; :meth:`Requests.settle` hands a reply to its request; :meth:`Requests.fail_all` ends
every request of a connection that left live, so no caller waits for a reply that cannot come.
Ids are unique per stream (one counter over all its connections), so a late reply on a
replaced connection can never settle a request of the new one. A reply whose ``result`` is
not what the exchange documents for its method (``_validate.reply_problem``) fails its request
with :class:`BinanceRequestError` and is reported to the stream as malformed.
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ...fsm import RegulatorError, format_kv
from ..websocket._errors import NotLiveError
from ._validate import LogLimiter, reply_problem, short

if TYPE_CHECKING:
    from ._leg import Leg

__all__ = [
    "BinanceRequestError",
    "Pending",
    "RequestTimeout",
    "Requests",
    "error_of",
    "is_reply",
]


class BinanceRequestError(RegulatorError):
    """The exchange answered a request with an error (``code``, ``msg``), or the connection
    carrying it was lost before the reply."""

    def __init__(self, method: str, code: int | None, msg: str) -> None:
        self.method = method
        self.code = code
        self.msg = msg
        where = "" if code is None else f" (code {code})"
        super().__init__(f"{method} failed{where}: {msg}")


class RequestTimeout(BinanceRequestError):
    """No reply within ``request_timeout``."""


@attrs.define(eq=False)
class Pending:
    """One request in flight: settled once, by its reply or by the loss of its connection."""

    method: str
    done: anyio.Event = attrs.field(factory=anyio.Event)
    result: Any = None
    error: BinanceRequestError | None = None


def is_reply(message: dict[str, Any]) -> bool:
    """A reply to a request (not a market event)."""
    return "id" in message and ("result" in message or error_of(message) is not None)


def error_of(message: dict[str, Any]) -> tuple[int | None, str] | None:
    """``(code, msg)`` of an error frame, flat or wrapped in ``"error"``; None otherwise."""
    error = message.get("error")
    if isinstance(error, dict):
        body: dict[str, Any] = error
    elif "code" in message and "result" not in message:
        body = message
    else:
        return None
    code = body.get("code")
    msg = body.get("msg", "")
    return (code if isinstance(code, int) and not isinstance(code, bool) else None), short(
        msg if isinstance(msg, str) else repr(msg)
    )


class Requests:
    """Requests of one stream over all its connections, with their counters."""

    def __init__(self, timeout: float, logger: logging.Logger) -> None:
        self.timeout = timeout
        self._log = logger
        self._ids = itertools.count(1)
        self.sent = 0
        self.errors = 0
        self.timeouts = 0
        self.unexpected = 0  # replies that answer no request in flight
        # a server can send replies nobody asked for at any rate: their lines are limited
        self._unexpected_log = LogLimiter()

    async def call(self, leg: Leg, method: str, params: list[str] | None = None) -> Any:
        """Send ``method`` on ``leg`` (paced) and return the exchange's ``result``."""
        if leg.ws.state != "live":
            raise NotLiveError(f"{method}: the connection is {leg.ws.state}, not live")
        await leg.pacer.wait()
        rid = next(self._ids)
        request = Pending(method)
        body: dict[str, Any] = {"method": method, "id": rid}
        if params is not None:
            body["params"] = params
        leg.pending[rid] = request
        try:
            await leg.ws.send(json.dumps(body, separators=(",", ":")))
        except Exception:
            leg.pending.pop(rid, None)
            raise
        self.sent += 1
        with anyio.move_on_after(self.timeout):
            await request.done.wait()
        if not request.done.is_set():
            leg.pending.pop(rid, None)
            self.timeouts += 1
            raise RequestTimeout(method, None, f"no reply within {self.timeout} s")
        if request.error is not None:
            self.errors += 1
            raise request.error
        return request.result

    def settle(self, leg: Leg, message: dict[str, Any]) -> str | None:
        """Hand a reply to the request it answers (an unknown id is logged and dropped).
        Returns why the reply is malformed (its request then fails), else None."""
        rid = message.get("id")
        request = leg.pending.pop(rid, None) if type(rid) is int else None
        if request is None:
            self.unexpected += 1
            held = self._unexpected_log.allow()
            if held is not None:
                shown = short(repr(rid), 40) if not isinstance(rid, int | str) else short(str(rid))
                extra = {"suppressed": held} if held else {}
                self._log.warning(
                    format_kv(event="unexpected_reply", name=leg.ws.name, id=shown, **extra)
                )
            return None
        problem: str | None = None
        error = error_of(message)
        if error is not None:
            request.error = BinanceRequestError(request.method, error[0], error[1])
        else:
            result = message.get("result")
            problem = reply_problem(request.method, result)
            if problem is not None:
                request.error = BinanceRequestError(
                    request.method, None, f"malformed reply: {problem}"
                )
            else:
                request.result = result
        request.done.set()
        return problem

    @staticmethod
    def fail_all(leg: Leg, why: str) -> None:
        """End every request in flight on ``leg`` with ``why`` (its connection is gone)."""
        pending, leg.pending = leg.pending, {}
        for request in pending.values():
            request.error = BinanceRequestError(request.method, None, why)
            request.done.set()
