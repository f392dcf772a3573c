"""HTTP/1.1 on the exchange's origin: REST answers with their weight, upgrade checks, and
responses whose status lines carry the reason phrase (``HTTP/1.1 429 Too Many Requests``:
clients print it)."""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from urllib.parse import parse_qsl, urlsplit

import h11

from ._limits import WeightLimit, retry_after_header
from ._rest import Rest, RestError, micro_rest

__all__ = ["MAX_REQUEST_BYTES", "answer_rest", "asks_upgrade", "is_upgrade", "respond"]

#: A request line and its headers; more is refused (h11's bound, 431 / 400).
MAX_REQUEST_BYTES = 16_384


def reason_phrase(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def respond(
    http: h11.Connection,
    status: int,
    body: bytes,
    headers: list[tuple[str, str]],
    *,
    close: bool = False,
) -> bytes:
    """The bytes of a whole JSON response (status line with its reason phrase)."""
    headers = [
        ("content-type", "application/json;charset=UTF-8"),
        ("content-length", str(len(body))),
        *headers,
    ]
    if close:
        headers.append(("connection", "close"))
    response = h11.Response(status_code=status, headers=headers, reason=reason_phrase(status))
    out = http.send(response) or b""
    out += http.send(h11.Data(data=body)) or b""
    return out + (http.send(h11.EndOfMessage()) or b"")


def answer_rest(
    rest: Rest, weight: WeightLimit, method: bytes, target: str, time_unit: bytes = b""
) -> tuple[int, bytes, list[tuple[str, str]]]:
    """(status, body, headers) for one REST request: its weight charged first (a request
    with bad parameters costs its endpoint's weight, or 1); 429 / 418 with Retry-After when
    the weight limit is broken; ``X-MBX-USED-WEIGHT(-1M)`` on every answer; ``time_unit``
    (the ``X-MBX-TIME-UNIT`` header) ``MICROSECOND``: time fields in microseconds."""
    parts = urlsplit(target)
    headers: list[tuple[str, str]] = []
    status, body = 404, b""
    if method == b"GET" and parts.path in rest.routes:
        error: RestError | None = None
        cost = 1
        try:
            cost, compute = rest.prepare(parts.path, parse_qsl(parts.query, keep_blank_values=True))
        except RestError as exc:
            error = exc
        wall = time.time()
        refused = weight.charge(cost, time.monotonic(), wall)
        if refused is not None:
            status, retry = refused
            headers.append(("retry-after", retry_after_header(retry)))
            msg = (
                f"Too much request weight used; current limit is {weight.limit} request weight"
                " per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling"
                " the API."
                if status == 429
                else "Way too much request weight used; IP banned until"
                f" {int((wall + retry) * 1000)}. Please use WebSocket Streams for live updates"
                " to avoid bans."
            )
            body = json.dumps({"code": -1003, "msg": msg}).encode()
        elif error is not None:
            status = error.status
            body = json.dumps({"code": error.code, "msg": error.msg}).encode()
        elif time_unit.upper() not in (b"", b"MILLISECOND", b"MICROSECOND"):
            status = 400
            body = b'{"code":-1100,"msg":"Invalid time unit."}'
        else:
            data = compute()
            if time_unit.upper() == b"MICROSECOND":
                data = micro_rest(data)
            status, body = 200, json.dumps(data, separators=(",", ":")).encode()
    used = str(weight.used)
    headers += [("x-mbx-used-weight", used), ("x-mbx-used-weight-1m", used)]
    return status, body, headers


def is_upgrade(request: h11.Request) -> bool:
    """``Upgrade: websocket``: the request is for the streams."""
    return any(n == b"upgrade" and v.lower() == b"websocket" for n, v in request.headers)


def asks_upgrade(request: h11.Request) -> bool:
    """``Connection: Upgrade`` (h11 switches protocols only then)."""
    for name, value in request.headers:
        if name == b"connection" and b"upgrade" in value.lower().replace(b" ", b"").split(b","):
            return True
    return False
