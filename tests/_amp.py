"""Real AMP training steps on the CPU (float16 autocast), shared by the torch tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def mlp(seed: int = 0, width: int = 32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 1))


def batch(seed: int = 0, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=g), torch.randn(n, 1, generator=g)


def amp_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    poison: bool = False,
    held: list[torch.Tensor] | None = None,
    clip: bool = False,
    before_update: Callable[[Any], object] | None = None,
) -> torch.Tensor:
    """One real float16-autocast step; ``poison`` multiplies the loss by inf (an overflow).

    ``clip``: the clip-and-skip loop: ``unscale_()`` every step, the gradient norm clipped,
    ``step()`` only when that norm is finite.

    ``held`` keeps the model output alive past the step, as a loop's ``output = model(x)``
    does until the next forward (the scaler's diagnostics see it only then).

    ``before_update(scaler)`` runs between ``step()`` and ``update()``.
    """
    x, y = data
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.float16):
        output = model(x)
        loss = F.mse_loss(output, y)
    if held is not None:
        held[:] = [output]
    if poison:
        loss = loss * float("inf")
    scaler.scale(loss).backward()
    if clip:
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if torch.isfinite(norm):
            scaler.step(optimizer)
    else:
        scaler.step(optimizer)
    if before_update is not None:
        before_update(scaler)
    scaler.update()
    return loss.detach()
