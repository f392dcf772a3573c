"""``BinanceStream(raw=True)``: the host gets each message as received, and the stream's own
checks run on a decode of only what they read.

Differentially against the parsed mode: the same events (each one's ``raw`` decodes to the
parsed mode's event), the same duplicates, gaps, malformed and unsubscribed counts, over every
stream type of the exchange simulator with duplicates, a gap and hostile messages among them;
then on a real TLS link through the fault proxy, with the REST backfill and a local order book.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import attrs
import pytest
from _exchangebed import FAST_RECONNECT, ExchangeBed
from _faultbed import Certs
from _fed import fed
from _feed import EVERY_TYPE, HOSTILE, record
from regulator.adapters.binance import AttemptBudget, BinanceStream, Gap
from regulator.adapters.binance._decode import (
    FIRST,
    IDS_DECODER,
    IDS_FIRST,
    IDS_ONLY,
    decoder_for,
)

pytestmark = pytest.mark.spec("R5.5")

JSON = decoder_for("json")[1]
#: what the checks read of ``data`` (the rest stays in ``raw``)
CHECKED = {"e", "E", "t", "a", "U", "u", "lastUpdateId", "k"}


def _through(raws: list[str], *, raw: bool, loads: Any = None) -> dict[str, Any]:
    """What a stream hands the host for ``raws``, read in batches like a socket's reads."""
    stream, events = fed(raws, EVERY_TYPE, loads=loads, raw=raw)
    return {
        "events": events,
        "counters": (
            stream.events_delivered,
            stream.duplicates_dropped,
            stream.malformed,
            stream.unsubscribed_dropped,
        ),
        "gaps": [
            (g.stream, g.field, g.first, g.last, g.count, g.reason) for g in stream.recent_gaps
        ],
    }


def _feed() -> list[str]:
    feed = record(EVERY_TYPE, 1500)
    feed[100:100] = feed[90:95]  # duplicates
    del feed[400:410]  # a gap
    for at, bad in zip(range(200, 200 + 40 * len(HOSTILE), 40), HOSTILE, strict=True):
        feed.insert(at, bad)
    # shapes the typed decode refuses and hands to json: a list as data, a string as k, an
    # object as a (none of them a stream's event)
    feed.insert(700, '{"stream":"ethusdt@aggTrade","data":[1,2]}')
    feed.insert(701, '{"stream":"ethusdt@kline_1m","data":{"e":"kline","E":1,"k":"x"}}')
    feed.insert(702, '{"stream":"ethusdt@aggTrade","data":{"e":"aggTrade","E":1,"a":{}}}')
    feed.insert(703, '{"result":null,"id":99}')  # a reply nobody asked for
    return feed


def _typed(raw: str | bytes) -> bool:
    """Whether the typed decode takes ``raw`` (what it refuses, json decodes in full)."""
    try:
        IDS_FIRST(raw)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("ids", ["typed", "full"])
def test_raw_mode_gives_the_parsed_modes_events_and_checks(ids: str) -> None:
    feed = _feed()
    parsed = _through(feed, raw=False, loads=JSON)
    assert len(parsed["events"]) > 5000 and parsed["gaps"] and parsed["counters"][1] >= 5
    got = _through(feed, raw=True, loads=None if ids == "typed" else FIRST)
    assert got["counters"] == parsed["counters"]
    assert got["gaps"] == parsed["gaps"]
    assert len(got["events"]) == len(parsed["events"])
    for event, want in zip(got["events"], parsed["events"], strict=True):
        assert set(event) == {"stream", "data", "raw"}
        assert event["stream"] == want["stream"]
        # the message as received: it decodes to the parsed mode's event
        assert repr(JSON(event["raw"])) == repr(want)
        data = event["data"]
        if ids == "typed" and IDS_ONLY and type(data) is list:  # an all-market stream's
            assert data == [] and type(want["data"]) is list
        elif ids == "typed" and IDS_ONLY and _typed(event["raw"]):  # only what is checked
            assert set(data) <= CHECKED
            for key, value in data.items():
                if key == "k":
                    assert value == {f: want["data"]["k"][f] for f in value}
                else:
                    assert repr(value) == repr(want["data"][key]), key
        elif type(data) is dict:  # decoded in full: what is kept is the parsed mode's
            assert repr({k: want["data"][k] for k in data}) == repr(data)
        else:
            assert data in ([], want["data"])


def test_the_typed_decode_reads_only_the_checked_fields() -> None:
    if not IDS_ONLY:
        pytest.skip("msgspec not installed: raw mode decodes in full")
    depth = {
        "stream": "ethusdt@depth@100ms",
        "data": {
            "e": "depthUpdate",
            "E": 5,
            "s": "ETHUSDT",
            "U": 10,
            "u": 12,
            "b": [["1.0", "2"]] * 50,
            "a": [["1.1", "2"]] * 50,
        },
    }
    message = IDS_FIRST(json.dumps(depth).encode())
    assert message["data"]["U"] == 10 and message["data"]["u"] == 12 and "b" not in message["data"]
    ticker = (
        '{"stream":"ethusdt@bookTicker","data":{"u":7,"s":"E","b":"1","B":"2","a":"3","A":"4"}}'
    )
    assert IDS_FIRST(ticker) == {"stream": "ethusdt@bookTicker", "data": {"u": 7, "a": "3"}}
    assert IDS_FIRST('{"result":null,"id":1}') == {}  # not an event: decoded in full later
    big = '{"stream":"ethusdt@trade","data":{"e":"trade","t":18446744073709551616}}'
    assert IDS_FIRST(big)["data"]["t"] == 2**64  # ids past 64 bits stay exact


def test_raw_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match=r"raw: must be True or False \(got 'yes'\)"):
        BinanceStream(["ethusdt@trade"], raw="yes")  # type: ignore[arg-type]


# -- on a real link: faults, backfill, order book ------------------------------------------

AGG, KLINE, DEPTH = "ethusdt@aggTrade", "ethusdt@kline_1m", "ethusdt@depth@100ms"


@pytest.fixture
def bed(certs: Certs) -> Iterator[ExchangeBed]:
    with ExchangeBed(certs, weight_limit=60, weight_window=2.0) as running:
        yield running


async def _wait_for(check: Any, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


@pytest.mark.anyio
@pytest.mark.spec("R1.4")
async def test_raw_mode_is_backfilled_and_keeps_a_book_through_a_reset(bed: ExchangeBed) -> None:
    gaps: list[Gap] = []
    s = BinanceStream(
        [AGG, KLINE],
        base_url=bed.url,
        ssl_context=bed.certs.client_context(),
        # 0.3 s before the reconnect: about 30 aggregate trades are lost for sure
        config=attrs.evolve(FAST_RECONNECT, initial_delay=0.3, max_delay=0.3),
        attempt_budget=AttemptBudget(300, 300.0),
        backfill=True,
        rest_url=bed.exchange.rest_url,
        on_gap=gaps.append,
        raw=True,
    )
    book = s.order_book("ethusdt", limit=100)
    events: list[dict[str, Any]] = []

    async def collect() -> None:
        async for event in s:
            events.append(event)

    async with s, anyio.create_task_group() as tg:
        tg.start_soon(collect)
        await _wait_for(lambda: book.synced and len(events) > 50)
        failures = s.get_connection_stats()["reconnect_statistics"]["failures"]
        bed.reset()
        await _wait_for(
            lambda: s.get_connection_stats()["reconnect_statistics"]["failures"] > failures
        )
        await _wait_for(lambda: any(e["stream"] == AGG and "backfill" in e for e in events))
        await _wait_for(lambda: book.synced and s.state == "live")
        now = bed.exchange.call(lambda: bed.exchange.symbols["ethusdt"].update_id)
        await _wait_for(lambda: (book.last_update_id or 0) >= now)
        at, bids = book.last_update_id, book.bids
        decoder = s.get_connection_stats()["binance"]["decoder"]
        tg.cancel_scope.cancel()
    assert decoder == IDS_DECODER
    # refilled from REST: no gap of the trades or candles (a diff depth's is the book's
    # resync from a snapshot, and reported)
    assert [g for g in gaps if g.stream != DEPTH] == []
    assert at is not None and bids == [
        (type(bids[0][0])(p), type(bids[0][1])(q))
        for p, q in bed.exchange.book_at("ethusdt", at)["bids"]
    ]
    decoded = [json.loads(e["raw"]) for e in events]
    for event, message in zip(events, decoded, strict=True):
        assert message["stream"] == event["stream"]
        assert message.get("backfill", False) == event.get("backfill", False)
    ids = [m["data"]["a"] for m in decoded if m["stream"] == AGG]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # refilled: every id once, in order
    assert any(m.get("backfill") for m in decoded)
    depth = [m["data"]["u"] for m in decoded if m["stream"] == DEPTH]
    assert depth == sorted(depth) and len(depth) >= 2
