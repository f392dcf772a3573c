"""Under FSDP every rank keeps the same scale and state (gloo, 2 processes, CPU).

The overflow is injected into rank 0's own gradient shard only. FSDP1 needs
GuardedShardedGradScaler (ShardedGradScaler's cross-rank found-inf all-reduce); FSDP2's DTensor
gradients combine the flags, so GuardedGradScaler agrees there too.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from _fsdp_worker import POISON_ON_RANK_0, run
from _spawn import spawn_ranks


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fsdp", "kind"),
    [("fsdp1", "guarded_sharded"), ("fsdp2", "guarded_sharded"), ("fsdp2", "guarded")],
)
def test_ranks_keep_identical_state_and_scale_traces(fsdp: str, kind: str, tmp_path: Path) -> None:
    rank0, rank1 = spawn_ranks(run, 2, tmp_path, (_free_port(), fsdp, kind))
    assert rank0["trace"] == rank1["trace"]
    # rank 1 never saw an inf in its own shard, yet counted every overflow
    assert rank1["overflows"] == rank0["overflows"] == len(POISON_ON_RANK_0)
    assert rank1["halvings"] == 1  # steps 3..7: five in a row
    assert {state for state, _ in rank1["trace"]} >= {"overflow_halved", "over_threshold"}
    assert rank0["mismatches"] == rank1["mismatches"] == 0


@pytest.mark.slow
def test_under_fsdp1_a_plain_guarded_scaler_diverges(tmp_path: Path) -> None:
    # why GuardedShardedGradScaler exists: without the all-reduce only rank 0 skips its steps
    rank0, rank1 = spawn_ranks(run, 2, tmp_path, (_free_port(), "fsdp1", "guarded"))
    assert rank0["trace"] != rank1["trace"]
    assert (rank0["overflows"], rank1["overflows"]) == (len(POISON_ON_RANK_0), 0)
