"""The control requests a stream connection accepts, answered as the documentation says.

``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` / ``GET_PROPERTY``
with an ``id`` (an int64, a string of up to 36 letters, digits and ``-``, or null; a request
without one is refused). Replies are ``{"result", "id"}``; errors ``{"code", "msg", "id"}`` with
the documented codes and texts (the exchange's parser is serde, so its texts name serde's
positions: ``at line 1 column N``):

* 0 ``Unknown property``;
* 1 ``Invalid value type: expected Boolean``;
* 2 ``Invalid request: request ID must be an unsigned integer`` (a missing or invalid id),
  ``... unknown variant `X`, expected one of ...``, ``... too many parameters``,
  ``... property name must be a string``, ``... missing field `method` ...``,
  ``... invalid stream`` (a name the exchange does not have);
* 3 ``Invalid JSON: <what serde says> at line L column C``.

Pure: ``answer(text, session)`` returns the reply and changes only ``session``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from ._streams import valid_stream

__all__ = ["Session", "answer"]

_ID_TEXT = re.compile(r"^[A-Za-z0-9-]{1,36}$")
_INT64 = (-(2**63), 2**63 - 1)
_METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_BAD_ID = "Invalid request: request ID must be an unsigned integer"
_TOO_MANY = "Invalid request: too many parameters"
_NAME = "Invalid request: property name must be a string"
#: Python's JSON errors in serde's words (the exchange's parser)
_SERDE = {
    "Expecting value": "expected value",
    "Expecting property name enclosed in double quotes": "key must be a string",
    "Expecting ',' delimiter": "expected `,` or `}`",
    "Expecting ':' delimiter": "expected `:`",
    "Extra data": "trailing characters",
    "Unterminated string starting at": "EOF while parsing a string",
    "Invalid control character at": "control character (\\u0000-\\u001F) found while parsing a"
    " string",
}


@attrs.define
class Session:
    """What one connection's requests can change: its streams and its ``combined`` flag."""

    streams: set[str]
    combined: bool
    max_streams: int


def valid_id(rid: Any) -> bool:
    """The documented request ids: an int64, a string of up to 36 letters, digits and ``-``
    (a UUID fits), or null."""
    if rid is None:
        return True
    if isinstance(rid, int) and not isinstance(rid, bool):
        return _INT64[0] <= rid <= _INT64[1]
    return isinstance(rid, str) and _ID_TEXT.match(rid) is not None


def _invalid_json(text: str, exc: json.JSONDecodeError) -> str:
    what = _SERDE.get(exc.msg, "expected value")
    column = exc.colno
    if exc.pos >= len(text.rstrip()):  # serde names the last character it read
        what = "EOF while parsing a value" if exc.msg == "Expecting value" else what
        column = max(1, column - 1)
    return f"Invalid JSON: {what} at line {exc.lineno} column {column}"


def _column_after(text: str, value: str) -> int:
    """serde's column after the JSON string ``value`` in ``text`` (one line)."""
    quoted = json.dumps(value)
    at = text.find(quoted)
    return (at + len(quoted)) if at >= 0 else len(text)


def _error(code: int, msg: str, rid: Any) -> dict[str, Any]:
    return {"code": code, "msg": msg, "id": rid}


def answer(text: str, session: Session) -> dict[str, Any]:
    """The reply to one request ``text``; a valid one changes ``session``."""
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        return _error(3, _invalid_json(text, exc), None)
    except RecursionError:
        return _error(3, "Invalid JSON: recursion limit exceeded at line 1 column 1", None)
    if not isinstance(request, dict):
        return _error(2, "Invalid request: invalid type: expected struct", None)
    if "id" not in request or not valid_id(request["id"]):
        return _error(2, _BAD_ID, None)
    rid = request["id"]
    if "method" not in request:
        column = len(text.rstrip())
        return _error(2, f"Invalid request: missing field `method` at line 1 column {column}", rid)
    method = request["method"]
    if method not in _METHODS:
        shown = method if isinstance(method, str) else json.dumps(method)
        column = _column_after(text, method) if isinstance(method, str) else len(text)
        expected = ", ".join(f"`{m}`" for m in _METHODS)
        return _error(
            2,
            f"Invalid request: unknown variant `{shown}`, expected one of {expected}"
            f" at line 1 column {column}",
            rid,
        )
    params = request.get("params", [])
    if not isinstance(params, list):
        return _error(2, "Invalid request: invalid type: expected a sequence", rid)
    if set(request) - {"method", "params", "id"}:
        return _error(2, _TOO_MANY, rid)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not all(isinstance(p, str) for p in params):
            return _error(2, "Invalid request: invalid type: expected a string", rid)
        if not all(valid_stream(p) for p in params):
            return _error(2, "Invalid request: invalid stream", rid)
        if method == "SUBSCRIBE":
            if len(session.streams | set(params)) > session.max_streams:
                return _error(2, _TOO_MANY, rid)
            session.streams.update(params)
        else:
            session.streams.difference_update(params)
        return {"result": None, "id": rid}
    if method == "LIST_SUBSCRIPTIONS":
        if params:
            return _error(2, _TOO_MANY, rid)
        return {"result": sorted(session.streams), "id": rid}
    # SET_PROPERTY / GET_PROPERTY
    if not params or not isinstance(params[0], str):
        return _error(2, _NAME, rid)
    if len(params) > (2 if method == "SET_PROPERTY" else 1):
        return _error(2, _TOO_MANY, rid)
    if params[0] != "combined":
        return _error(0, "Unknown property", rid)
    if method == "GET_PROPERTY":
        return {"result": session.combined, "id": rid}
    if len(params) != 2 or not isinstance(params[1], bool):
        return _error(1, "Invalid value type: expected Boolean", rid)
    session.combined = params[1]
    return {"result": None, "id": rid}
