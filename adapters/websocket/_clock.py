"""Where the socket reads time and sleeps: the event loop's clock, or one a test injects."""

from __future__ import annotations

from typing import Protocol

import anyio

__all__ = ["AnyioClock", "Clock"]


class Clock(Protocol):
    """Where the adapter reads time and sleeps (inject a fast one in tests)."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class AnyioClock:
    """The event loop's clock (asyncio or trio)."""

    def now(self) -> float:
        return anyio.current_time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep(max(0.0, deadline - anyio.current_time()))
