"""Shutting down a private asyncio loop without leaving a socket to a later test's garbage
collection.

The simulator, the fault proxy and the test beds each run on a loop of their own thread, which
their owner stops and closes. A socket left open there is reported (``unclosed``, ``loop is
closed``) wherever the collector happens to run next: in CI, in an unrelated test, which then
fails. Three gaps of asyncio (3.11) leave one open unless shutdown goes in this order:

* An accepted socket belongs to asyncio's accept task until that task's first step wraps it
  in a transport. If the server is closed first, that step fails (``Server._attach`` asserts
  the server is open) and the socket is dropped, never closed; a task cancelled before its
  first step runs none of its code either. So: stop accepting (``stop_accepting``), let every
  task take a step, and only then cancel the tasks and close the server.
* A handler task created while the others are being cancelled escapes any one snapshot of the
  loop's tasks: cancelling repeats until none is left.
* Closing a TLS transport before its protocol has started does nothing
  (``SSLProtocol._start_shutdown`` returns early). Letting every task step before cancelling
  also covers this: the protocol starts (``connection_made``, queued by the accept task's step)
  before the cancelled task closes its transport.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = [
    "cancel_other_tasks",
    "close_server",
    "shut_down",
    "stop_accepting",
]


class _Listening(Protocol):
    """An ``asyncio.Server``, or a server wrapping one (websockets') that lists its sockets."""

    @property
    def sockets(self) -> tuple[object, ...] | list[object]: ...

    def close(self) -> object: ...

    async def wait_closed(self) -> None: ...


def stop_accepting(server: _Listening) -> None:
    """Take no new connection on ``server`` from now on, without closing it yet (its accept
    tasks still in flight need it open). Call on the server's loop."""
    loop = asyncio.get_running_loop()
    for sock in server.sockets:
        loop.remove_reader(sock.fileno())  # type: ignore[attr-defined]


async def close_server(server: _Listening) -> None:
    """Close ``server`` with no accepted socket dropped: stop accepting, let the accept tasks
    in flight take their step (each queued before this coroutine resumes), then close."""
    stop_accepting(server)
    await asyncio.sleep(0)
    server.close()
    await server.wait_closed()


async def shut_down(*servers: _Listening) -> None:
    """Stop ``servers`` accepting, end every other task of the running loop, then close the
    servers: the order the module header explains."""
    for server in servers:
        stop_accepting(server)
    await cancel_other_tasks()
    for server in servers:
        server.close()
        await server.wait_closed()


async def cancel_other_tasks(rounds: int = 20) -> None:
    """Cancel every other task of the running loop and wait for them, again while cancelling
    starts new ones (at most ``rounds`` times); then give the loop one more pass, so that the
    transports those tasks closed finish closing before the loop stops.

    Each round first lets every task take its first step: a task cancelled before it starts
    runs none of its code, its cleanup included.
    """
    me = asyncio.current_task()
    for _ in range(rounds):
        await asyncio.sleep(0)
        others = [t for t in asyncio.all_tasks() if t is not me]
        if not others:
            break
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
    await asyncio.sleep(0)
