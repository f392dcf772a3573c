"""torch's loss-scale update rule (R2.2), replayed on the host: pure, no torch.

The torch adapter keeps a float32 host mirror of the scale so that per-step decisions never
read the device. The mirror applies this rule after every step it sees; it lives here, beside
the lifecycle, so that the reusable property suite (``regulator.specs.scaler_lifecycle_spec``)
checks it against its own reference model, and a broken growth factor or interval fails it.

The rule is torch's ``_amp_update_scale_`` kernel: on an overflow the scale is multiplied by
``backoff_factor`` and the growth tracker zeroed; otherwise the tracker counts the clean step,
and when the count reaches ``growth_interval`` exactly the scale is multiplied by
``growth_factor`` (kept only when the result is finite) and the tracker zeroed. Exactly: a
tracker already past the interval (``set_growth_interval()`` lowered it mid-run, or a checkpoint
brought one) never grows until an overflow zeroes it, as in torch's kernel. The product is
computed in double and stored in float32, as the kernel does.
"""

from __future__ import annotations

import math
import struct

__all__ = ["f32", "replay_torch_update"]

_F32 = struct.Struct("f")


def f32(value: float) -> float:
    """``value`` rounded to float32 (how torch stores the scale); out of range: +-inf."""
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def replay_torch_update(
    scale: float,
    tracker: int,
    overflowed: bool,
    growth_factor: float,
    backoff_factor: float,
    growth_interval: int,
) -> tuple[float, int]:
    """The scale and growth tracker after one step, by torch's update rule (R2.2)."""
    if overflowed:
        return f32(scale * backoff_factor), 0
    tracker += 1
    if tracker == growth_interval:
        grown = f32(scale * growth_factor)
        return (grown if math.isfinite(grown) else scale), 0
    return scale, tracker
