"""The generated market and its history: what every stream publishes and REST serves.

Per symbol a seeded random walk whose volatility clusters (GARCH(1,1) on per-trade log
returns); one trade per symbol per tick. Each trade is kept (at least ``history_trades`` of
them) and folded into the open 1 s candle; each 1 s candle, once closed, into the open candle
of every coarser interval, in UTC and in the ``+08:00`` zone the exchange also publishes (an
open candle is read with the open 1 s candle's trades added); every candle closed is kept (at
least ``history_candles`` per interval). The book lies on a fixed tick grid next to the
price. The streams publish from here and REST reads from here, so a trade id, an aggregate
trade or a candle a stream sent is exactly what ``/api/v3/trades``, ``/aggTrades`` and
``/klines`` return.

Prices are formatted once (``.2f``, quantities ``.4f``): a stream's strings and REST's are the
same strings.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left, bisect_right
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import attrs

from ._book import BOOK_LEVELS as BOOK_LEVELS
from ._book import Book

__all__ = [
    "INTERVALS_MS",
    "MAX_FILL",
    "OFFSET_ZONES",
    "BlockTrade",
    "Candle",
    "MarketConfig",
    "Symbol",
    "Trade",
    "candle_bounds",
]

#: Every kline interval the exchange has (``1M``: calendar months).
INTERVALS_MS = {
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
    "1M": 0,
}
#: The zone offsets kept as candles of their own (the ``@+08:00`` kline streams), in ms.
OFFSET_ZONES = (0, 8 * 3_600_000)
#: Empty candles published per stream per market step when market time jumps past several.
MAX_FILL = 50
_WEEK_MINUTES = 7 * 24 * 60
_WEEK_ORIGIN_MS = 345_600_000  # 1970-01-05, a Monday: weekly candles open on Mondays


@attrs.frozen(kw_only=True)
class MarketConfig:
    """The generated market: per symbol a start price; one trade per symbol per tick.

    ``start_ms`` None: market time is the wall clock (``speed`` 1) or starts at the wall clock
    and runs ``speed`` times faster; an int pins the first trade's time (reproducible dates).
    """

    symbols: dict[str, float] = attrs.field(factory=lambda: {"ethusdt": 3000.0})
    trades_per_second: float = 20.0
    speed: float = 1.0
    seed: int = 7
    start_ms: int | None = None
    #: per-trade volatility and the GARCH(1,1) persistence that clusters it
    volatility: float = 4e-4
    garch_alpha: float = 0.08
    garch_beta: float = 0.90
    #: the history REST serves: at least this many trades, and candles per interval
    history_trades: int = attrs.field(default=100_000, validator=attrs.validators.ge(1))
    history_candles: int = attrs.field(default=1_000, validator=attrs.validators.ge(1))
    #: block trades (``<symbol>@blockTrade``): on average one per this many trades of a symbol
    #: (at 20 trades/s, one every 100 s); drawn from a generator of their own, so the trades
    #: of a seed are the same whatever this is
    block_trade_every: int = attrs.field(default=2_000, validator=attrs.validators.ge(1))


class Trade(NamedTuple):
    """One trade as published (``t``/``a`` ids, strings as sent, time in ms)."""

    id: int
    agg_id: int
    price: str
    qty: str
    quote_qty: str
    time: int
    buyer_maker: bool


class BlockTrade(NamedTuple):
    """One block trade (an off-book trade reported afterwards): ids of its own, +1 each."""

    id: int
    price: str
    qty: str
    quote_qty: str
    time: int
    buyer_maker: bool


class Candle(NamedTuple):
    """A candle as published: start, end (exclusive), prices, volumes, trade count, ids."""

    start: int
    end: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote: float
    trades: int
    first_id: int
    last_id: int
    taker_volume: float
    taker_quote: float


def candle_bounds(interval: str, t: int, offset_ms: int = 0) -> tuple[int, int]:
    """[start, next start) in UTC ms of the candle of ``interval`` holding time ``t``, with
    candles aligned to the zone ``offset_ms`` east of UTC (days, weeks, months begin there)."""
    if interval == "1M":  # calendar months in that zone
        zone = timezone(timedelta(milliseconds=offset_ms))
        day = datetime.fromtimestamp(t / 1000, tz=zone)
        month = datetime(day.year, day.month, 1, tzinfo=zone)
        following = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=zone)
        return int(month.timestamp() * 1000), int(following.timestamp() * 1000)
    ms = INTERVALS_MS[interval]
    origin = (_WEEK_ORIGIN_MS if interval == "1w" else 0) - offset_ms
    first = t - (t - origin) % ms
    return first, first + ms


class _Open:
    """The open candle of one interval and zone, updated in place per trade."""

    __slots__ = (
        "close",
        "end",
        "first_id",
        "high",
        "last_id",
        "low",
        "open",
        "quote",
        "start",
        "taker_quote",
        "taker_volume",
        "trades",
        "volume",
    )

    def __init__(self, start: int, end: int, price: float, first_id: int) -> None:
        self.start, self.end = start, end
        self.open = self.high = self.low = self.close = price
        self.volume = self.quote = self.taker_volume = self.taker_quote = 0.0
        self.trades = 0
        self.first_id = self.last_id = first_id

    def merge(self, c: Candle | _Open) -> None:
        """Add the trades of a finer candle ``c`` (inside this one) to this candle."""
        if not c.trades:
            return
        if not self.trades:
            self.first_id, self.open, self.high, self.low = c.first_id, c.open, c.high, c.low
        self.high = max(self.high, c.high)
        self.low = min(self.low, c.low)
        self.close = c.close
        self.volume += c.volume
        self.quote += c.quote
        self.trades += c.trades
        self.last_id = c.last_id
        self.taker_volume += c.taker_volume
        self.taker_quote += c.taker_quote

    def copy(self) -> _Open:
        twin = _Open(self.start, self.end, self.open, self.first_id)
        for name in _Open.__slots__:
            setattr(twin, name, getattr(self, name))
        return twin

    def freeze(self) -> Candle:
        return Candle(
            self.start, self.end, self.open, self.high, self.low, self.close, self.volume,
            self.quote, self.trades, self.first_id, self.last_id, self.taker_volume,
            self.taker_quote,
        )  # fmt: skip


def _empty(start: int, end: int, close: float) -> Candle:
    return Candle(start, end, close, close, close, close, 0.0, 0.0, 0, -1, -1, 0.0, 0.0)


class _Series:
    """One interval in one zone: the open candle, the closed ones (bounded), and when the
    stream last pushed an update."""

    __slots__ = ("closed", "end", "interval", "keep", "offset", "open", "sent", "trimmed")

    def __init__(self, interval: str, offset: int, keep: int) -> None:
        self.interval, self.offset, self.keep = interval, offset, keep
        self.open: _Open | None = None
        self.closed: list[Candle] = []
        self.sent = 0
        self.trimmed = False  # candles dropped off the front: the oldest kept is not the first
        self.end = 0  # the open candle's end: a trade before it rolls nothing

    def roll(self, now_ms: int, price: float, trade_id: int) -> list[Candle]:
        """Close the open candle if ``now_ms`` is past its end (and the empty ones market time
        skipped, up to MAX_FILL); open the candle holding ``now_ms``. Returns those closed."""
        current = self.open
        if current is not None and now_ms < current.end:
            return []
        start, end = candle_bounds(self.interval, now_ms, self.offset)
        done: list[Candle] = []
        if current is not None:
            done.append(current.freeze())
            close, after = current.close, current.end
            while after < start and len(done) <= MAX_FILL:
                first, following = candle_bounds(self.interval, after, self.offset)
                done.append(_empty(first, following, close))
                after = following
            self.closed.extend(done)
            if len(self.closed) >= 2 * self.keep:  # amortized trim, at least `keep` kept
                del self.closed[: len(self.closed) - self.keep]
                self.trimmed = True
        self.open = _Open(start, end, price, trade_id)
        self.end = end
        self.sent = now_ms
        return done

    def candles(self, live: _Open | None = None) -> list[Candle]:
        """Every candle held, the open one last (as REST returns it), with the trades of the
        open 1 s candle ``live`` not yet folded in."""
        current = self.current(live)
        return list(self.closed) if current is None else [*self.closed, current]

    def current(self, live: _Open | None = None) -> Candle | None:
        """The open candle as of now: its folded trades plus those of ``live``."""
        if self.open is None:
            return None
        if live is None or live is self.open or not live.trades or live.start < self.open.start:
            return self.open.freeze()
        merged = self.open.copy()
        merged.merge(live)
        return merged.freeze()


class Symbol(Book):
    """One symbol's generated market and its history."""

    def __init__(self, name: str, price: float, cfg: MarketConfig, rng: random.Random) -> None:
        self.name = name
        self.upper = name.upper()
        self.price = price
        self.cfg = cfg
        self.rng = rng
        self.var = cfg.volatility**2
        self.last_return = 0.0
        self.trade_id = 1_000_000
        self.agg_id = 500_000
        self.update_id = 9_000_000
        self.tick = max(0.01, round(price * 1e-5, 2))  # the book's price grid
        self.last_qty = 0.0
        self.last_trade_ms = 0
        #: every trade published, oldest first (trimmed in halves: at least history_trades)
        self.trades: list[Trade] = []
        #: (interval, zone offset ms) -> the candles of that interval in that zone
        self.series = {
            (interval, offset): _Series(interval, offset, cfg.history_candles)
            for offset in OFFSET_ZONES
            for interval in INTERVALS_MS
            if offset == 0 or _zone_matters(interval, offset)
        }
        # the rolling windows (up to 7 days) are summed from the 1-minute candles
        self.series[("1m", 0)].keep = max(cfg.history_candles, _WEEK_MINUTES + 1)
        # a trade is folded into the 1 s candle only; each 1 s candle, once closed, into the
        # coarser ones (a 20th of the work per trade at 20 trades/s; each zone's candles
        # begin on a whole second)
        self.base = self.series[("1s", 0)]
        self.coarse = [series for key, series in self.series.items() if key != ("1s", 0)]
        #: diff depth: the last update id published, per update speed (ms)
        self.depth_sent: dict[int, int] = {}
        #: block trades: their own generator (the trades' draws stay as they were), the
        #: history REST serves (trimmed like the trades), and the one the last step made
        self.block_rng = random.Random(f"{cfg.seed}:{name}:block")
        self.block_id = 580
        self.block_trades: list[BlockTrade] = []
        self.new_block: BlockTrade | None = None
        self.block_due = self.trade_id + self._block_gap()  # the trade id that makes the next

    def step(self, now_ms: int) -> Trade:
        """The next trade, at market time ``now_ms``: kept, and folded into every candle."""
        cfg = self.cfg
        omega = cfg.volatility**2 * (1 - cfg.garch_alpha - cfg.garch_beta)
        self.var = omega + cfg.garch_alpha * self.last_return**2 + cfg.garch_beta * self.var
        r = math.sqrt(self.var) * self.rng.gauss(0.0, 1.0)
        self.last_return = r
        self.price = price = max(0.01, self.price * math.exp(r))
        qty = round(self.rng.lognormvariate(-1.5, 1.0), 4) + 0.0001
        maker = self.rng.random() < 0.5
        self.trade_id += 1
        self.agg_id += 1
        self.update_id += 1
        self.last_qty = qty
        self.last_trade_ms = now_ms
        trade = Trade(
            self.trade_id, self.agg_id, f"{price:.2f}", f"{qty:.4f}", f"{price * qty:.6f}",
            now_ms, maker,
        )  # fmt: skip
        self.trades.append(trade)
        if len(self.trades) >= 2 * self.cfg.history_trades:
            del self.trades[: len(self.trades) - self.cfg.history_trades]
        # one comparison per trade; the gaps between block trades are drawn once each
        self.new_block = self._block(now_ms) if self.trade_id >= self.block_due else None
        return trade

    def _block(self, now_ms: int) -> BlockTrade:
        """A block trade: near the price, a large notional (median 250,000 in the quote
        asset), reported up to 300 ms after it was made (``T`` before ``E``, never before the
        previous block trade's ``T``)."""
        rng = self.block_rng
        price = self.price * (1 + rng.gauss(0.0, 5e-4))
        qty = round(rng.lognormvariate(math.log(250_000.0), 0.8) / price, 4) + 0.0001
        previous = self.block_trades[-1].time if self.block_trades else 0
        made = max(previous, now_ms - rng.randrange(301))
        self.block_id += 1
        p, q = f"{price:.2f}", f"{qty:.4f}"  # quoteQty is the product of what is sent
        block = BlockTrade(
            self.block_id, p, q, f"{float(p) * float(q):.6f}", made, rng.random() < 0.5
        )
        self.block_due = self.trade_id + self._block_gap()
        self.block_trades.append(block)
        if len(self.block_trades) >= 2 * self.cfg.history_trades:
            del self.block_trades[: len(self.block_trades) - self.cfg.history_trades]
        return block

    def _block_gap(self) -> int:
        """Trades until the next block trade: geometric, mean ``block_trade_every`` (each
        trade a block trade's with probability 1 / ``block_trade_every``)."""
        every = self.cfg.block_trade_every
        if every == 1:
            return 1
        u = 1.0 - self.block_rng.random()  # in (0, 1]
        return 1 + int(math.log(u) / math.log1p(-1.0 / every))

    def block_trades_from_id(self, first: int, limit: int) -> list[BlockTrade]:
        if not self.block_trades:
            return []
        i = max(0, first - self.block_trades[0].id)
        return self.block_trades[i : i + limit]

    def advance(self, trade: Trade) -> list[tuple[_Series, list[Candle]]]:
        """Fold ``trade`` into the candles; the series that closed candles, with those."""
        closed: list[tuple[_Series, list[Candle]]] = []
        now, price = trade.time, self.price
        done = self.base.roll(now, price, trade.id)
        if done:
            closed.append((self.base, done))
        for series in self.coarse:
            if done and series.open is not None:
                for finer in done:  # closed before this trade: inside the coarse open one
                    series.open.merge(finer)
            if now >= series.end:
                more = series.roll(now, price, trade.id)
                if more:
                    closed.append((series, more))
        live = self.base.open
        assert live is not None
        qty = self.last_qty
        if live.trades == 0:
            live.first_id = trade.id
            live.open = live.high = live.low = price
        live.high = max(live.high, price)
        live.low = min(live.low, price)
        live.close = price
        live.volume += qty
        live.quote += qty * price
        live.trades += 1
        live.last_id = trade.id
        if not trade.buyer_maker:  # the buyer took: taker buy volume
            live.taker_volume += qty
            live.taker_quote += qty * price
        return closed

    def current(self, series: _Series) -> Candle | None:
        """The open candle of ``series`` as of now (the open 1 s candle's trades included)."""
        return series.current(self.base.open)

    def candles(self, key: tuple[str, int]) -> list[Candle]:
        """Every candle kept of ``key`` (interval, zone offset), the open one last."""
        return self.series[key].candles(self.base.open)

    # -- reading the history (REST and the rolling-window tickers) ----------------------------
    def trades_since(self, start_ms: int) -> list[Trade]:
        """The trades at or after ``start_ms``, oldest first."""
        i = bisect_left(self.trades, start_ms, key=lambda t: t.time)
        return self.trades[i:]

    def trades_from_id(self, first: int, limit: int) -> list[Trade]:
        if not self.trades:
            return []
        i = max(0, first - self.trades[0].id)
        return self.trades[i : i + limit]

    def trades_from_agg_id(self, first: int, limit: int) -> list[Trade]:
        if not self.trades:
            return []
        i = max(0, first - self.trades[0].agg_id)
        return self.trades[i : i + limit]

    def trades_between(self, start: int | None, end: int | None) -> list[Trade]:
        lo = 0 if start is None else bisect_left(self.trades, start, key=lambda t: t.time)
        hi = (
            len(self.trades)
            if end is None
            else bisect_right(self.trades, end, key=lambda t: t.time)
        )
        return self.trades[lo:hi]

    def window(self, start_ms: int) -> dict[str, Any] | None:
        """Statistics of the minutes from the one holding ``start_ms`` on (the rolling windows
        open on a minute, as the exchange's do); None before the first trade. The 1-minute
        candles are the source: a window's figures are the candles' figures."""
        minute = start_ms - start_ms % 60_000
        candles = self.candles(("1m", 0))
        i = bisect_left(candles, minute, key=lambda c: c.start)
        used = [c for c in candles[i:] if c.trades]
        if not used:
            return None
        before = candles[i - 1].close if i > 0 else used[0].open
        return {
            "open": used[0].open, "high": max(c.high for c in used),
            "low": min(c.low for c in used), "close": used[-1].close,
            "volume": sum(c.volume for c in used), "quote": sum(c.quote for c in used),
            "first": used[0].first_id, "last": used[-1].last_id,
            "count": sum(c.trades for c in used), "open_ms": minute, "before": before,
        }  # fmt: skip


def _zone_matters(interval: str, offset: int) -> bool:
    """Whether candles of ``interval`` begin elsewhere in a zone ``offset`` ms from UTC."""
    ms = INTERVALS_MS[interval]
    return interval in ("1M", "1w") or offset % ms != 0
