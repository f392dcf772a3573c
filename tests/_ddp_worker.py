"""One rank of the DDP agreement test (spawned by tests/torch/test_grad_scaler_ddp.py).

The rank publishes its results before tearing the process group down: torch's teardown may
abort the process afterwards, and the test judges what was published (tests/_spawn.py).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from _amp import amp_step, batch, mlp
from _spawn import publish
from regulator.adapters.torch import GuardedGradScaler
from regulator.fsm import ScalerConfig
from torch.nn.parallel import DistributedDataParallel

POISON_ON_RANK_0 = {3, 4, 5, 6, 7, 12}


def run(rank: int, world: int, out: str, port: int) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = DistributedDataParallel(mlp(seed=0))
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        scaler = GuardedGradScaler(
            "cpu",
            model=model,
            config=ScalerConfig(growth_interval=2, max_scale_threshold=2200.0),
            init_scale=2048.0,
        )
        trace = []
        for step in range(20):
            # Each rank sees different data; only rank 0's loss overflows. The all-reduce
            # spreads its inf gradients to every rank.
            poison = rank == 0 and step in POISON_ON_RANK_0
            amp_step(model, opt, scaler, batch(seed=100 * rank + step), poison=poison)
            trace.append([scaler.state, scaler.get_scale()])
            if step % 5 == 4:
                scaler.end_epoch()
        stats = scaler.get_statistics()
        publish(
            out,
            f"rank{rank}",
            {
                "trace": trace,
                "overflows": stats["overflow_count"],
                "halvings": stats["halvings"],
                "mismatches": scaler.mirror_mismatches,
            },
        )
    finally:
        dist.destroy_process_group()
