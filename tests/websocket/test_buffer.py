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


def test_offer_weighed_keeps_both_bounds_and_the_weights() -> None:
    buffer: MessageBuffer[str] = MessageBuffer(4, "drop_oldest", max_bytes=10, weigh=None)
    assert buffer.offer_weighed(["a", "b"], [3, 4])
    assert not buffer.offer_weighed(["c", "d"], [2, 2])  # 11 bytes: none of them enters
    assert not buffer.offer_weighed(["c", "d", "e"], [0, 0, 0])  # 5 messages: none
    assert buffer.offer_weighed(["c"], [3]) and buffer.bytes == 10
    assert buffer.get_nowait() == "a" and buffer.bytes == 7  # the weight given comes off
    assert buffer.offer_weighed([], []) and len(buffer) == 2


@pytest.mark.anyio
async def test_take_all_hands_over_what_is_buffered_and_frees_a_blocked_put() -> None:
    buffer: MessageBuffer[str] = MessageBuffer(2, "block")
    assert buffer.take_all([]) == []
    buffer.pause()
    assert buffer.offer_all(["a", "b"])
    assert buffer.take_all(["first"]) == ["first"]  # paused: nothing is taken
    buffer.resume()
    put_done = anyio.Event()

    async def put() -> None:
        await buffer.put("c")  # full: waits for room
        put_done.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(put)
            await anyio.sleep(0.01)
            assert buffer.take_all(["first"]) == ["first", "a", "b"]
            assert buffer.bytes == 0 and buffer.delivered == 2
            await put_done.wait()
    assert buffer.take_all([]) == ["c"] and buffer.bytes == 0
