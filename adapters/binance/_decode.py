"""JSON decoding of the exchange's messages: a fast library when installed, else the standard one.

How it works
------------
At import, the first of ``msgspec`` and ``orjson`` that imports is chosen (the ``fast`` extra
installs msgspec); without either, :func:`json.loads`. ``DECODER`` names the one in use (the
stream's stats and the bench page show it). msgspec comes first because it keeps integers
past 64 bits exact, as json does; orjson turns them into floats, so its values are checked.

Identical outcomes. A fast library refuses some text the standard library accepts: integers
beyond 64 bits, ``NaN`` and ``Infinity``, lone surrogates, UTF-16/32 or BOM-prefixed bytes,
nesting past its own limit. Whatever it refuses is decoded again by :func:`json.loads`, so a
message decodes to the same value, or fails with the same error, whichever decoder is in use
(``tests/binance/test_decode.py`` checks it differentially, on Hypothesis's JSON and on every
stream type of the exchange simulator). Where both accept, the values are equal (both build
dicts, lists, str, int, float, bool and None; duplicate keys: the last wins in all three).
The second decode runs only for input the fast library refused: never on the exchange's own
messages.

Raw messages (``BinanceStream(raw=True)``): the host keeps the message as received and the
stream decodes only what its own checks read: the stream name and, of ``data``, the event type,
the ids and times (``e``, ``E``, ``t``, ``a``, ``U``, ``u``, ``lastUpdateId``, ``k.t``, ``k.i``,
``k.x``). With msgspec that is a typed decode (:data:`IDS_FIRST`) that skips every other field
without building it (a diff depth's bids, a trade's price); a message that is not a combined
event (a reply, an error frame) is decoded in full where it is handled, and anything the typed
decode refuses goes through the same json fallback. Without msgspec it is the full decode.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypedDict

__all__ = [
    "DECODER",
    "DECODERS",
    "FIRST",
    "IDS_DECODER",
    "IDS_FIRST",
    "IDS_ONLY",
    "decoder_for",
    "loads",
]

Loads = Callable[[str | bytes], Any]


def _orjson() -> Loads:
    import orjson

    return orjson.loads


def _msgspec() -> Loads:
    import msgspec

    return msgspec.json.Decoder().decode


#: The fast libraries tried in order (each a factory that imports it).
DECODERS: dict[str, Callable[[], Loads]] = {"msgspec": _msgspec, "orjson": _orjson}


def _stdlib(raw: str | bytes) -> Any:
    return json.loads(raw)


def _first_for(name: str) -> Loads:
    """What the per-event path calls first: the library's own function where its values need
    no check (the caller decodes again with json whatever it raises), else the full one."""
    if name == "msgspec":
        return DECODERS[name]()
    return decoder_for(name)[1]


def decoder_for(name: str) -> tuple[str, Loads]:
    """``(label, loads)`` for ``name`` (``"orjson"``, ``"msgspec"`` or ``"json"``); raises
    ImportError when the library is not installed. The fast ones fall back to json."""
    if name == "json":
        return "json (standard library)", _stdlib
    fast = DECODERS[name]()
    try:
        label = f"{name} {version(name)}"
    except PackageNotFoundError:  # pragma: no cover - imported, so installed
        label = name
    refused = _refusals(name)

    def loads(raw: str | bytes) -> Any:
        try:
            value = fast(raw)
        except Exception:
            # refused (or a real error): json decides, so the value or the error is json's
            return json.loads(raw)
        if refused is not None and refused(value):
            return json.loads(raw)
        return value

    return label, loads


def _refusals(name: str) -> Callable[[Any], bool] | None:
    """A check of a fast library's value for what it decodes unlike json (None: nothing)."""
    if name == "orjson":
        return _unlike_json
    return None


#: Nesting deeper than this is left to json (orjson nests to 1024 whatever the stack; json and
#: msgspec stop at Python's recursion limit, which depends on the caller's stack).
_DEEP = 256


def _unlike_json(value: Any) -> bool:
    """Whether orjson's ``value`` may differ from json's: a float (orjson turns an integer past
    64 bits into one; the exchange sends prices as strings, so its messages carry none) or
    nesting past ``_DEEP``. A loop, not recursion (it must not hit the recursion limit)."""
    todo = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        kind = type(item)
        if kind is float:
            return True
        if kind is dict or kind is list:
            if depth >= _DEEP:
                return True
            children = item.values() if kind is dict else item
            todo.extend((child, depth + 1) for child in children)
    return False


def _pick() -> tuple[str, Loads, Loads]:
    for name in DECODERS:
        try:
            label, full = decoder_for(name)
        except ImportError:
            continue
        return label, full, _first_for(name)
    label, full = decoder_for("json")
    return label, full, full


#: ``loads``: decode one message, json's outcome guaranteed. ``FIRST``: for a caller that
#: decodes again with :func:`json.loads` whatever ``FIRST`` raises (one call less per message).
DECODER, loads, FIRST = _pick()


# What the stream's checks read of a combined event (_tracker, _validate.kline_problem). Any
# value type is taken (the checks judge it), but for ``a``: an aggregate trade id (int), a book
# ticker's best ask (str) or a diff depth's asks (a list, kept as unread raw items).


def _ids_decoder() -> tuple[str, Loads] | None:
    try:
        import msgspec
    except ImportError:
        return None
    # (the functional form: the module's annotations are strings, these need real types)
    kline = TypedDict("kline", {"t": Any, "i": Any, "x": Any}, total=False)  # noqa: UP013
    data = TypedDict(  # noqa: UP013
        "data",
        {
            "e": Any,
            "E": Any,
            "t": Any,
            "a": int | str | list[msgspec.Raw],
            "U": Any,
            "u": Any,
            "lastUpdateId": Any,
            "k": kline,
        },
        total=False,
    )
    # an all-market stream's data is a list (nothing in it is checked: kept as raw items)
    envelope = TypedDict(  # noqa: UP013
        "envelope", {"stream": Any, "data": data | list[msgspec.Raw]}, total=False
    )

    try:
        label = f"msgspec {version('msgspec')} (ids only)"
    except PackageNotFoundError:  # pragma: no cover - imported, so installed
        label = "msgspec (ids only)"
    return label, msgspec.json.Decoder(envelope).decode


def _pick_ids() -> tuple[str, Loads]:
    ids = _ids_decoder()
    return ids if ids is not None else (DECODER, FIRST)


#: The raw-message mode's first decode: only what the checks read (msgspec), else ``FIRST``.
IDS_DECODER, IDS_FIRST = _pick_ids()
#: whether ``IDS_FIRST`` decodes only the ids (msgspec) rather than the whole message
IDS_ONLY = IDS_FIRST is not FIRST
