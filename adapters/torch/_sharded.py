"""``GuardedShardedGradScaler``: the guard over FSDP's ``ShardedGradScaler``.

Under FSDP1 (``FullyShardedDataParallel``) each rank unscales only its own gradient shard, so
an inf in one shard is seen by one rank: a plain (or plainly guarded) ``GradScaler`` then skips
the step on that rank only and the ranks diverge. ``ShardedGradScaler.unscale_`` all-reduces
the found-inf flags; every rank then reads the same flag in ``_maybe_opt_step``, and the
guard's decisions (made only from that flag and the mirror) stay identical across ranks.

With the scale on the CPU, ``ShardedGradScaler.update`` does not call torch's update kernel: it
multiplies the float32 scale tensor by the factor in float32 (the factor rounded to float32
first) and grows without the finite check. The mirror replays exactly that rule.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

from ...fsm import ScalerConfig
from ...fsm._mirror import f32 as _f32
from . import _defaults as default
from ._grad_scaler import GuardedGradScaler

__all__ = ["GuardedShardedGradScaler"]


class GuardedShardedGradScaler(GuardedGradScaler, ShardedGradScaler):
    """A drop-in ``ShardedGradScaler`` (FSDP) with the guard of :class:`GuardedGradScaler`.

    The positional arguments are ``ShardedGradScaler``'s, in its order (backoff before
    growth); the guard's extras are keyword-only, as for :class:`GuardedGradScaler`.

    .. versionadded:: 0.2.0
    """

    # ShardedGradScaler updates a CPU scale in Python and checks found-inf its own way
    _own_update = False

    def __init__(
        self,
        device: str = "cuda",
        init_scale: float | None = default.INIT_SCALE,
        backoff_factor: float | None = default.BACKOFF_FACTOR,
        growth_factor: float | None = default.GROWTH_FACTOR,
        growth_interval: int | None = default.GROWTH_INTERVAL,
        enabled: bool = True,
        process_group: Any = dist.group.WORLD,
        *,
        model: torch.nn.Module | None = None,
        config: ScalerConfig | None = None,
        dtype: torch.dtype = torch.float16,
        check_inputs: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(
            device,
            init_scale,
            growth_factor,
            backoff_factor,
            growth_interval,
            enabled,
            model=model,
            config=config,
            dtype=dtype,
            check_inputs=check_inputs,
            logger=logger,
        )
        if self._enabled:
            self.process_group = process_group

    def _replay(self, overflowed: bool) -> None:
        if self._scale is None or self._scale.device.type != "cpu":
            super()._replay(overflowed)  # on an accelerator: torch's update kernel
            return
        if overflowed:
            self._mirror = _f32(self._mirror * _f32(self._backoff_factor))
            self._tracker = 0
            return
        self._tracker += 1
        if self._tracker == self._growth_interval:
            self._mirror = _f32(self._mirror * _f32(self._growth_factor))
            self._tracker = 0

    def _device_step(self, found: torch.Tensor) -> None:
        super()._device_step(found)
        if not math.isfinite(self._mirror):
            self._mirror_exact = False
