"""The fast decoders (orjson, msgspec) against the standard library's json, differentially: the
same value or the same error for any input, and the same events, counters and gaps out of a
``BinanceStream`` fed every stream type of the exchange simulator (plus hostile messages)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from _fed import fed
from _feed import EVERY_TYPE, HOSTILE, record
from hypothesis import example, given, settings
from hypothesis import strategies as st
from regulator.adapters.binance._decode import DECODER, DECODERS, FIRST, decoder_for

pytestmark = pytest.mark.spec("R5.5")


def _fast() -> list[str]:
    names = []
    for name in DECODERS:
        try:
            decoder_for(name)
        except ImportError:
            continue
        names.append(name)
    return names


FAST = _fast()
JSON = decoder_for("json")[1]


def outcome(loads: Any, raw: str | bytes) -> tuple[Any, ...]:
    """The value (as its repr: NaN equals NaN, -0.0 differs from 0.0, types and key order
    count) or the error's type and text."""
    try:
        value = loads(raw)
    except RecursionError:
        return ("error", "RecursionError")
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))
    try:
        return ("value", repr(value))
    except RecursionError:  # json gave a value too deep to print: the other must fail alike
        return ("value", "deeper than repr goes")


def test_the_dev_install_has_a_fast_decoder_and_stats_name_it() -> None:
    # make install's extras include ``fast``: the per-event path runs what users of the extra run
    assert FAST, "no fast JSON library installed (the `fast` extra)"
    assert DECODER.split()[0] == FAST[0]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 3, max_value=2**64 + 3)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def texts(draw: st.DrawFn) -> str | bytes:
    """JSON texts as json writes them (NaN, Infinity, big ints, non-ASCII, escapes), cut or
    spliced at random, or re-encoded."""
    text = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans()))
    how = draw(st.sampled_from(["as is", "cut", "splice", "bytes", "utf-16", "bom", "dup"]))
    if how == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "splice":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=3)) + text[at:]
    elif how == "bytes":
        return text.encode("utf-8", "surrogatepass")
    elif how == "utf-16":
        return text.encode("utf-16-le", "surrogatepass")
    elif how == "bom":
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass")
    elif how == "dup":
        text = '{"a":1,"b":2,"a":' + text + "}"
    return text


@pytest.mark.skipif(not FAST, reason="no fast JSON library installed")
@settings(max_examples=400, deadline=None)
@given(raw=texts())
@example(raw=HOSTILE[0])
def test_a_fast_decoder_gives_json_s_value_or_json_s_error(raw: str | bytes) -> None:
    for name in FAST:
        assert outcome(decoder_for(name)[1], raw) == outcome(JSON, raw), name


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_texts_decode_as_json_decodes_them(raw: str) -> None:
    for name in FAST:
        loads = decoder_for(name)[1]
        assert outcome(loads, raw) == outcome(JSON, raw), name
        assert outcome(loads, raw.encode("utf-8", "surrogatepass")) == outcome(
            JSON, raw.encode("utf-8", "surrogatepass")
        ), name


def _through(loads: Any, raws: list[str], streams: tuple[str, ...]) -> dict[str, Any]:
    """What a stream hands the host for ``raws``, read in batches like a socket's reads."""
    stream, events = fed(raws, streams, loads=loads)
    return {
        "events": repr(events),
        "count": len(events),
        "delivered": stream.events_delivered,
        "duplicates": stream.duplicates_dropped,
        "malformed": stream.malformed,
        "unsubscribed": stream.unsubscribed_dropped,
        "gaps": [
            (g.stream, g.field, g.first, g.last, g.count, g.reason) for g in stream.recent_gaps
        ],
    }


def test_every_stream_type_gives_the_same_events_with_either_decoder() -> None:
    feed = record(EVERY_TYPE, 1500)
    # duplicates, a gap, and hostile messages among them: the same outcome for each
    feed[100:100] = feed[90:95]
    del feed[400:410]
    for at, bad in zip(range(200, 200 + 40 * len(HOSTILE), 40), HOSTILE, strict=True):
        feed.insert(at, bad)
    expected = _through(JSON, feed, EVERY_TYPE)
    assert expected["count"] > 5000 and expected["duplicates"] >= 5 and expected["gaps"]
    assert expected["malformed"] >= 10  # the texts no decoder takes, and shapes no stream has
    for name in FAST:
        assert _through(decoder_for(name)[1], feed, EVERY_TYPE) == expected, name
    assert _through(FIRST, feed, EVERY_TYPE) == expected  # what the stream runs by default


def test_the_fast_path_keeps_python_s_values() -> None:
    # the exchange's ids beyond 2**63 and prices as strings come back as json gives them
    for name in FAST:
        loads = decoder_for(name)[1]
        big = loads('{"u":18446744073709551616,"p":"3000.10","x":1.5}')
        assert big == {"u": 2**64, "p": "3000.10", "x": 1.5}
        assert type(big["u"]) is int
        assert math.isnan(loads("NaN"))
