"""A bounded message buffer between the socket reader and a consumer, on any anyio backend.

The reader must never stall on a slow consumer (a stalled reader answers no server ping and
the server drops the connection), so what happens when the buffer is full is a policy:

* ``drop_oldest``: the oldest message is dropped and counted (the default: market data goes
  stale; the newest is worth most);
* ``fail``: the connection fails as ``protocol`` ("consumer too slow") and reconnects;
* ``block``: the reader waits for room (back-pressure to the server through TCP; server pings
  wait too, so use it only with consumers that keep up).

The bound is a count (``size`` messages) and, with ``max_bytes``, a size too: the messages
held weigh at most ``max_bytes`` together (characters of text, bytes of binary: ``len``; or a
weight the caller gives, see :meth:`MessageBuffer.put`), whichever is reached first triggers
the policy. A single message heavier than ``max_bytes`` is still taken into an empty buffer
(it is bounded by ``max_message_bytes``), so nothing is refused for ever.

While ``paused`` (the adapter pauses from a new connection until its ``on_connect`` has run),
the consumer gets nothing; what arrives meanwhile is buffered under the same bound and policy.
With ``block``, an ``on_connect`` that awaits a reply therefore needs room in the buffer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, Literal, TypeVar

import anyio

__all__ = ["BufferFull", "MessageBuffer", "OverflowPolicy"]

OverflowPolicy = Literal["drop_oldest", "fail", "block"]
Message = TypeVar("Message")


class BufferFull(Exception):
    """The buffer is full and the policy is ``fail``."""


class MessageBuffer(Generic[Message]):
    """``weigh`` (default ``len``) gives a message's weight on the way in and out; with
    ``weigh=None`` the caller passes each weight to :meth:`put` and the buffer keeps it."""

    def __init__(
        self,
        size: int,
        policy: OverflowPolicy,
        max_bytes: int | None = None,
        weigh: Callable[[Message], int] | None = len,  # type: ignore[assignment]
    ) -> None:
        if size < 1:
            raise ValueError(f"buffer_size: must be >= 1 (got {size!r})")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"buffer_bytes: must be >= 1 (got {max_bytes!r})")
        if policy not in ("drop_oldest", "fail", "block"):
            raise ValueError(
                f"overflow_policy: must be 'drop_oldest', 'fail' or 'block' (got {policy!r})"
            )
        self.size = size
        self.policy: OverflowPolicy = policy
        self._items: deque[Message] = deque()
        # the size bound: a plain int compared per message (no bound: never reached)
        self.max_bytes = max_bytes if max_bytes is not None else 1 << 62
        self.bytes = 0  # weight of the messages held
        self._weigh = weigh
        self._weights: deque[int] | None = deque() if weigh is None else None
        self._readable = anyio.Event()
        self._writable = anyio.Event()
        # received == delivered + dropped + failed + len(self), whatever the policy
        self.dropped = 0
        self.delivered = 0
        self.failed = 0  # refused by ``fail``: the message that found the buffer full
        self.closed = False
        self.paused = False
        self._put_waiting = False
        #: told of every message dropped for the size bound but the last (see ``put``)
        self.on_drop: Callable[[Message], None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: Message) -> bool:
        """Append ``item`` if there is room (the reader's fast path, no await); else False."""
        items = self._items
        if len(items) >= self.size:
            return False
        assert self._weigh is not None, "offer needs a weigh function"
        weight = self._weigh(item)
        if self.bytes + weight > self.max_bytes and items:
            return False
        self.bytes += weight
        items.append(item)
        if len(items) == 1:  # a consumer only ever waits on an empty (or paused) buffer
            self._readable.set()
        return True

    def offer_all(self, items: list[Message]) -> bool:
        """Append all of ``items`` if there is room for all (one call for a read's messages);
        else append none and return False."""
        buffered = self._items
        if len(buffered) + len(items) > self.size:
            return False
        assert self._weigh is not None, "offer_all needs a weigh function"
        weight = sum(map(self._weigh, items))
        if self.bytes + weight > self.max_bytes and (buffered or len(items) > 1):
            return False
        self.bytes += weight
        was_empty = not buffered
        buffered.extend(items)
        if was_empty and items:  # as in ``offer``: a consumer waits only on an empty buffer
            self._readable.set()
        return True

    def offer_weighed(self, items: list[Message], weights: list[int]) -> bool:
        """``offer_all`` for a buffer without a weigh function (``weights[i]`` is the weight
        of ``items[i]``): all of them if there is room for all, else none (False)."""
        buffered = self._items
        if len(buffered) + len(items) > self.size:
            return False
        weight = sum(weights)
        if self.bytes + weight > self.max_bytes and (buffered or len(items) > 1):
            return False
        assert self._weights is not None, "offer_weighed is for a buffer without weigh"
        self.bytes += weight
        was_empty = not buffered
        buffered.extend(items)
        self._weights.extend(weights)
        if was_empty and items:  # as in ``offer``: a consumer waits only on an empty buffer
            self._readable.set()
        return True

    def _full(self, weight: int) -> bool:
        items = self._items
        return len(items) >= self.size or (self.bytes + weight > self.max_bytes and bool(items))

    def _pop(self) -> Message:
        item = self._items.popleft()
        weights = self._weights
        if weights is not None:
            self.bytes -= weights.popleft()
        else:
            assert self._weigh is not None
            self.bytes -= self._weigh(item)
        return item

    async def put(self, item: Message, weight: int | None = None) -> Message | None:
        """Buffer ``item``; return the message dropped to make room (``drop_oldest``), so a
        caller that knows what messages mean can report the loss (None: nothing dropped).
        ``weight``: the item's weight when the buffer has no ``weigh`` function."""
        if weight is None:
            assert self._weigh is not None, "put needs a weight"
            weight = self._weigh(item)
        dropped: Message | None = None
        items = self._items
        # the per-message path: two comparisons inline, the loop only when a bound is reached
        while len(items) >= self.size or (self.bytes + weight > self.max_bytes and items):
            if self.policy == "drop_oldest":
                # the count bound drops one; the size bound as many as it takes
                dropped = self._pop()
                self.dropped += 1
                if self._full(weight):
                    self._dropped_more(dropped)
                    continue
                break
            if self.policy == "fail":
                self.failed += 1
                raise BufferFull(
                    f"consumer too slow: {len(self._items)} messages ({self.bytes} bytes)"
                    f" buffered (buffer_size={self.size}, buffer_bytes={self.max_bytes})"
                )
            if self.closed:  # nobody will make room: the message is discarded, and counted
                self.dropped += 1
                return None
            self._writable = anyio.Event()
            self._put_waiting = True
            try:
                await self._writable.wait()
            except BaseException:  # cancelled while waiting (the connection ended): discarded
                self.dropped += 1
                raise
        items.append(item)
        self.bytes += weight
        if self._weights is not None:
            self._weights.append(weight)
        self._readable.set()
        return dropped

    def _dropped_more(self, message: Message) -> None:
        """One of several messages dropped for one put (the size bound): the caller is told
        of the last one only, so the others go to :attr:`on_drop` (a caller that reports
        losses sets it)."""
        if self.on_drop is not None:
            self.on_drop(message)

    def pause(self) -> None:
        """Hold messages back from the consumer (they are still buffered, under the bound)."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._readable.set()

    def get_nowait(self) -> Message:
        """The next message if one may be taken now; else raises ``anyio.WouldBlock``."""
        items = self._items
        if not items or (self.paused and not self.closed):
            raise anyio.WouldBlock
        item = self._pop()
        self.delivered += 1
        if self._put_waiting:  # a ``block`` put waits for room: it looks again
            self._put_waiting = False
            self._writable.set()
        return item

    def take_all(self, into: list[Message]) -> list[Message]:
        """Append every message that may be taken now to ``into`` and return it (a consumer
        that handles a read's messages in one call); nothing while paused."""
        items = self._items
        if not items or (self.paused and not self.closed):
            return into
        into.extend(items)
        self.delivered += len(items)
        items.clear()
        self.bytes = 0
        if self._weights is not None:
            self._weights.clear()
        if self._put_waiting:
            self._put_waiting = False
            self._writable.set()
        return into

    async def get(self) -> Message:
        """The next message; raises ``anyio.EndOfStream`` once closed and drained."""
        while not self._items or (self.paused and not self.closed):
            if self.closed:
                raise anyio.EndOfStream
            self._readable = anyio.Event()
            await self._readable.wait()
        return self.get_nowait()

    async def wait(self) -> None:
        """Wait until a message may be taken, the buffer closes or :meth:`wake` is called."""
        if self.closed or (self._items and not self.paused):
            return
        self._readable = anyio.Event()
        await self._readable.wait()

    def wake(self) -> None:
        """Wake a consumer in :meth:`wait` (it looks again at what changed)."""
        self._readable.set()

    def close(self) -> None:
        self.closed = True
        self._readable.set()
        self._writable.set()
