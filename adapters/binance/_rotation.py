"""Rotation, make-before-break: a new connection takes over before the old one goes.

How it works
------------
At ``rotation_age`` (before the exchange's 24 h cut) or at a ``serverShutdown`` event, a second
leg connects and subscribes while the primary keeps delivering; the new leg's events are held.
When every stream the new leg carries has delivered on the primary an event the new leg also
holds (or after ``rotation_overlap_timeout``, or when the old connection is lost, or at
``HOLD_LIMIT`` held events), the primary stops delivering, the held events are merged in
through the :class:`StreamTracker` (which drops what was already delivered), the new leg
becomes primary and the old one is closed with 1000. Nothing of this counts as a failure.

``Rotation`` is a mixin of ``BinanceStream``: it uses the stream's legs, tracker and delivery,
declared below, and keeps nothing of its own but the trigger.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio

from ...fsm import BinanceConfig, format_kv
from ._leg import Leg
from ._tracker import StreamTracker

__all__ = ["HOLD_LIMIT", "Rotation"]

#: Events a rotation's new connection may hold before the switch is forced.
HOLD_LIMIT = 100_000


class Rotation:
    # provided by BinanceStream
    rules: BinanceConfig
    name: str
    rotations: dict[str, int]
    _log: logging.Logger
    _primary: Leg | None
    _tracker: StreamTracker
    _wanted: dict[str, None]
    _rotate_now: anyio.Event | None
    _rotate_reason: str

    def _start_leg(self, *, rotating_in: bool = False) -> Leg:
        raise NotImplementedError

    async def _deliver(
        self,
        stream: str,
        message: dict[str, Any],
        data: Any,
        key: Any,
        size: int,
        *,
        merging: bool = False,
    ) -> None:
        raise NotImplementedError

    def _request_rotation(self, reason: str) -> None:
        """Rotate now (a ``serverShutdown``): the watcher wakes and starts it."""
        if self._rotate_now is not None:
            self._rotate_reason = reason
            self._rotate_now.set()

    async def _watch_rotation(self) -> None:
        assert self._rotate_now is not None
        while True:
            leg = self._primary
            assert leg is not None
            since = leg.ws.connected_since
            age = None if since is None else leg.ws.clock.now() - since
            wait = 1.0 if age is None else self.rules.rotation_age - age
            if wait > 0 and not self._rotate_now.is_set():
                with anyio.move_on_after(min(wait, 5.0)):
                    await self._rotate_now.wait()
                continue
            reason = self._rotate_reason or "age"
            self._rotate_now = anyio.Event()
            self._rotate_reason = ""
            if leg.ws.state == "live" and (leg.verified or reason != "age"):
                await self._rotate(leg, reason)
            elif reason == "age":
                # due, but not yet verified (healthy): replacing it now would only retire a
                # connection with its alarm unresolved; look again shortly
                await anyio.sleep(0.1)

    async def _rotate(self, old: Leg, reason: str) -> None:
        self.rotations[reason] = self.rotations.get(reason, 0) + 1
        self._log.info(format_kv(event="rotation", name=self.name, phase="start", reason=reason))
        started = anyio.current_time()
        new = self._start_leg(rotating_in=True)
        old.retiring = True
        old.lost = anyio.Event()  # it is live now; an earlier connection's loss is history
        old.counters_at_retirement = old.ws.counter_totals()
        deadline = math.inf
        switched_because = "overlap"
        while True:
            if old.lost.is_set() or old.ws.state != "live":
                switched_because = "old connection lost"
                break
            if new.verified:
                if deadline == math.inf:
                    deadline = anyio.current_time() + self.rules.rotation_overlap_timeout
                if self._overlap_proven(new):
                    break
                if anyio.current_time() >= deadline:
                    switched_because = "overlap timeout"
                    break
            if len(new.held) >= HOLD_LIMIT:
                switched_because = "hold limit"
                break
            await anyio.sleep(0.02)
        await self._switch(old, new)
        self._log.info(
            format_kv(
                event="rotation",
                name=self.name,
                phase="switched",
                reason=reason,
                because=switched_because,
                took=round(anyio.current_time() - started, 3),
            )
        )

    def _overlap_proven(self, new: Leg) -> bool:
        """True once, for every stream that has delivered, the old connection has delivered
        the first event the new one holds: switching then loses nothing. No vacuous truth:
        a stream not yet seen on the new connection keeps the rotation waiting (up to
        ``rotation_overlap_timeout``)."""
        tracker = self._tracker
        for stream in self._wanted:
            last = tracker.last_identity(stream)
            if stream not in new.first_held:
                if last is not None:
                    return False
                continue
            first = new.first_held[stream]
            if first is not None and (last is None or last < first):
                return False
        return True

    async def _switch(self, old: Leg, new: Leg) -> None:
        self._primary = new  # the old leg stops delivering at once
        while new.held:  # the new leg's pump may append while we await the consumer
            stream, message, key, size = new.held.popleft()
            await self._deliver(stream, message, message.get("data"), key, size, merging=True)
        new.rotating_in = False  # no await since the queue ran empty: nothing slips between
        new.first_held.clear()
        old.scope.cancel()
