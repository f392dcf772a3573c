"""The bounded buffer's all-or-nothing append (a consumer's read enters it in one call)."""

from __future__ import annotations

import anyio
import pytest
from regulator.adapters.websocket._buffer import MessageBuffer


def test_offer_all_appends_everything_or_nothing() -> None:
    buffer: MessageBuffer[str] = MessageBuffer(3, "drop_oldest")
    assert buffer.offer_all(["a", "b"])
    assert not buffer.offer_all(["c", "d"])  # one slot left: none of them enters
    assert len(buffer) == 2 and buffer.dropped == 0
    assert buffer.offer_all(["c"])
    assert [buffer.get_nowait() for _ in range(3)] == ["a", "b", "c"]
    assert buffer.delivered == 3
    with pytest.raises(anyio.WouldBlock):
        buffer.get_nowait()


@pytest.mark.anyio
async def test_offer_all_wakes_a_waiting_consumer() -> None:
    buffer: MessageBuffer[str] = MessageBuffer(10, "block")
    got: list[str] = []

    async def consume() -> None:
        got.append(await buffer.get())

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.sleep(0.01)  # the consumer waits on the empty buffer
            assert buffer.offer_all(["x", "y"])
    assert got == ["x"] and len(buffer) == 1
