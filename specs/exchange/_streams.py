"""The streams: their names, their payloads, and when each is published.

Names and payloads follow the spot WebSocket streams documentation:

* per trade: ``trade``, ``aggTrade``, ``bookTicker``; ``blockTrade`` when the market makes a
  block trade (rarely: ``MarketConfig.block_trade_every``);
* diff depth ``depth`` (every 1000 ms, also ``@1000ms``) and ``depth@100ms``: each event covers
  the updates ``U`` to ``u`` since the previous one (``U`` = previous ``u`` + 1);
* partial books ``depth5``, ``depth10``, ``depth20`` (1000 ms, or ``@100ms``);
* every 1000 ms: ``ticker`` (24hrTicker), ``miniTicker``, ``!miniTicker@arr`` (also as
  ``!miniTicker@arr@1000ms``, the name python-binance sends), ``ticker_<1h|4h|1d>`` and
  ``!ticker_<1h|4h|1d>@arr`` (rolling windows that open on a minute), ``avgPrice`` (5-minute
  average) and ``referencePrice``;
* ``kline_<interval>`` for every interval (``1s`` ... ``1M``), also ``@+08:00`` (candles of
  days, weeks and months aligned to UTC+8): an update every 2000 ms of market time
  (``kline_1s``: each second), and each candle closed (``x`` true) when market time passes its
  end, empty ones included (up to ``MAX_FILL`` per step).

A connection opened with ``timeUnit=MICROSECOND`` gets every time field in microseconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ._market import INTERVALS_MS, Candle, Symbol, Trade

__all__ = ["STREAM", "WINDOWS_MS", "Streams", "kline_payload", "micro", "valid_stream"]

_INTERVALS = "|".join(INTERVALS_MS)
#: The documented stream names (lower-case symbols).
STREAM = re.compile(
    r"^(?:[a-z0-9]+@(?:trade|aggTrade|blockTrade|bookTicker|ticker|miniTicker|avgPrice|referencePrice"
    r"|ticker_(?:1h|4h|1d)|depth(?:5|10|20)?(?:@100ms|@1000ms)?"
    rf"|kline_(?:{_INTERVALS})(?:@\+08:00)?)"
    r"|!miniTicker@arr(?:@1000ms)?|!ticker_(?:1h|4h|1d)@arr)$"
)
#: The rolling windows of the ``ticker_<window>`` streams.
WINDOWS_MS = {"1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}
_KLINE_UPDATE_MS = 2_000  # the exchange pushes a kline's state every 2 s (kline_1s: 1 s)
_PLUS8 = 8 * 3_600_000

#: The time fields of each event type (multiplied by 1000 for ``timeUnit=MICROSECOND``).
_TIME_FIELDS = {
    "trade": ("E", "T"),
    "aggTrade": ("E", "T"),
    "blockTrade": ("E", "T"),
    "depthUpdate": ("E",),
    "24hrTicker": ("E", "O", "C"),
    "24hrMiniTicker": ("E",),
    "1hTicker": ("E", "O", "C"),
    "4hTicker": ("E", "O", "C"),
    "1dTicker": ("E", "O", "C"),
    "avgPrice": ("E", "T"),
    "referencePrice": ("t",),
    "serverShutdown": ("E",),
}


def valid_stream(name: str) -> bool:
    return STREAM.match(name) is not None


def micro(payload: Any) -> Any:
    """``payload`` with its time fields in microseconds (``timeUnit=MICROSECOND``)."""
    if isinstance(payload, list):
        return [micro(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    kind = payload.get("e")
    if kind == "kline":
        k = dict(payload["k"], t=payload["k"]["t"] * 1000, T=payload["k"]["T"] * 1000 + 999)
        return dict(payload, E=payload["E"] * 1000, k=k)
    fields = _TIME_FIELDS.get(kind, ()) if isinstance(kind, str) else ()
    return dict(payload, **{f: payload[f] * 1000 for f in fields if f in payload})


def kline_payload(
    sym: Symbol, interval: str, c: Candle, now_ms: int, closed: bool
) -> dict[str, Any]:
    return {
        "e": "kline",
        "E": now_ms,
        "s": sym.upper,
        "k": {
            "t": c.start, "T": c.end - 1, "s": sym.upper, "i": interval, "f": c.first_id,
            "L": c.last_id, "o": f"{c.open:.2f}", "c": f"{c.close:.2f}", "h": f"{c.high:.2f}",
            "l": f"{c.low:.2f}", "v": f"{c.volume:.4f}", "n": c.trades, "x": closed,
            "q": f"{c.quote:.4f}", "V": f"{c.taker_volume:.4f}", "Q": f"{c.taker_quote:.4f}",
            "B": "0",
        },
    }  # fmt: skip


def _mini(sym: Symbol, now_ms: int, day: dict[str, Any]) -> dict[str, Any]:
    return {
        "e": "24hrMiniTicker", "E": now_ms, "s": sym.upper, "c": f"{day['close']:.2f}",
        "o": f"{day['open']:.2f}", "h": f"{day['high']:.2f}", "l": f"{day['low']:.2f}",
        "v": f"{day['volume']:.4f}", "q": f"{day['quote']:.4f}",
    }  # fmt: skip


def _window_fields(w: dict[str, Any], now_ms: int) -> dict[str, Any]:
    change = w["close"] - w["open"]
    weighted = w["quote"] / w["volume"] if w["volume"] else w["close"]
    return {
        "p": f"{change:.2f}", "P": f"{100 * change / w['open']:.3f}", "o": f"{w['open']:.2f}",
        "h": f"{w['high']:.2f}", "l": f"{w['low']:.2f}", "c": f"{w['close']:.2f}",
        "w": f"{weighted:.2f}", "v": f"{w['volume']:.4f}", "q": f"{w['quote']:.4f}",
        "O": w["open_ms"], "C": now_ms, "F": w["first"], "L": w["last"], "n": w["count"],
    }  # fmt: skip


def ticker_payload(sym: Symbol, now_ms: int, day: dict[str, Any]) -> dict[str, Any]:
    bids, asks = sym.book(1)
    fields = _window_fields(day, now_ms)
    return {
        "e": "24hrTicker", "E": now_ms, "s": sym.upper, "p": fields["p"], "P": fields["P"],
        "w": fields["w"], "x": f"{day['before']:.2f}", "c": fields["c"],
        "Q": f"{sym.last_qty:.4f}", "b": bids[0][0], "B": bids[0][1], "a": asks[0][0],
        "A": asks[0][1], "o": fields["o"], "h": fields["h"], "l": fields["l"],
        "v": fields["v"], "q": fields["q"], "O": fields["O"], "C": now_ms, "F": fields["F"],
        "L": fields["L"], "n": fields["n"],
    }  # fmt: skip


def window_payload(sym: Symbol, window: str, now_ms: int, w: dict[str, Any]) -> dict[str, Any]:
    return {"e": f"{window}Ticker", "E": now_ms, "s": sym.upper, **_window_fields(w, now_ms)}


def average_price(sym: Symbol, now_ms: int) -> float | None:
    """The volume-weighted price of the last 5 minutes' trades (None without one)."""
    trades = sym.trades_since(now_ms - 300_000 + 1)
    volume = sum(float(t.qty) for t in trades)
    if not trades or not volume:
        return None
    return sum(float(t.price) * float(t.qty) for t in trades) / volume


class Streams:
    """Publishes the market's events: ``publish(stream, payload)`` fans one out."""

    def __init__(self, symbols: dict[str, Symbol], publish: Callable[[str, Any], None]) -> None:
        self.symbols = symbols
        self.publish = publish
        self._kline_names: dict[str, dict[int, tuple[str, tuple[str, ...]]]] = {}
        self._due: dict[str, int] = {}  # per symbol: when the next kline update is due

    def trade(self, sym: Symbol, now_ms: int, wanted: set[str]) -> None:
        """One trade of ``sym``: its trade / aggTrade / bookTicker events and its candles."""
        t: Trade = sym.step(now_ms)
        publish, name, upper = self.publish, sym.name, sym.upper
        if f"{name}@trade" in wanted:
            publish(
                f"{name}@trade",
                {"e": "trade", "E": now_ms, "s": upper, "t": t.id, "p": t.price, "q": t.qty,
                 "T": now_ms, "m": t.buyer_maker, "M": True},
            )  # fmt: skip
        if f"{name}@aggTrade" in wanted:
            publish(
                f"{name}@aggTrade",
                {"e": "aggTrade", "E": now_ms, "s": upper, "a": t.agg_id, "p": t.price,
                 "q": t.qty, "f": t.id, "l": t.id, "T": now_ms, "m": t.buyer_maker, "M": True},
            )  # fmt: skip
        if f"{name}@bookTicker" in wanted:
            m = sym.mid()
            (bid, bid_qty), (ask, ask_qty) = sym.level(m - 1, 0), sym.level(m + 1, 1)
            publish(
                f"{name}@bookTicker",
                {"u": sym.update_id, "s": upper, "b": bid, "B": bid_qty, "a": ask, "A": ask_qty},
            )
        block = sym.new_block
        if block is not None and f"{name}@blockTrade" in wanted:
            publish(
                f"{name}@blockTrade",
                {"e": "blockTrade", "E": now_ms, "s": upper, "t": block.id, "p": block.price,
                 "q": block.qty, "T": block.time, "m": block.buyer_maker},
            )  # fmt: skip
        names = self._names(sym)
        for series, done in sym.advance(t):
            interval = series.interval
            for stream in names[id(series)][1]:
                if stream in wanted:
                    for closed in done:
                        publish(stream, kline_payload(sym, interval, closed, now_ms, True))
        if now_ms < self._due.get(sym.name, 0):
            return  # no candle's update is due (a series only ever moves its due time later)
        due = now_ms + _KLINE_UPDATE_MS
        for series in sym.series.values():
            interval, streams = names[id(series)]
            every = 1_000 if interval == "1s" else _KLINE_UPDATE_MS
            if now_ms - series.sent >= every:
                series.sent = now_ms
                listened = [n for n in streams if n in wanted]
                candle = sym.current(series) if listened else None
                if candle is not None:
                    for stream in listened:
                        publish(stream, kline_payload(sym, interval, candle, now_ms, False))
            due = min(due, series.sent + every)
        self._due[sym.name] = due

    def _names(self, sym: Symbol) -> dict[int, tuple[str, tuple[str, ...]]]:
        """Per candle series of ``sym`` (by id): its interval and the stream names it feeds;
        a UTC series also feeds its ``@+08:00`` name where UTC+8 candles begin at the same
        times (1m ... 8h)."""
        known = self._kline_names.get(sym.name)
        if known is None:
            known = {}
            for (interval, offset), series in sym.series.items():
                base = f"{sym.name}@kline_{interval}"
                if offset:
                    names: tuple[str, ...] = (f"{base}@+08:00",)
                elif (interval, _PLUS8) in sym.series:
                    names = (base,)
                else:
                    names = (base, f"{base}@+08:00")
                known[id(series)] = (interval, names)
            self._kline_names[sym.name] = known
        return known

    def books(self, now_ms: int, wanted: set[str], speed: int) -> None:
        """Diff depth (``U`` = previous ``u`` + 1, whoever listens) and partial books."""
        suffixes: tuple[str, ...] = ("@100ms",) if speed == 100 else ("", "@1000ms")
        for sym in self.symbols.values():
            last = sym.depth_sent.get(speed, sym.update_id)
            sym.depth_sent[speed] = sym.update_id
            bids, asks = sym.book(20)
            for suffix in suffixes:
                stream = f"{sym.name}@depth{suffix}"
                if stream in wanted and sym.update_id > last:
                    b, a = sym.book_diff(last)
                    self.publish(
                        stream,
                        {"e": "depthUpdate", "E": now_ms, "s": sym.upper, "U": last + 1,
                         "u": sym.update_id, "b": b, "a": a},
                    )  # fmt: skip
                for levels in (5, 10, 20):
                    partial = f"{sym.name}@depth{levels}{suffix}"
                    if partial in wanted:
                        self.publish(
                            partial,
                            {"lastUpdateId": sym.update_id, "bids": bids[:levels],
                             "asks": asks[:levels]},
                        )  # fmt: skip

    def every_second(self, now_ms: int, wanted: set[str]) -> None:
        """The 1000 ms streams: tickers, rolling windows, averages, reference prices."""
        minis: list[dict[str, Any]] = []
        windows: dict[str, list[dict[str, Any]]] = {w: [] for w in WINDOWS_MS}
        arrays = {w for w in WINDOWS_MS if f"!ticker_{w}@arr" in wanted}
        every_mini = "!miniTicker@arr" in wanted or "!miniTicker@arr@1000ms" in wanted
        for sym in self.symbols.values():
            name = sym.name
            day = sym.window(now_ms - 86_400_000)
            if day is not None:
                if f"{name}@miniTicker" in wanted or every_mini:
                    mini = _mini(sym, now_ms, day)
                    minis.append(mini)
                    if f"{name}@miniTicker" in wanted:
                        self.publish(f"{name}@miniTicker", mini)
                if f"{name}@ticker" in wanted:
                    self.publish(f"{name}@ticker", ticker_payload(sym, now_ms, day))
            for window, ms in WINDOWS_MS.items():
                single = f"{name}@ticker_{window}" in wanted
                if not single and window not in arrays:
                    continue
                w = sym.window(now_ms - ms)
                if w is None:
                    continue
                payload = window_payload(sym, window, now_ms, w)
                windows[window].append(payload)
                if single:
                    self.publish(f"{name}@ticker_{window}", payload)
            if f"{name}@avgPrice" in wanted:
                average = average_price(sym, now_ms)
                if average is not None:
                    self.publish(
                        f"{name}@avgPrice",
                        {"e": "avgPrice", "E": now_ms, "s": sym.upper, "i": "5m",
                         "w": f"{average:.8f}", "T": sym.last_trade_ms},
                    )  # fmt: skip
            if f"{name}@referencePrice" in wanted and sym.trades:
                self.publish(
                    f"{name}@referencePrice",
                    {"e": "referencePrice", "s": sym.upper, "r": f"{sym.price:.2f}",
                     "t": now_ms},
                )  # fmt: skip
        for stream in ("!miniTicker@arr", "!miniTicker@arr@1000ms"):
            if stream in wanted and minis:
                self.publish(stream, minis)
        for window in arrays:
            if windows[window]:
                self.publish(f"!ticker_{window}@arr", windows[window])
