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
  (``SSLProtocol._start_shutdown`` returns early): every socket transport still open at the
  end is aborted (``abort_transports``), whatever sits above it.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = [
    "abort_transports",
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


def stop_accepting(server: _Listening, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Take no new connection on ``server`` from now on, without closing it yet (its accept
    tasks still in flight need it open). Call on the server's loop."""
    loop = loop or asyncio.get_running_loop()
    for sock in server.sockets:
        loop.remove_reader(sock.fileno())  # type: ignore[attr-defined]


async def close_server(server: asyncio.Server) -> None:
    """Close ``server`` with no accepted socket dropped: stop accepting, let the accept tasks
    in flight take their step (each queued before this coroutine resumes), then close."""
    stop_accepting(server)
    await asyncio.sleep(0)
    server.close()
    await server.wait_closed()


async def shut_down(*servers: _Listening) -> None:
    """Stop ``servers`` accepting, end every other task of the running loop, close the servers
    and abort the sockets still open, in the order the module header explains."""
    for server in servers:
        stop_accepting(server)
    await cancel_other_tasks()
    for server in servers:
        server.close()
    abort_transports(asyncio.get_running_loop())
    await asyncio.sleep(0)


async def cancel_other_tasks(rounds: int = 20) -> None:
    """Cancel every other task of the running loop and wait for them, again while cancelling
    starts new ones (at most ``rounds`` times); then abort the socket transports still open
    and give the loop one more pass, so that their sockets close before the loop stops.

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
    abort_transports(asyncio.get_running_loop())
    await asyncio.sleep(0)


def abort_transports(loop: asyncio.AbstractEventLoop) -> int:
    """Abort every socket transport of ``loop`` that is still open; how many there were.

    Reads the selector loop's own registry (``_transports``, fd -> transport, kept by every
    CPython selector loop since 3.4; absent elsewhere, where this does nothing): no public API
    reaches a connection still in its TLS handshake. Their sockets close on the loop's next
    pass (``connection_lost``).
    """
    registry = getattr(loop, "_transports", None)
    if registry is None:
        return 0
    open_ = [t for t in list(registry.values()) if not t.is_closing()]
    for transport in open_:
        transport.abort()
    return len(open_)
