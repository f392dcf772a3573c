"""Steps whose overflow only the device knows, kept for the lifecycle without a sync.

Two paths step without showing the host whether the step overflowed:

* **fused optimizers** (``_step_supports_amp_scaling``: Adam, AdamW, SGD, Adagrad with
  ``fused=True``): ``GradScaler.step`` hands them ``grad_scale`` and ``found_inf`` and the kernel
  skips on the device; ``_maybe_opt_step`` (where torch reads the flag) is never called;
* **clip-and-skip loops**: ``unscale_()``, then ``step()`` left out when the norm is not finite,
  then ``update()``.

Plain ``GradScaler`` reads nothing on these paths, so neither may we. What the lifecycle needs
is split in two:

* what changes the **scale** of the next step must happen on the device, now: the extra halving
  after ``overflow_halving_batches`` overflows in a row (R2.4) and the ``min_scale`` floor. The
  halving is torch's own update kernel run a second time on a streak counter: fed "this step was
  clean" as its found-inf flag, ``_amp_update_scale_`` zeroes the streak on a clean step, counts
  an overflowing one, and at the ``overflow_halving_batches``-th multiplies the scale by 0.5 (its
  "growth") and zeroes the streak: two small ops, no sync. The floor (``clamp_``) runs only
  once the host's lower bound on the scale says it may be reached;
* everything else (state, counters, anomalies, R2.3's threshold) is **replayed on the host**
  from the per-step found-inf tensors, kept by reference (they are fresh tensors each step;
  keeping one costs a list append). The scaler folds them in with one read when anything reads
  the lifecycle (``state``, ``machine``, ``get_scale()``, statistics, ``end_epoch()``,
  ``state_dict()``), or merged into torch's own read at the next host step. The replay runs the
  same :class:`ScalerMachine` steps the for-loop path runs, so state, counters, resets and
  halvings are the for-loop run's.

Bounds: every ``CHUNK`` steps the kept flags are packed into one bool tensor (1 byte a step);
after ``LIMIT`` steps without a read the scaler folds (one sync per ``LIMIT`` steps).
"""

from __future__ import annotations

import math

import torch

__all__ = ["CHUNK", "LIMIT", "DeviceSteps"]

#: flags kept as separate tensors before they are packed into one (no sync)
CHUNK = 1024
#: steps without a read before the scaler folds on its own (one sync)
LIMIT = 1 << 20


class DeviceSteps:
    """The device's side of the steps the host has not seen since the last fold."""

    __slots__ = ("_chunks", "_clean", "_low", "_pending", "count", "streak")

    def __init__(self) -> None:
        self.streak: torch.Tensor | None = None  # consecutive overflows (int32, on the device)
        self._clean: torch.Tensor | None = None  # "this step was clean" (float32)
        self._pending: list[torch.Tensor] = []
        self._chunks: list[torch.Tensor] = []
        self._low = math.inf  # a lower bound on the device scale
        self.count = 0  # steps kept since the last fold

    def step(
        self,
        scale: torch.Tensor,
        found: torch.Tensor,
        *,
        host_streak: int,
        host_scale: float,
        backoff_factor: float,
        halving_batches: int,
        min_scale: float,
    ) -> bool:
        """After torch's own update: the R2.4 halving and the floor on the device; keep the flag.

        Returns True when ``LIMIT`` steps are kept: time to fold."""
        if self.count == 0:
            if self.streak is None or self.streak.device != scale.device:
                self.streak = torch.zeros((), dtype=torch.int32, device=scale.device)
            if self._clean is None or self._clean.shape != found.shape:
                self._clean = torch.zeros_like(found, dtype=torch.float32)
            self.streak.fill_(host_streak)  # a host number: no sync
            self._low = host_scale
        assert self.streak is not None and self._clean is not None
        torch.logical_not(found, out=self._clean)
        torch._amp_update_scale_(scale, self.streak, self._clean, 0.5, 1.0, halving_batches)
        # The scale falls at most by backoff x 0.5 a step: below the floor only after that.
        self._low *= backoff_factor * 0.5
        if self._low < min_scale:
            scale.clamp_(min=min_scale)
            self._low = min_scale
        self._pending.append(found)
        self.count += 1
        if len(self._pending) >= CHUNK:
            self._chunks.append(torch.stack(self._pending).reshape(-1).gt(0))
            self._pending = []
        return self.count >= LIMIT

    def flags(self) -> list[torch.Tensor]:
        """The kept flags as float32 tensors, oldest first (for one ``torch.cat``)."""
        parts = [chunk.float() for chunk in self._chunks]
        if self._pending:
            parts.append(torch.stack(self._pending).reshape(-1).gt(0).float())
        return parts

    def clear(self) -> None:
        self._pending = []
        self._chunks = []
        self.count = 0
