"""REST market data (``GET /api/v3/...``), by the spot REST API documentation.

Endpoints, their request weight and their parameters:

===========================  ======================================================  =============
endpoint                     parameters                                              weight
===========================  ======================================================  =============
``/ping``                    (none)                                                  1
``/time``                    (none)                                                  1
``/exchangeInfo``            symbol | symbols, permissions, showPermissionSets,      20
                             symbolStatus
``/depth``                   symbol, limit (100; up to 5000)                         5/25/50/250
``/trades``                  symbol, limit (500; up to 1000)                         25
``/historicalTrades``        symbol, limit, fromId                                   25
``/historicalBlockTrades``   symbol, fromId (mandatory), limit (500; up to 1000)     25
``/aggTrades``               symbol, fromId | startTime, endTime, limit              4
``/klines``                  symbol, interval, startTime, endTime, timeZone, limit   2
``/uiKlines``                as ``/klines``                                          2
``/avgPrice``                symbol                                                  2
``/ticker/24hr``             symbol | symbols, type (FULL, MINI)                     2 ... 80
``/ticker/price``            symbol | symbols                                        2 / 4
``/ticker/bookTicker``       symbol | symbols                                        2 / 4
``/ticker``                  symbol | symbols, windowSize (1m..59m, 1h..23h, 1d..7d) 4 a symbol
``/ticker/tradingDay``       symbol | symbols, timeZone, type, symbolStatus          4 a symbol
``/referencePrice``          symbol (-2043 before the first trade)                   2
===========================  ======================================================  =============

Errors are the documented ``{"code", "msg"}`` bodies with status 400: -1100 illegal
characters, -1101 duplicate values, -1102 a mandatory parameter missing, -1104 parameters not
read (unknown ones), -1105 an empty parameter, -1120 invalid interval, -1121 invalid symbol,
-1127 a time range too long, -1128 a combination of optional parameters invalid, -1220 a
symbol status not matched, -2043 no reference price (before the first trade).

Every trade, block trade, aggregate trade and candle is the one the streams published
(``_market``).
``timeZone`` (``-12:00`` ... ``+14:00``): candles begin at that zone's midnights; the UTC and
UTC+8 candles are kept as published, any other zone's are summed from the finest kept UTC
candles that divide it (as far back as those reach).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from ._market import (
    INTERVALS_MS,
    OFFSET_ZONES,
    BlockTrade,
    Candle,
    Symbol,
    Trade,
    candle_bounds,
)
from ._streams import average_price

__all__ = ["Rest", "RestError", "micro_rest"]

_SYMBOL = re.compile(r"^[A-Z0-9\-_.]{1,20}$")
_SYMBOLS = re.compile(r'^\[("[A-Z0-9\-_.]{1,20}"(,"[A-Z0-9\-_.]{1,20}"){0,99})?\]$')
_INT = re.compile(r"^-?[0-9]{1,20}$")
_ZONE = re.compile(r"^([+-]?)([0-9]{1,2})(?::([0-5][0-9]))?$")
_WINDOW = re.compile(r"^([1-9][0-9]?)([mhd])$")
_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


class RestError(Exception):
    """A documented error: ``{"code", "msg"}`` with an HTTP status (400)."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def _illegal(name: str, legal: str) -> RestError:
    return RestError(
        -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'."
    )


class _Params:
    """The query's parameters; the endpoint reads them, the rest are reported unread."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.values: dict[str, str] = {}
        for name, value in pairs:
            if name in self.values:
                raise RestError(-1101, f"Duplicate values for parameter '{name}'.")
            self.values[name] = value
        self.read: set[str] = set()

    def get(self, name: str) -> str | None:
        self.read.add(name)
        value = self.values.get(name)
        if value == "":
            raise RestError(-1105, f"Parameter '{name}' was empty.")
        return value

    def need(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise RestError(
                -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
            )
        return value

    def int(self, name: str, default: int | None = None) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        if not _INT.match(value):
            raise _illegal(name, "^[0-9]{1,20}$")
        return int(value)

    def done(self) -> None:
        """Refuse the parameters the endpoint did not read (-1104)."""
        unread = set(self.values) - self.read
        if unread:
            raise RestError(
                -1104,
                f"Not all sent parameters were read; read '{len(self.values) - len(unread)}'"
                f" parameter(s) but was sent '{len(self.values)}'.",
            )


def _money(x: float) -> str:
    return f"{x:.2f}"


def _zone_offset(text: str) -> int:
    """``timeZone`` as ms east of UTC (hours, or hours:minutes; -12:00 ... +14:00)."""
    m = _ZONE.match(text)
    legal = "-12:00 to +14:00"
    if not m:
        raise _illegal("timeZone", legal)
    sign = -1 if m.group(1) == "-" else 1
    minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
    offset = sign * minutes
    if not -12 * 60 <= offset <= 14 * 60:
        raise _illegal("timeZone", legal)
    return offset * 60_000


class Rest:
    """The endpoints over the market's symbols; ``now_ms()`` is market time."""

    def __init__(self, symbols: dict[str, Symbol], now_ms: Callable[[], int]) -> None:
        self.by_upper = {s.upper: s for s in symbols.values()}
        self.now_ms = now_ms
        self.routes: dict[str, Callable[[_Params], tuple[int, Callable[[], Any]]]] = {
            "/api/v3/ping": self._ping,
            "/api/v3/time": self._time,
            "/api/v3/exchangeInfo": self._exchange_info,
            "/api/v3/depth": self._depth,
            "/api/v3/trades": self._trades,
            "/api/v3/historicalTrades": self._historical_trades,
            "/api/v3/historicalBlockTrades": self._historical_block_trades,
            "/api/v3/aggTrades": self._agg_trades,
            "/api/v3/klines": self._klines,
            "/api/v3/uiKlines": self._klines,
            "/api/v3/avgPrice": self._avg_price,
            "/api/v3/ticker/24hr": self._ticker_24hr,
            "/api/v3/ticker/price": self._ticker_price,
            "/api/v3/ticker/bookTicker": self._book_ticker,
            "/api/v3/ticker": self._ticker_window,
            "/api/v3/ticker/tradingDay": self._trading_day,
            "/api/v3/referencePrice": self._reference_price,
        }

    def prepare(self, path: str, pairs: list[tuple[str, str]]) -> tuple[int, Callable[[], Any]]:
        """(weight, answer) for a GET of ``path``: the weight is charged before the answer
        is computed. Raises RestError (bad parameters: weight 1) or KeyError (no such path)."""
        route = self.routes[path]
        params = _Params(pairs)
        weight, answer = route(params)
        params.done()
        return weight, answer

    # -- symbols -------------------------------------------------------------------------
    def _symbol(self, params: _Params) -> Symbol:
        name = params.need("symbol")
        if not _SYMBOL.match(name):
            raise _illegal("symbol", "^[A-Z0-9-_.]{1,20}$")
        sym = self.by_upper.get(name)
        if sym is None:
            raise RestError(-1121, "Invalid symbol.")
        return sym

    def _symbols(self, params: _Params, *, required: bool = False) -> list[Symbol] | None:
        """``symbol`` (one, as a list) or ``symbols`` (a JSON array); None: all symbols."""
        one, many = params.get("symbol"), params.get("symbols")
        if one is not None and many is not None:
            raise RestError(-1128, "Combination of optional parameters invalid.")
        if one is not None:
            return [self._symbol(params)]
        if many is None:
            if required:
                raise RestError(
                    -1102, "Param 'symbol' or 'symbols' must be sent, but both were empty/null!"
                )
            return None
        if not _SYMBOLS.match(many.replace(" ", "")):
            raise _illegal(
                "symbols", '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
            )
        found = []
        for name in json.loads(many):
            sym = self.by_upper.get(name)
            if sym is None:
                raise RestError(-1121, "Invalid symbol.")
            found.append(sym)
        return found

    # -- general -------------------------------------------------------------------------
    def _ping(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        return 1, dict

    def _time(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        return 1, lambda: {"serverTime": self.now_ms()}

    def _exchange_info(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        chosen = self._symbols(params)
        for name in ("permissions", "showPermissionSets", "symbolStatus"):
            params.get(name)
        status = params.values.get("symbolStatus")
        if status is not None and status not in ("TRADING", "HALT", "BREAK"):
            raise _illegal("symbolStatus", "TRADING, HALT, BREAK")
        symbols = chosen if chosen is not None else list(self.by_upper.values())
        if status is not None and status != "TRADING":
            symbols = []

        def answer() -> Any:
            return {
                "timezone": "UTC",
                "serverTime": self.now_ms(),
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                     "intervalNum": 1, "limit": 6000},
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                     "limit": 100},
                    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
                     "limit": 200000},
                    {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
                     "limit": 61000},
                ],
                "exchangeFilters": [],
                "symbols": [_symbol_info(s) for s in symbols],
            }  # fmt: skip

        return 20, answer

    # -- market data ---------------------------------------------------------------------
    def _limit(self, params: _Params, default: int, most: int) -> int:
        limit = params.int("limit", default)
        assert limit is not None
        if limit < 1:
            raise _illegal("limit", "^[0-9]{1,20}$")
        return min(limit, most)

    def _depth(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        sym = self._symbol(params)
        limit = self._limit(params, 100, 5000)
        weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

        def answer() -> Any:
            bids, asks = sym.book(limit)
            return {"lastUpdateId": sym.update_id, "bids": bids, "asks": asks}

        return weight, answer

    def _trades(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        sym = self._symbol(params)
        limit = self._limit(params, 500, 1000)
        return 25, lambda: [_trade(t) for t in sym.trades[-limit:]]

    def _historical_trades(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        sym = self._symbol(params)
        limit = self._limit(params, 500, 1000)
        first = params.int("fromId")

        def answer() -> Any:
            trades = sym.trades[-limit:] if first is None else sym.trades_from_id(first, limit)
            return [_trade(t) for t in trades]

        return 25, answer

    def _historical_block_trades(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        sym = self._symbol(params)
        first = params.int("fromId")
        if first is None:
            params.need("fromId")  # raises: fromId is mandatory here
        limit = self._limit(params, 500, 1000)
        return 25, lambda: [_block(b) for b in sym.block_trades_from_id(first or 0, limit)]

    def _agg_trades(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        sym = self._symbol(params)
        limit = self._limit(params, 500, 1000)
        first = params.int("fromId")
        start, end = params.int("startTime"), params.int("endTime")
        if first is not None and (start is not None or end is not None):
            raise RestError(-1128, "Combination of optional parameters invalid.")
        if start is not None and end is not None and not 0 <= end - start < 3_600_000:
            raise RestError(-1127, "More than 1 hours between startTime and endTime.")

        def answer() -> Any:
            if first is not None:
                trades = sym.trades_from_agg_id(first, limit)
            elif start is None and end is None:
                trades = sym.trades[-limit:]
            elif start is not None:
                trades = sym.trades_between(start, end)[:limit]
            else:
                trades = sym.trades_between(None, end)[-limit:]
            return [_agg(t) for t in trades]

        return 4, answer

    def _klines(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        sym = self._symbol(params)
        interval = params.need("interval")
        if interval not in INTERVALS_MS:
            raise RestError(-1120, "Invalid interval.")
        start, end = params.int("startTime"), params.int("endTime")
        zone = params.get("timeZone")
        offset = _zone_offset(zone) if zone is not None else 0
        limit = self._limit(params, 500, 1000)

        def answer() -> Any:
            candles = _candles(sym, interval, offset)
            if start is not None:
                candles = [c for c in candles if c.start >= start]
            if end is not None:
                candles = [c for c in candles if c.start <= end]
            chosen = candles[:limit] if start is not None else candles[-limit:]
            return [_kline(c) for c in chosen]

        return 2, answer

    def _avg_price(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        sym = self._symbol(params)

        def answer() -> Any:
            average = average_price(sym, self.now_ms())
            price = sym.price if average is None else average
            return {"mins": 5, "price": f"{price:.8f}", "closeTime": sym.last_trade_ms}

        return 2, answer

    def _ticker_24hr(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        chosen = self._symbols(params)
        kind = params.get("type") or "FULL"
        if kind not in ("FULL", "MINI"):
            raise _illegal("type", "FULL, MINI")
        n = len(chosen) if chosen is not None else len(self.by_upper)
        weight = 80 if chosen is None else 2 if n <= 20 else 40 if n <= 100 else 80
        single = params.values.get("symbol") is not None
        symbols = chosen if chosen is not None else list(self.by_upper.values())

        def answer() -> Any:
            now = self.now_ms()
            rows = [_window(s, now, 86_400_000, kind, day=True) for s in symbols]
            return rows[0] if single else rows

        return weight, answer

    def _ticker_price(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        chosen = self._symbols(params)
        single = params.values.get("symbol") is not None
        symbols = chosen if chosen is not None else list(self.by_upper.values())

        def answer() -> Any:
            rows = [{"symbol": s.upper, "price": _money(s.price)} for s in symbols]
            return rows[0] if single else rows

        return 2 if single else 4, answer

    def _book_ticker(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        chosen = self._symbols(params)
        single = params.values.get("symbol") is not None
        symbols = chosen if chosen is not None else list(self.by_upper.values())

        def row(s: Symbol) -> dict[str, Any]:
            bids, asks = s.book(1)
            return {"symbol": s.upper, "bidPrice": bids[0][0], "bidQty": bids[0][1],
                    "askPrice": asks[0][0], "askQty": asks[0][1]}  # fmt: skip

        def answer() -> Any:
            rows = [row(s) for s in symbols]
            return rows[0] if single else rows

        return 2 if single else 4, answer

    def _ticker_window(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        chosen = self._symbols(params, required=True)
        assert chosen is not None
        size = params.get("windowSize") or "1d"
        m = _WINDOW.match(size)
        bounds = {"m": (1, 59, 60_000), "h": (1, 23, 3_600_000), "d": (1, 7, 86_400_000)}
        if not m or not bounds[m.group(2)][0] <= int(m.group(1)) <= bounds[m.group(2)][1]:
            raise RestError(-1100, "Invalid windowSize.")
        ms = int(m.group(1)) * bounds[m.group(2)][2]
        kind = params.get("type") or "FULL"
        if kind not in ("FULL", "MINI"):
            raise _illegal("type", "FULL, MINI")
        single = params.values.get("symbol") is not None

        def answer() -> Any:
            now = self.now_ms()
            rows = [_window(s, now, ms, kind, day=False) for s in chosen]
            return rows[0] if single else rows

        return min(200, 4 * len(chosen)), answer

    def _trading_day(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        chosen = self._symbols(params, required=True)
        assert chosen is not None
        zone = params.get("timeZone")
        offset = _zone_offset(zone) if zone is not None else 0
        kind = params.get("type") or "FULL"
        if kind not in ("FULL", "MINI"):
            raise _illegal("type", "FULL, MINI")
        status = params.get("symbolStatus")
        if status is not None and status not in ("TRADING", "HALT", "BREAK"):
            raise _illegal("symbolStatus", "TRADING, HALT, BREAK")
        single = params.values.get("symbol") is not None
        if single and status not in (None, "TRADING"):  # every symbol here is trading
            raise RestError(-1220, "The symbol's status does not match the requested symbolStatus.")
        weight = min(200, 4 * len(chosen))  # by the symbols asked for
        if status not in (None, "TRADING"):
            chosen = []

        def answer() -> Any:
            now = self.now_ms()
            start, end = candle_bounds("1d", now, offset)  # the day in that zone
            rows = [_window(s, now, now - start, kind, day=False) for s in chosen]
            for row in rows:
                row["openTime"], row["closeTime"] = start, end - 1
            return rows[0] if single else rows

        return weight, answer

    def _reference_price(self, params: _Params) -> tuple[int, Callable[[], Any]]:
        sym = self._symbol(params)
        if not sym.trades:  # the reference price is the last trade's price: none yet
            raise RestError(-2043, "This symbol doesn't have a reference price.")
        return 2, lambda: {
            "symbol": sym.upper,
            "referencePrice": f"{sym.price:.2f}",
            "timestamp": self.now_ms(),
        }


# -- shapes ------------------------------------------------------------------------------
def _trade(t: Trade) -> dict[str, Any]:
    return {"id": t.id, "price": t.price, "qty": t.qty, "quoteQty": t.quote_qty,
            "time": t.time, "isBuyerMaker": t.buyer_maker, "isBestMatch": True}  # fmt: skip


def _block(b: BlockTrade) -> dict[str, Any]:
    return {"id": b.id, "price": b.price, "qty": b.qty, "quoteQty": b.quote_qty,
            "time": b.time, "isBuyerMaker": b.buyer_maker}  # fmt: skip


def _agg(t: Trade) -> dict[str, Any]:
    return {"a": t.agg_id, "p": t.price, "q": t.qty, "f": t.id, "l": t.id, "T": t.time,
            "m": t.buyer_maker, "M": True}  # fmt: skip


def _kline(c: Candle) -> list[Any]:
    return [
        c.start, _money(c.open), _money(c.high), _money(c.low), _money(c.close),
        f"{c.volume:.4f}", c.end - 1, f"{c.quote:.4f}", c.trades, f"{c.taker_volume:.4f}",
        f"{c.taker_quote:.4f}", "0",
    ]  # fmt: skip


def _window(sym: Symbol, now: int, ms: int, kind: str, *, day: bool) -> dict[str, Any]:
    w = sym.window(now - ms) or {
        "open": sym.price, "high": sym.price, "low": sym.price, "close": sym.price,
        "volume": 0.0, "quote": 0.0, "first": -1, "last": -1, "count": 0,
        "open_ms": now - ms, "before": sym.price,
    }  # fmt: skip
    change = w["close"] - w["open"]
    row: dict[str, Any] = {"symbol": sym.upper}
    if kind == "FULL":
        row["priceChange"] = _money(change)
        row["priceChangePercent"] = f"{100 * change / w['open']:.3f}"
        row["weightedAvgPrice"] = _money(w["quote"] / w["volume"] if w["volume"] else w["close"])
        if day:
            bids, asks = sym.book(1)
            row.update(
                prevClosePrice=_money(w["before"]), lastPrice=_money(w["close"]),
                lastQty=f"{sym.last_qty:.4f}", bidPrice=bids[0][0], bidQty=bids[0][1],
                askPrice=asks[0][0], askQty=asks[0][1],
            )  # fmt: skip
    row.update(
        openPrice=_money(w["open"]), highPrice=_money(w["high"]), lowPrice=_money(w["low"]),
        lastPrice=_money(w["close"]), volume=f"{w['volume']:.4f}",
        quoteVolume=f"{w['quote']:.4f}", openTime=w["open_ms"], closeTime=now,
        firstId=w["first"], lastId=w["last"], count=w["count"],
    )  # fmt: skip
    return row


def _symbol_info(sym: Symbol) -> dict[str, Any]:
    quote = next((q for q in _QUOTES if sym.upper.endswith(q) and sym.upper != q), "USDT")
    base = sym.upper[: -len(quote)] if sym.upper.endswith(quote) else sym.upper
    return {
        "symbol": sym.upper, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
        "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True,
        "cancelReplaceAllowed": True, "amendAllowed": True, "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.01000000",
             "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
            {"filterType": "LOT_SIZE", "minQty": "0.00010000", "maxQty": "9000.00000000",
             "stepSize": "0.00010000"},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER",
                                            "EXPIRE_BOTH"],
    }  # fmt: skip


def _candles(sym: Symbol, interval: str, offset: int) -> list[Candle]:
    """The candles of ``interval`` in the zone ``offset`` ms east of UTC, oldest first."""
    if offset in OFFSET_ZONES or _same_bounds(interval, offset):
        key = (interval, offset) if (interval, offset) in sym.series else (interval, 0)
        return sym.candles(key)
    # another zone: sum the finest kept UTC candles whose length divides the offset
    base = next(
        b for b in ("1d", "12h", "8h", "6h", "4h", "2h", "1h", "30m", "15m", "5m", "3m", "1m")
        if offset % INTERVALS_MS[b] == 0 and _divides(b, interval)
    )  # fmt: skip
    source = sym.series[(base, 0)]
    groups: dict[int, list[Candle]] = {}
    for c in sym.candles((base, 0)):
        start, _ = candle_bounds(interval, c.start, offset)
        groups.setdefault(start, []).append(c)
    out = []
    for start, parts in sorted(groups.items()):
        if source.trimmed and parts[0].start != start:
            continue  # the kept candles begin inside this one: not a whole candle
        traded = [c for c in parts if c.trades] or parts
        out.append(
            Candle(
                start, candle_bounds(interval, start, offset)[1], traded[0].open,
                max(c.high for c in traded), min(c.low for c in traded), traded[-1].close,
                sum(c.volume for c in parts), sum(c.quote for c in parts),
                sum(c.trades for c in parts), traded[0].first_id, traded[-1].last_id,
                sum(c.taker_volume for c in parts), sum(c.taker_quote for c in parts),
            )
        )  # fmt: skip
    return out


def _same_bounds(interval: str, offset: int) -> bool:
    ms = INTERVALS_MS[interval]
    return interval not in ("1w", "1M") and offset % ms == 0


def _divides(base: str, interval: str) -> bool:
    if interval in ("1w", "1M", "3d"):
        return 86_400_000 % INTERVALS_MS[base] == 0
    return INTERVALS_MS[interval] % INTERVALS_MS[base] == 0


#: REST's time fields, multiplied for ``X-MBX-TIME-UNIT: MICROSECOND``
_TIME_KEYS = ("serverTime", "time", "T", "closeTime", "openTime", "timestamp")


def micro_rest(data: Any) -> Any:
    """An answer with every time field in microseconds (``X-MBX-TIME-UNIT: MICROSECOND``);
    a kline row's close time becomes the candle's last microsecond."""
    if isinstance(data, dict):
        return {
            k: (v * 1000 if k in _TIME_KEYS and isinstance(v, int) else micro_rest(v))
            if k != "symbols"
            else v
            for k, v in data.items()
        }
    if isinstance(data, list):
        if len(data) == 12 and isinstance(data[0], int) and isinstance(data[6], int):
            return [data[0] * 1000, *data[1:6], data[6] * 1000 + 999, *data[7:]]
        return [micro_rest(item) for item in data]
    return data
