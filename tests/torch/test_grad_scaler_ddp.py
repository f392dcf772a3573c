"""Under DDP every rank keeps the same scale and state (gloo, 2 processes, CPU)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from _ddp_worker import POISON_ON_RANK_0, run
from _spawn import spawn_ranks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_ranks_agree_on_scale_and_state_after_an_all_reduced_overflow(tmp_path: Path) -> None:
    rank0, rank1 = spawn_ranks(run, 2, tmp_path, (_free_port(),))
    assert rank0["trace"] == rank1["trace"]
    # rank 1 never poisoned its own loss, yet saw every overflow through the all-reduce
    assert rank1["overflows"] == len(POISON_ON_RANK_0)
    assert rank1["halvings"] == 1  # steps 3..7: five in a row
    assert {state for state, _ in rank1["trace"]} >= {"stable", "overflow_halved", "over_threshold"}
    assert rank0["mismatches"] == rank1["mismatches"] == 0
