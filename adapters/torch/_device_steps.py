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
  "growth") and zeroes the streak: two small ops, no sync. The floor (``clamp_min_``) runs only
  once the host's lower bound on the scale says it may be reached;
* everything else (state, counters, anomalies, R2.3's threshold) is **replayed on the host**
  from the per-step flags. They are kept where they are made: a fused optimizer's found-inf
  check is handed the next slot of a preallocated, zeroed buffer as its flag (:meth:`hand`),
  so its kernel writes the step's answer straight into the ledger, and the fresh zero torch
  would allocate for it is not needed. A flag made elsewhere (``unscale_()`` with ``step()``
  skipped, several optimizers) is copied into the slot. The scaler folds them in with one
  read when anything reads the lifecycle (``state``, ``machine``, ``get_scale()``,
  statistics, ``end_epoch()``, ``state_dict()``), or merged into torch's own read at the next
  host step. The replay runs the same :class:`ScalerMachine` steps the for-loop path runs, so
  state, counters, resets and halvings are the for-loop run's.

Per unseen fused step that is two small device ops (the "clean" flag the halving kernel takes,
and the kernel), where torch's own step makes two (a unit inverse scale and a zero flag, both
made once here), plus the floor's ``clamp_min_`` once the host's lower bound on the scale
(worst case: every step overflowed since the last read) reaches ``min_scale``.

Bounds: every ``CHUNK`` steps the buffer is packed into one bool tensor (1 byte a step) and
zeroed; after ``LIMIT`` steps without a read the scaler folds (one sync per ``LIMIT`` steps).
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

    __slots__ = (
        "_buffer",
        "_clamping",
        "_clean",
        "_floor",
        "_halving_batches",
        "_handed",
        "_low",
        "_low_streak",
        "_min_scale",
        "_packed",
        "_slots",
        "_used",
        "count",
        "streak",
    )

    def __init__(self) -> None:
        self.streak: torch.Tensor | None = None  # consecutive overflows (int32, on the device)
        self._buffer: torch.Tensor | None = None  # each step's found-inf flag (float32); zeroed
        self._slots: list[torch.Tensor] = []  # the buffer's 0-dim views, made once
        self._used = 0  # slots filled since the last pack
        self._handed: torch.Tensor | None = None  # a slot handed to a check, not yet stepped
        self._packed: list[torch.Tensor] = []  # full buffers as "overflowed" bools
        self._clean: torch.Tensor | None = None  # the halving kernel's input: "step was clean"
        self._low = math.inf  # a lower bound on the device scale
        self._low_streak = 0  # ... and on the device streak, in the same worst case
        self._clamping = False  # the bound has reached min_scale: the floor runs every step
        self._halving_batches = 0
        self._min_scale = 0.0
        self._floor: torch.Tensor | None = None  # min_scale on the device (a tensor clamps faster)
        self.count = 0  # steps kept since the last fold

    def _ensure_buffer(self, device: torch.device) -> None:
        buffer = self._buffer
        if buffer is None or buffer.device != device or len(self._slots) != CHUNK:
            # (only between folds: nothing kept is lost; a handed slot stays valid on its own)
            self._buffer = torch.zeros(CHUNK, dtype=torch.float32, device=device)
            self._slots = list(self._buffer.unbind())  # one op for all the views
            self._clean = torch.zeros((), dtype=torch.float32, device=device)
            self._used = 0

    def hand(self, device: torch.device) -> torch.Tensor | None:
        """The next slot, zeroed, as this step's found-inf flag (a fused optimizer's check
        writes into it); None when one is already out this iteration (a second optimizer
        needs a flag of its own) or the ledger holds steps of another device."""
        if self._handed is not None or (self.count and self._slots[0].device != device):
            return None
        self._ensure_buffer(device)
        slot = self._handed = self._slots[self._used]
        return slot

    def drop(self) -> None:
        """The iteration ended without a device step: a handed slot goes back zeroed."""
        handed = self._handed
        if handed is not None:
            handed.zero_()
            self._handed = None

    def start(
        self,
        scale: torch.Tensor,
        *,
        host_streak: int,
        host_scale: float,
        halving_batches: int,
        min_scale: float,
    ) -> None:
        """The first unseen step since a fold: the device streak and the bound from the host."""
        device = scale.device
        if self.streak is None or self.streak.device != device:
            self.streak = torch.zeros((), dtype=torch.int32, device=device)
        if self._handed is None or self._handed.device != device:
            self._ensure_buffer(device)
        self.streak.fill_(host_streak)  # a host number: no sync
        floor = self._floor
        if floor is None or floor.device != device or self._min_scale != min_scale:
            self._floor = torch.full((), min_scale, dtype=torch.float32, device=device)
        self._low = host_scale
        self._low_streak = host_streak
        self._clamping = False
        self._halving_batches = halving_batches
        self._min_scale = min_scale

    def step(self, scale: torch.Tensor, found: torch.Tensor, backoff_factor: float) -> bool:
        """After torch's own update: the R2.4 halving and the floor on the device; keep the flag.

        ``found`` is the step's 0-dim found-inf flag on the scale's device; :meth:`start` ran
        since the last fold. Returns True when ``LIMIT`` steps are kept: time to fold."""
        slot = self._slots[self._used]
        handed = self._handed
        if found is not slot:  # a flag made elsewhere: kept in the slot
            slot.copy_(found)
            if handed is not None and handed is not slot:
                handed.zero_()  # handed before a fold moved the slots on: back to zero
        self._handed = None
        clean = self._clean
        assert clean is not None
        torch.logical_not(slot, out=clean)
        # torch's update kernel on the streak: "clean" zeroes it, an overflow counts, the
        # halving_batches-th overflow in a row multiplies the scale by 0.5 (its "growth").
        torch._amp_update_scale_(scale, self.streak, clean, 0.5, 1.0, self._halving_batches)  # type: ignore[arg-type]
        if self._clamping:
            scale.clamp_min_(self._floor)  # type: ignore[arg-type]
        else:
            # The floor: only once the worst case (every step since the read overflowed)
            # reaches it; from then on every step, until the next fold.
            low = self._low * backoff_factor
            self._low_streak += 1
            if self._low_streak >= self._halving_batches:
                low *= 0.5
                self._low_streak = 0
            if low < self._min_scale:
                scale.clamp_min_(self._floor)  # type: ignore[arg-type]
                self._clamping = True
            self._low = low
        self._used += 1
        self.count += 1
        if self._used == CHUNK:
            assert self._buffer is not None
            self._packed.append(self._buffer.ne(0))  # overflowed, 1 byte a step
            self._buffer.zero_()
            self._used = 0
        return self.count >= LIMIT

    def flags(self) -> list[torch.Tensor]:
        """The kept "overflowed" flags as float32 tensors, oldest first (for one ``torch.cat``)."""
        parts = [packed.float() for packed in self._packed]
        if self._used:
            assert self._buffer is not None
            parts.append(self._buffer[: self._used].ne(0).float())
        return parts

    def __getstate__(self) -> dict[str, object]:
        state = {name: getattr(self, name) for name in self.__slots__}
        state["_handed"] = None  # torch pickles a scaler only between iterations
        if not self.count:  # nothing kept: the buffer is remade on the next unseen step
            state.update(_buffer=None, _slots=[], _packed=[], _used=0, _clean=None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def clear(self) -> None:
        """After a fold: nothing kept. The used slots go back to zero (a slot handed out and
        not yet stepped keeps its flag; :meth:`step` zeroes it then)."""
        if self._used:
            assert self._buffer is not None
            self._buffer[: self._used].zero_()
        self._packed = []
        self._used = 0
        self.count = 0
