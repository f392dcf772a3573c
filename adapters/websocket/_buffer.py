"""A bounded message buffer between the socket reader and a consumer, on any anyio backend.

The reader must never stall on a slow consumer (a stalled reader answers no server ping and
the server drops the connection), so what happens when the buffer is full is a policy:

* ``drop_oldest``: the oldest message is dropped and counted (the default: market data goes
  stale; the newest is worth most);
* ``fail``: the connection fails as ``protocol`` ("consumer too slow") and reconnects;
* ``block``: the reader waits for room (back-pressure to the server through TCP; server pings
  wait too, so use it only with consumers that keep up).

While ``paused`` (the adapter pauses from a new connection until its ``on_connect`` has run),
the consumer gets nothing; what arrives meanwhile is buffered under the same bound and policy.
With ``block``, an ``on_connect`` that awaits a reply therefore needs room in the buffer.
"""

from __future__ import annotations

from collections import deque
from typing import Generic, Literal, TypeVar

import anyio

__all__ = ["BufferFull", "MessageBuffer", "OverflowPolicy"]

OverflowPolicy = Literal["drop_oldest", "fail", "block"]
Message = TypeVar("Message")


class BufferFull(Exception):
    """The buffer is full and the policy is ``fail``."""


class MessageBuffer(Generic[Message]):
    def __init__(self, size: int, policy: OverflowPolicy) -> None:
        if size < 1:
            raise ValueError(f"buffer_size: must be >= 1 (got {size!r})")
        if policy not in ("drop_oldest", "fail", "block"):
            raise ValueError(
                f"overflow_policy: must be 'drop_oldest', 'fail' or 'block' (got {policy!r})"
            )
        self.size = size
        self.policy: OverflowPolicy = policy
        self._items: deque[Message] = deque()
        self._readable = anyio.Event()
        self._writable = anyio.Event()
        # received == delivered + dropped + failed + len(self), whatever the policy
        self.dropped = 0
        self.delivered = 0
        self.failed = 0  # refused by ``fail``: the message that found the buffer full
        self.closed = False
        self.paused = False

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: Message) -> bool:
        """Append ``item`` if there is room (the reader's fast path, no await); else False."""
        items = self._items
        if len(items) >= self.size:
            return False
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
        was_empty = not buffered
        buffered.extend(items)
        if was_empty and items:  # as in ``offer``: a consumer waits only on an empty buffer
            self._readable.set()
        return True

    async def put(self, item: Message) -> Message | None:
        """Buffer ``item``; return the message dropped to make room (``drop_oldest``), so a
        caller that knows what messages mean can report the loss (None: nothing dropped)."""
        dropped: Message | None = None
        while len(self._items) >= self.size:
            if self.policy == "drop_oldest":
                dropped = self._items.popleft()
                self.dropped += 1
                break
            if self.policy == "fail":
                self.failed += 1
                raise BufferFull(f"consumer too slow: {self.size} messages buffered")
            if self.closed:  # nobody will make room: the message is discarded, and counted
                self.dropped += 1
                return None
            self._writable = anyio.Event()
            try:
                await self._writable.wait()
            except BaseException:  # cancelled while waiting (the connection ended): discarded
                self.dropped += 1
                raise
        self._items.append(item)
        self._readable.set()
        return dropped

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
        was_full = len(items) >= self.size
        item = items.popleft()
        self.delivered += 1
        if was_full:  # a ``block`` put waits only on a full buffer
            self._writable.set()
        return item

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
