"""The found-inf check of a fused optimizer's step, without torch's per-step tensors.

A fused optimizer (``_step_supports_amp_scaling``) unscales inside its own kernel, so torch's
``GradScaler.step`` runs ``_check_inf_per_device`` only to set the found-inf flag: its check
kernel "unscales" with 1.0. To do that torch makes four tensors every step: a 1.0 and a zero
flag (``torch.full``), then ``_unscale_grads_`` hands the kernel per-device copies of both
(``to(..., copy=True)``, even onto the same device). None is needed:

* the kernel never writes the 1.0, so it is made once per device;
* the flag is the ledger's next zeroed slot (``DeviceSteps.hand``): the kernel writes the
  step's answer where the lifecycle keeps it, and the scaler's ``update()`` finds it there;
* the gradients are grouped by dtype here (one ``_amp_foreach_non_finite_check_and_unscale_``
  per dtype, as torch does).

Anything else takes torch's own ``_unscale_grads_`` with a fresh flag, as torch would: sparse
gradients (torch coalesces float16 ones first), gradients on another device than the scale,
and a second optimizer in the same iteration (its flag must start at zero, not at the first
optimizer's answer, or one overflowing optimizer would skip the other's step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ._grad_scaler import GuardedGradScaler

__all__ = ["check_inf_per_device", "dense_grads_on"]


def dense_grads_on(
    optimizer: torch.optim.Optimizer, device: torch.device
) -> dict[torch.dtype, list[torch.Tensor]] | None:
    """The optimizer's gradients by dtype when all are dense and on ``device``; else None."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse or grad.device != device:
                return None
            grads = by_dtype.get(grad.dtype)
            if grads is None:
                by_dtype[grad.dtype] = [grad]
            else:
                grads.append(grad)
    return by_dtype


def check_inf_per_device(
    scaler: GuardedGradScaler, optimizer: torch.optim.Optimizer
) -> dict[Any, Any]:
    """``GradScaler._check_inf_per_device`` with the flag in the ledger (see the header)."""
    scale, _ = scaler._check_scale_growth_tracker("_check_inf_per_device")
    device = scale.device
    unit = scaler._unit_inv_scale
    if unit is None or unit.device != device:
        unit = scaler._unit_inv_scale = torch.ones((), dtype=torch.float32, device=device)
    per_device: dict[Any, Any]
    by_dtype = dense_grads_on(optimizer, device)
    found = None if by_dtype is None else scaler._ledger.hand(device)
    if by_dtype is not None and found is not None:
        with torch.no_grad():
            for grads in by_dtype.values():
                torch._amp_foreach_non_finite_check_and_unscale_(grads, found, unit)
        per_device = {device: found}
    else:
        zero = torch.zeros((), dtype=torch.float32, device=device)
        per_device = scaler._unscale_grads_(optimizer, unit, zero, True)
    scaler._per_optimizer_states[id(optimizer)]["found_inf_per_device"] = per_device
    return per_device
