"""``Subscriptions``: the streams a ``BinanceStream`` wants, and the exchange's view of them.

How it works
------------
The wanted streams are a set kept by the stream. After every (re)connect of a leg its
``on_connect`` starts :meth:`Subscriptions._resubscribe`: SUBSCRIBE requests of at most
``streams_per_request`` streams, paced by the leg's :class:`RequestPacer` so requests plus
pings and pongs stay under ``messages_per_second``; each reply is matched to its request by
``id`` and timed out (``_requests.py``); then LIST_SUBSCRIPTIONS verifies the exchange's view
(R1.4), and what it lost is subscribed once more.

**Health.** A leg is healthy once LIST_SUBSCRIPTIONS verified its subscriptions (or it has been
live ``stable_after``): only then does its reconnect counter reset and an alarm resolve. A link
the exchange accepts and drops before that keeps backing off (R1.3, R1.4).

``subscribe`` and ``unsubscribe`` change the set while running: on every live leg (a
rotation's new one too), confirmed by the exchange.

``Subscriptions`` is a mixin of ``BinanceStream``: it uses the stream's legs, requests,
tracker, backfill and books, declared below, and keeps nothing of its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ...fsm import BinanceConfig, format_kv
from ..websocket._errors import NotLiveError
from ._backfill import Backfill
from ._book_keeper import BookKeeper
from ._leg import Leg
from ._requests import BinanceRequestError, Requests
from ._tracker import StreamTracker

__all__ = ["Subscriptions", "validate_streams"]

_STREAM = re.compile(r"^[^\s/@]+@[^\s/]+$")


def validate_streams(streams: Iterable[str]) -> list[str]:
    """Stream names, de-duplicated in order; a bad one raises ``ValueError`` naming it."""
    seen: dict[str, None] = {}
    problems: list[str] = []
    for index, name in enumerate(streams):
        if not isinstance(name, str) or _STREAM.match(name) is None:
            problems.append(
                f"streams[{index}]: must look like '<symbol>@<type>' with no spaces or '/'"
                f" (got {name!r})"
            )
            continue
        symbol = name.split("@", 1)[0]
        if not symbol.startswith("!") and symbol != symbol.lower():
            fixed = symbol.lower() + name[len(symbol) :]
            problems.append(
                f"streams[{index}]: the symbol must be lower case (got {name!r};"
                f" did you mean {fixed!r}?)"
            )
            continue
        seen[name] = None
    if problems:
        raise ValueError("; ".join(problems))
    return list(seen)


class Subscriptions:
    # provided by BinanceStream
    rules: BinanceConfig
    _log: logging.Logger
    _primary: Leg | None
    _legs: list[Leg]
    _wanted: dict[str, None]
    _requests: Requests
    _tracker: StreamTracker
    _backfill: Backfill | None
    _books: BookKeeper

    if TYPE_CHECKING:  # declared for the type checker only: BinanceStream's own

        def _check_count(self, count: int) -> None: ...

    def stream_counts(self) -> tuple[int, int]:
        """(streams wanted, streams the exchange confirmed on the primary connection)."""
        leg = self._primary
        confirmed = leg.confirmed if leg is not None else set()
        wanted = list(self._wanted)
        return len(wanted), sum(1 for s in wanted if s in confirmed)

    async def _subscribe_on(self, leg: Leg, method: str, streams: list[str]) -> None:
        size = self.rules.streams_per_request
        for start in range(0, len(streams), size):
            batch = streams[start : start + size]
            await self._requests.call(leg, method, batch)
            if method == "SUBSCRIBE":
                leg.confirmed.update(batch)
            else:
                leg.confirmed.difference_update(batch)

    async def _resubscribe(self, leg: Leg, generation: int) -> None:
        """After a (re)connect: subscribe every wanted stream, paced, then verify (R1.4)."""
        try:
            wanted = list(self._wanted)
            await self._subscribe_on(leg, "SUBSCRIBE", wanted)
            listed = await self._requests.call(leg, "LIST_SUBSCRIPTIONS")
            missing = [s for s in self._wanted if s not in set(listed or ())]
            if missing:  # the exchange lost some: once more, then report
                self._log.warning(
                    format_kv(event="resubscribe_missing", name=leg.ws.name, count=len(missing))
                )
                await self._subscribe_on(leg, "SUBSCRIBE", missing)
            if generation == leg.generation:
                leg.verified = True
                leg.ws.mark_healthy()  # verified: the reconnect counter resets, alarms resolve
            self._log.info(
                format_kv(
                    event="subscribed",
                    name=leg.ws.name,
                    streams=len(self._wanted),
                    confirmed=len(leg.confirmed),
                    paced=round(leg.pacer.waited, 3),
                )
            )
        except (NotLiveError, BinanceRequestError) as exc:
            if leg.ws.state == "live" and generation == leg.generation:
                self._log.error(
                    format_kv(event="resubscribe_failed", name=leg.ws.name, error=str(exc))
                )

    async def subscribe(self, streams: Sequence[str]) -> None:
        """Add streams. While live, returns once the exchange confirmed them (or raises
        :class:`BinanceRequestError`, and the streams are not added); otherwise they are
        subscribed at the next connect."""
        new = [s for s in validate_streams(streams) if s not in self._wanted]
        self._check_count(len(self._wanted) + len(new))
        if not new:
            return
        self._wanted.update(dict.fromkeys(new))
        leg = self._primary
        if leg is None or leg.ws.state != "live":
            return
        try:
            for each in self._live_legs():  # a rotation's new leg too
                await self._subscribe_on(each, "SUBSCRIBE", new)
        except BinanceRequestError:
            for name in new:
                if name not in leg.confirmed:
                    self._wanted.pop(name, None)
            raise

    async def unsubscribe(self, streams: Sequence[str]) -> None:
        """Remove streams (confirmed by the exchange while live)."""
        gone = [s for s in validate_streams(streams) if s in self._wanted]
        for name in gone:
            self._wanted.pop(name, None)
            self._tracker.forget(name)
            if self._backfill is not None:
                self._backfill.forget(name)
            self._books.forget(name)
        if gone:
            for each in self._live_legs():
                await self._subscribe_on(each, "UNSUBSCRIBE", gone)

    def _live_legs(self) -> list[Leg]:
        return [leg for leg in list(self._legs) if leg.ws.state == "live" and not leg.retiring]

    async def list_subscriptions(self) -> list[str]:
        """The exchange's own list for the primary connection (LIST_SUBSCRIPTIONS)."""
        if self._primary is None:
            raise NotLiveError("list_subscriptions: not started")
        result = await self._requests.call(self._primary, "LIST_SUBSCRIPTIONS")
        return list(result or [])
