"""A ``BinanceStream`` fed messages as its socket reads would hand them over, without a socket.

``fed(raws, streams, ...)`` builds the stream (keyword options as for ``BinanceStream``), sets a
stand-in primary connection, hands ``raws`` to the per-read path (``_on_batch``) 37 at a time,
and returns the stream with the events its consumer buffer holds. The decoders' differential
tests compare what two configurations make of one feed this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import anyio
from regulator.adapters.binance import BinanceStream
from regulator.adapters.binance._leg import Leg

__all__ = ["fed"]


def fed(
    raws: Sequence[str | bytes], streams: Sequence[str], *, loads: Any = None, **options: Any
) -> tuple[BinanceStream, list[dict[str, Any]]]:
    async def run() -> tuple[BinanceStream, list[dict[str, Any]]]:
        stream = BinanceStream(list(streams), buffer_size=len(raws) + 1, **options)
        if loads is not None:
            stream._loads = loads  # the decoder under test
        leg = Leg(ws=SimpleNamespace(name="fed#1"), pacer=None)  # type: ignore[arg-type]
        stream._primary = leg
        for start in range(0, len(raws), 37):
            await stream._on_batch(leg, list(raws[start : start + 37]))
        events = []
        while len(stream._events):
            events.append(stream._events.get_nowait())
        return stream, events

    return anyio.run(run)
