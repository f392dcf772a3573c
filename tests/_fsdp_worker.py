"""One rank of the FSDP agreement tests (spawned by tests/torch/test_grad_scaler_fsdp.py).

An inf is written into rank 0's own gradient shard only (FSDP1: after reduce-scatter each
rank holds a shard, so no collective spreads it). Every rank publishes its (state, scale)
trace before tearing the process group down (tests/_spawn.py).
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from _amp import batch, mlp
from _spawn import publish
from regulator.adapters.torch import GuardedGradScaler, GuardedShardedGradScaler
from regulator.fsm import ScalerConfig

POISON_ON_RANK_0 = {3, 4, 5, 6, 7, 12}
STEPS = 16
CONFIG = ScalerConfig(growth_interval=2, max_scale_threshold=2200.0)


def _wrap(model: torch.nn.Module, fsdp: str) -> torch.nn.Module:
    if fsdp == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    fully_shard(model, mesh=init_device_mesh("cpu", (dist.get_world_size(),)))
    return model


def _scaler(kind: str, model: torch.nn.Module) -> Any:
    if kind == "plain":
        return torch.amp.GradScaler("cpu", init_scale=2048.0, growth_factor=1.2, growth_interval=2)
    cls = GuardedShardedGradScaler if kind == "guarded_sharded" else GuardedGradScaler
    return cls("cpu", init_scale=2048.0, model=model, config=CONFIG)


def _poison(model: torch.nn.Module) -> None:
    for p in model.parameters():
        if p.grad is not None:
            grad = p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad
            if grad.numel():
                grad.fill_(float("inf"))
                return


def run(rank: int, world: int, out: str, port: int, fsdp: str, kind: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _wrap(mlp(seed=0), fsdp)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        scaler = _scaler(kind, model)
        trace = []
        for step in range(STEPS):
            x, y = batch(seed=100 * rank + step)
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.mse_loss(model(x), y)
            scaler.scale(loss).backward()
            if rank == 0 and step in POISON_ON_RANK_0:
                _poison(model)
            scaler.step(opt)
            scaler.update()
            state = getattr(scaler, "state", "-")
            trace.append([state, scaler.get_scale()])
            if step % 5 == 4 and hasattr(scaler, "end_epoch"):
                scaler.end_epoch()
        result: dict[str, Any] = {"trace": trace}
        if hasattr(scaler, "get_statistics"):
            stats = scaler.get_statistics()
            result.update(
                overflows=stats["overflow_count"],
                halvings=stats["halvings"],
                mismatches=scaler.mirror_mismatches,
            )
        publish(out, f"rank{rank}", result)
    finally:
        dist.destroy_process_group()
