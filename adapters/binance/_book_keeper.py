"""``BookKeeper``: a ``BinanceStream``'s local order books, fed by its depth events and kept in
sync by REST snapshots (asyncio and trio).

How it works
------------
:meth:`BinanceStream.order_book` names a symbol; its book (a pure :class:`OrderBook`) is fed
from one diff depth stream of that symbol (``<symbol>@depth@100ms``, else ``<symbol>@depth``
or ``<symbol>@depth@1000ms``), with exactly the events the consumer gets: after the stream's
de-duplication (a rotation's overlap is merged once) and before the consumer's buffer (what
``drop_oldest`` drops there is still in the book).

Whenever a book wants a snapshot (it buffered events while unsynced: at the start, after a gap
in ``U``/``u``, which is how a reconnect or a lost event shows, or after the stream's ids were
reset) one task of the stream's task group fetches ``GET /api/v3/depth?symbol=&limit=``
through the stream's :class:`RestClient` (paced by request weight; 429 and 418 honoured there)
and hands it to the book; a snapshot older than the buffered events, or a failed request, is
retried after a growing pause (0.1 s doubling to 5 s) while the book still wants one. One
fetch per book at a time; nothing of it runs on the per-event path, which costs a dict lookup
for a book's stream and nothing for the others.

A depth event the book refuses (:class:`OrderBookError`) is counted and logged (rate limited)
and still reaches the consumer; the book resyncs at the next event, whose ``U`` shows the loss.

``OrderBooks`` is the mixin of ``BinanceStream`` that gives it :meth:`~OrderBooks.order_book`
(which depth stream feeds a symbol's book, added before the start) and the REST client the
snapshots come through: the backfill's, else one of the books' own, made at the first need.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ...fsm import ConnectionConfig, format_kv
from ._order_book import OrderBook, OrderBookError
from ._rest import RestClient, RestError, depth_weight
from ._validate import LogLimiter, short

__all__ = ["DEPTH_STREAMS", "BookKeeper", "OrderBooks"]

#: The diff depth streams a book is kept from, the first wanted one of them.
DEPTH_STREAMS = ("@depth@100ms", "@depth", "@depth@1000ms")
_SYMBOL = re.compile(r"^[a-z0-9]{1,32}$")
#: Pauses between snapshot fetches that did not sync the book (doubling from the first).
FIRST_RETRY = 0.1
LAST_RETRY = 5.0


class BookKeeper:
    """The books of one stream. ``by_stream`` (depth stream name -> book) is what the
    stream's per-event path reads."""

    def __init__(
        self,
        rest: Callable[[], RestClient],
        start_soon: Callable[..., Any],
        *,
        logger: logging.Logger,
        name: str,
    ) -> None:
        self._rest = rest
        self._start_soon = start_soon
        self._log = logger
        self.name = name
        self.books: dict[str, OrderBook] = {}  # symbol -> book
        self.by_stream: dict[str, OrderBook] = {}
        self._limit: dict[str, int] = {}
        self._fetching: set[str] = set()
        self._log_limit = LogLimiter()
        # plain counters, over every book
        self.snapshots_fetched = 0
        self.snapshot_failures = 0  # requests that failed, and answers the book refused
        self.events_rejected = 0

    @staticmethod
    def check_symbol(symbol: Any) -> str:
        if not isinstance(symbol, str) or _SYMBOL.match(symbol) is None:
            fix = (
                f"; did you mean {symbol.lower()!r}?"
                if isinstance(symbol, str) and _SYMBOL.match(symbol.lower())
                else ""
            )
            raise ValueError(
                f"order_book: symbol must be 1 to 32 lower-case letters and digits, like"
                f" 'ethusdt' (got {short(repr(symbol))}){fix}"
            )
        return symbol

    def fed(self, symbol: str) -> OrderBook | None:
        """The book of ``symbol`` when a stream feeds it."""
        book = self.books.get(symbol)
        return book if book is not None and book in self.by_stream.values() else None

    def add(self, symbol: str, stream: str, limit: int, **limits: int) -> OrderBook:
        """The book of ``symbol`` kept from ``stream`` (made on the first call; one whose
        stream was unsubscribed is fed again from ``stream``)."""
        book = self.books.get(symbol)
        if book is None:
            book = OrderBook(symbol, **limits)
            self.books[symbol] = book
            self._limit[symbol] = limit
        self.by_stream[stream] = book
        return book

    def forget(self, stream: str) -> None:
        """``stream`` was unsubscribed: its book stops (unsynced, kept for the reader)."""
        book = self.by_stream.pop(stream, None)
        if book is not None:
            book.resync()

    # -- the stream's calls ---------------------------------------------------------------
    def on_event(self, stream: str, data: Any, size: int) -> None:
        """A depth event delivered on ``stream`` (which has a book)."""
        book = self.by_stream[stream]
        was_synced = book.synced
        try:
            book.on_event(data, size)
        except OrderBookError as exc:
            self.events_rejected += 1
            self._warn("book_event_rejected", book.symbol, str(exc))
            return
        if was_synced and not book.synced:
            self._log.warning(
                format_kv(event="book_resync", name=self.name, symbol=book.symbol, reason="gap")
            )
        if book.wants_snapshot and book.symbol not in self._fetching:
            self._fetching.add(book.symbol)
            self._start_soon(self._sync, book)

    def on_reset(self, stream: str) -> None:
        """The stream's ids were reset (a tracker ``reset`` gap): the book starts again."""
        book = self.by_stream.get(stream)
        if book is None:
            return
        if book.synced:
            self._log.warning(
                format_kv(event="book_resync", name=self.name, symbol=book.symbol, reason="reset")
            )
        book.resync()

    # -- the snapshot task ----------------------------------------------------------------
    async def _sync(self, book: OrderBook) -> None:
        symbol = book.symbol
        limit = self._limit[symbol]
        pause = FIRST_RETRY
        try:
            while book.wants_snapshot:
                try:
                    snapshot = await self._rest().get(
                        "/api/v3/depth",
                        {"symbol": symbol.upper(), "limit": limit},
                        weight=depth_weight(limit),
                    )
                    self.snapshots_fetched += 1
                    synced = book.on_snapshot(snapshot)
                except Exception as exc:  # RestError, OrderBookError, or anything: never fatal
                    self.snapshot_failures += 1
                    what = str(exc) if isinstance(exc, RestError | OrderBookError) else repr(exc)
                    self._warn("book_snapshot_failed", symbol, what)
                    synced = False
                if synced:
                    self._log.info(
                        format_kv(
                            event="book_synced",
                            name=self.name,
                            symbol=symbol,
                            last_update_id=book.last_update_id,
                            resyncs=book.resyncs,
                        )
                    )
                    return
                if book.wants_snapshot:  # older than the stream, or failed: again, later
                    await anyio.sleep(pause)
                    pause = min(pause * 2, LAST_RETRY)
        finally:
            self._fetching.discard(symbol)

    def _warn(self, event: str, symbol: str, error: str) -> None:
        held = self._log_limit.allow()
        if held is None:
            return
        extra = {"suppressed": held} if held else {}
        self._log.warning(
            format_kv(event=event, name=self.name, symbol=symbol, error=short(error), **extra)
        )

    # -- statistics -----------------------------------------------------------------------
    @property
    def resyncs(self) -> int:
        return sum(book.resyncs for book in self.books.values())

    def stats(self) -> dict[str, Any]:
        return {
            "resyncs": self.resyncs,
            "snapshots_fetched": self.snapshots_fetched,
            "snapshot_failures": self.snapshot_failures,
            "events_rejected": self.events_rejected,
            "books": {symbol: book.stats() for symbol, book in self.books.items()},
        }


class OrderBooks:
    # provided by BinanceStream
    name: str
    config: ConnectionConfig
    rest: RestClient | None
    _own_rest: bool
    _rest_options: tuple[str, ssl.SSLContext | None, str | None, RestClient | None]
    _books: BookKeeper
    _wanted: dict[str, None]
    _tg: TaskGroup | None
    _log: logging.Logger

    if TYPE_CHECKING:  # declared for the type checker only: BinanceStream's own

        def _check_count(self, count: int) -> None: ...

    def order_book(self, symbol: str, *, limit: int = 5000) -> OrderBook:
        """The local order book of ``symbol`` (``"ethusdt"``), kept from its diff depth
        stream (``<symbol>@depth@100ms``, else ``<symbol>@depth``) and REST snapshots of
        ``limit`` levels (``GET /api/v3/depth``; weight 250 at 5000) from ``rest_url``, by
        the exchange's procedure, resynced after any gap in its ids. Before the stream starts,
        ``<symbol>@depth@100ms`` is added to the streams when no depth stream of the symbol
        is; once started, one must already be subscribed. The same book on every call."""
        symbol = BookKeeper.check_symbol(symbol)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 5000:
            raise ValueError(f"limit: must be an integer from 1 to 5000 (got {limit!r})")
        book = self._books.fed(symbol)
        if book is not None:
            return book
        stream = next((symbol + s for s in DEPTH_STREAMS if symbol + s in self._wanted), None)
        if stream is None:
            stream = symbol + DEPTH_STREAMS[0]
            if self._tg is not None:
                raise ValueError(
                    f"order_book: no diff depth stream of {symbol!r} is subscribed; subscribe"
                    f" {stream!r} first, or ask for the book before the stream starts"
                )
            self._check_count(len(self._wanted) + 1)
            self._wanted[stream] = None
        return self._books.add(symbol, stream, limit, max_buffered_bytes=self.config.buffer_bytes)

    def _rest_for_books(self) -> RestClient:
        if self.rest is None:  # no backfill: the books' own client (closed on exit)
            url, ssl_context, api_key, given = self._rest_options
            self._own_rest = given is None
            self.rest = given or RestClient(
                url, ssl_context=ssl_context, api_key=api_key, logger=self._log,
                name=f"{self.name}-rest",
            )  # fmt: skip
        return self.rest
