"""One connection of a ``BinanceStream``: its socket and what the stream keeps about it.

A stream normally has one leg, the primary; during a rotation a second leg connects,
subscribes and holds its events until it takes over (see ``_rotation.py``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import anyio
import attrs

from ..websocket._socket import ResilientWebSocket
from ._pacing import RequestPacer
from ._requests import Pending

__all__ = ["Leg"]


@attrs.define(eq=False)
class Leg:
    ws: ResilientWebSocket
    pacer: RequestPacer
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    #: streams the exchange confirmed on this connection
    confirmed: set[str] = attrs.field(factory=set)
    #: LIST_SUBSCRIPTIONS matched after the latest (re)connect (R1.4)
    verified: bool = False
    #: bumped at each (re)connect: a resubscription of an older connection gives up
    generation: int = 0
    pending: dict[int, Pending] = attrs.field(factory=dict)
    rotating_in: bool = False
    retiring: bool = False
    # the new leg's events while it proves the overlap: (stream, event, identity, raw size)
    held: deque[tuple[str, dict[str, Any], Any, int]] = attrs.field(factory=deque)
    first_held: dict[str, Any] = attrs.field(factory=dict)
    lost: anyio.Event = attrs.field(factory=anyio.Event)
    counters_at_retirement: dict[str, Any] | None = None
