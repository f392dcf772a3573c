"""What the guard says: the R3.2 anomaly lines and its other WARNING/ERROR lines.

Everything here runs only when there is something to say (an anomaly, a first bf16 output, an
input beyond float16's range, a mirror mismatch), never in the common step. The lines are the
stable ``key=value`` format (``regulator.fsm.format_kv``); the field names are public (R3.2,
``docs/scaler.md``): change them only with a deprecation.

* **Anomaly lines** describe the step they are logged for: the gradient norm (unscaled on every
  path) and the latest output, if the caller still holds it (the probe keeps it weakly, see
  ``_hooks.py``). A step replayed later (``late``: only the device saw it, ``_device_steps.py``)
  has neither left: its line says ``output=not_observed`` and how many steps later it is logged.
* **Forward notes**: what the forward hooks left (a bf16 output, the input checks of a compiled
  forward, read once at ``scale()``).
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

import torch

from ...fsm import format_kv
from ...fsm._scaler import Anomaly
from ._finite import NonFiniteInputError
from ._hooks import OutputProbe

if TYPE_CHECKING:
    from ._grad_scaler import GuardedGradScaler

__all__ = [
    "anomaly_fields",
    "grad_norm",
    "log_mirror_mismatch",
    "note_bf16_output",
    "note_fp16_overflow",
    "output_stats",
    "reject_input",
    "take_forward",
]


def grad_norm(model_ref: weakref.ref[torch.nn.Module] | None) -> float | None:
    model = model_ref() if model_ref is not None else None
    if model is None:
        return None
    norms = [
        torch.linalg.vector_norm(p.grad.detach().float())
        for p in model.parameters()
        if p.grad is not None
    ]
    if not norms:
        return None
    # Unscaled on every path: unscale_() does it in place, and so do torch's fused kernels
    # on a step they take (a skipped one leaves non-finite gradients: inf/nan either way).
    return float(torch.linalg.vector_norm(torch.stack(norms)))


def output_stats(probe: OutputProbe | None) -> dict[str, Any]:
    tensor = probe.latest_output() if probe is not None else None
    if tensor is None:
        # not kept alive on purpose: only while the caller still holds it
        return {"output": "released" if probe is not None else None}
    data = tensor.detach().float()
    finite = data[torch.isfinite(data)]
    nan = int(torch.isnan(data).sum())
    return {
        "output_mean": float(finite.mean()) if finite.numel() else None,
        "output_std": float(finite.std()) if finite.numel() > 1 else None,
        "output_min": float(finite.min()) if finite.numel() else None,
        "output_max": float(finite.max()) if finite.numel() else None,
        "output_nan": nan,
        "output_inf": int(data.numel() - finite.numel() - nan),
    }


def anomaly_fields(
    scaler: GuardedGradScaler, anomaly: Anomaly, late: int | None = None
) -> dict[str, Any]:
    """Everything R3.2 asks for; computed only now, on an anomaly.

    A replayed step (``late``: steps since) has no gradients or output of its own left:
    its line says so instead of describing a later step's (R3.2).
    """
    if late is not None:
        observed: dict[str, Any] = {
            "grad_norm": None,
            "output": "not_observed",
            "logged_steps_later": late,
        }
    else:
        observed = {
            "grad_norm": grad_norm(scaler._model_ref),
            **output_stats(scaler._probe),
        }
    return {
        "event": anomaly.kind,
        "epoch": anomaly.epoch,
        "batch": anomaly.batch,
        "step": anomaly.step,
        "scale": scaler._mirror,
        "state": scaler._machine.state,
        "consecutive_overflows": anomaly.consecutive_overflows,
        **observed,
        "message": anomaly.message,
    }


def log_mirror_mismatch(
    log: logging.Logger, mirror: float, device: float, mirror_tracker: int, device_tracker: int
) -> None:
    log.error(
        format_kv(
            event="mirror_mismatch",
            mirror_scale=mirror,
            device_scale=device,
            mirror_tracker=mirror_tracker,
            device_tracker=device_tracker,
            message="the host mirror of the scale diverged from the device; re-synced",
        )
    )


# -- what the forward hooks report (they hold the scaler weakly; see _hooks.py) ---------------
def _batch(scaler: GuardedGradScaler) -> int:
    return scaler._machine.counters.epoch_steps + scaler._ledger.count


def note_bf16_output(scaler: GuardedGradScaler) -> None:
    if scaler._warned_bf16_output:
        return
    scaler._warned_bf16_output = True
    scaler._log.warning(
        format_kv(
            event="bf16",
            message="model output is bfloat16, which needs no loss scaling;"
            " construct the scaler with dtype=torch.bfloat16 or enabled=False",
        )
    )


def reject_input(scaler: GuardedGradScaler, field: str, nans: int, infs: int) -> None:
    raise NonFiniteInputError(_batch(scaler), field, nans, infs)


def note_fp16_overflow(scaler: GuardedGradScaler, field: str) -> None:
    if field in scaler._fp16_fields_warned:
        return
    scaler._fp16_fields_warned.add(field)
    scaler._log.warning(
        format_kv(
            event="fp16_range",
            field=field,
            batch=_batch(scaler),
            message=f"input {field!r} holds finite values beyond float16's range (> 65504);"
            " under float16 autocast they become inf and every step overflows",
        )
    )


def take_forward(scaler: GuardedGradScaler, probe: OutputProbe) -> None:
    """At ``scale()``: what the forward hooks left (the output, a compiled forward's checks)."""
    tensor = probe.settle()
    scaler._output_seen = tensor is not None  # this step's forward ran with the hook on
    if tensor is not None and not probe.output_dtype_seen:
        probe.output_dtype_seen = True
        if tensor.dtype == torch.bfloat16:
            note_bf16_output(scaler)
    if probe.pending:
        # a compiled forward's input checks: read now (check_inputs: one read a forward)
        pending, probe.pending = probe.pending, []
        for fields in pending:
            if not fields:
                continue
            counts = torch.stack([c for _, c in fields]).tolist()
            for (field, _), (bad, nans, beyond) in zip(fields, counts, strict=True):
                if bad:
                    reject_input(scaler, field, int(nans), int(bad - nans))
                if beyond:
                    note_fp16_overflow(scaler, field)
