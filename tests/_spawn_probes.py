"""Worker functions for tests/test_spawn.py (spawned by name, so they live in a module)."""

from __future__ import annotations

import os
import time

from _spawn import publish


def publish_then_abort(rank: int, world: int, out: str) -> None:
    publish(out, f"rank{rank}", {"rank": rank, "world": world})
    os.abort()  # what torch's gloo teardown does at exit: SIGABRT after the work is done


def abort_before_publishing_on_rank_1(rank: int, world: int, out: str) -> None:
    if rank == 1:
        os.abort()
    publish(out, f"rank{rank}", {"rank": rank})


def hang(rank: int, world: int, out: str) -> None:
    time.sleep(600)


def publish_then_hang(rank: int, world: int, out: str) -> None:
    publish(out, f"rank{rank}", {"rank": rank})
    time.sleep(600)  # what torch's gloo teardown sometimes does: a futex wait after the work
