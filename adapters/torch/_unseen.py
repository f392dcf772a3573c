"""Steps only the device saw, on the scaler's side: kept without a sync, folded in with one.

A fused optimizer's step, or an ``unscale_()`` whose ``step()`` was skipped, shows the host
nothing (``_device_steps.py`` says what the device does meanwhile). Here is the rest:

* :func:`device_step`, after torch's update: the ledger's halving and floor on the device, the
  step's flag kept; the host mirror is no longer exact and the fast path is off;
* :func:`fold`, at the first read of the lifecycle (or torch's own read at the next host step,
  or every ``LIMIT`` unseen steps): scale, growth tracker, streak and the kept flags in **one**
  read, then each flag replayed through the for-loop path's own steps (mirror, machine,
  actions: anomalies logged ``logged_steps_later``, a collapse raised after the replay);
* :func:`adopt`: the replayed mirror checked against the device (a mismatch is an ERROR line
  and a re-sync), the lifecycle settled again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...fsm import ScaleCollapseError
from ._diagnostics import log_mirror_mismatch

if TYPE_CHECKING:
    from ._grad_scaler import GuardedGradScaler

__all__ = ["adopt", "combined_found_inf", "device_step", "fold", "read_device"]


def combined_found_inf(scaler: GuardedGradScaler) -> torch.Tensor:
    """The iteration's found-inf flags as one (torch's update sums them the same way)."""
    scale, _ = scaler._check_scale_growth_tracker("update")
    found = [
        f.to(device=scale.device, non_blocking=True)
        for state in scaler._per_optimizer_states.values()
        for f in state["found_inf_per_device"].values()
    ]
    if not found:
        raise AssertionError("No inf checks were recorded prior to update.")
    if len(found) == 1:
        single: torch.Tensor = found[0]
        return single  # torch's update adds nothing to it either: no op, no copy
    return torch.stack([f.reshape(()) for f in found]).sum()


def device_step(scaler: GuardedGradScaler, found: torch.Tensor) -> None:
    """A step the host did not see: halve and floor on the device, keep the flag; no sync."""
    scale, _ = scaler._check_scale_growth_tracker("update")
    ledger = scaler._ledger
    if not ledger.count:
        cfg = scaler.config
        ledger.start(
            scale,
            host_streak=scaler._machine.counters.streak,
            host_scale=scaler._mirror,
            halving_batches=cfg.overflow_halving_batches,
            min_scale=cfg.min_scale,
        )
    if found.dim():
        found = found.reshape(())  # FSDP's flag has shape (1,)
    if found.device != scale.device:
        found = found.to(scale.device)
    full = ledger.step(scale, found, scaler._backoff_factor)
    probe = scaler._probe
    scaler._output_at_update = probe.output if probe is not None and scaler._output_seen else None
    scaler._output_seen = False
    scaler._mirror_exact = False
    scaler._fast = False
    if full:
        fold(scaler, [])  # the bound on what is kept: one sync per LIMIT unseen steps


def read_device(scaler: GuardedGradScaler, extra: list[torch.Tensor]) -> list[float]:
    """Scale, growth tracker, streak, kept flags and ``extra`` in one read (one sync)."""
    assert scaler._scale is not None and scaler._growth_tracker is not None
    device = scaler._scale.device
    parts = [scaler._scale.float().reshape(1), scaler._growth_tracker.float().reshape(1)]
    if scaler._ledger.count:
        assert scaler._ledger.streak is not None
        parts.append(scaler._ledger.streak.float().reshape(1))
        parts += scaler._ledger.flags()
    parts += [t.to(device).float().reshape(-1) for t in extra]
    values: list[float] = torch.cat(parts).tolist()
    return values


def fold(scaler: GuardedGradScaler, extra: list[torch.Tensor]) -> float:
    """Fold the unseen steps in (one read) and replay them; returns ``extra``'s sum.

    After device steps this is where the lifecycle catches up: each kept flag goes
    through the for-loop path's own steps (mirror, machine, actions), so state, counters,
    anomalies and resets are the ones that path has. The device already applied what
    changes the scale; the replayed mirror is checked against it.
    """
    if scaler._scale is None or scaler._growth_tracker is None:
        return 0.0
    values = read_device(scaler, extra)
    count = scaler._ledger.count
    head = 3 if count else 2
    flags = values[head : head + count]
    rest = sum(values[head + count :])
    scaler._ledger.clear()
    collapse: ScaleCollapseError | None = None
    probe = scaler._probe
    latest_observable = (
        probe is not None
        and scaler._output_at_update is not None
        and probe.held is None
        and probe.output is scaler._output_at_update
    )
    for index, flag in enumerate(flags):
        overflowed = flag > 0
        scaler._replay(overflowed)
        actions = scaler._machine.step(overflowed, scaler._mirror)
        if actions is not None:
            late = count - 1 - index
            observed = late == 0 and latest_observable
            try:
                scaler._act(actions, device_done=True, late=None if observed else late)
            except ScaleCollapseError as exc:
                collapse = collapse or exc
    adopt(scaler, values[0], int(values[1]), int(values[2]) if count else None)
    if collapse is not None:
        raise collapse
    return rest


def adopt(
    scaler: GuardedGradScaler, device_scale: float, tracker: int, streak: int | None = None
) -> None:
    """Check the mirror against the device (a mismatch: ERROR, re-synced), adopt it."""
    c = scaler._machine.counters
    if (
        device_scale != scaler._mirror
        or tracker != scaler._tracker
        or (streak is not None and streak != c.streak)
    ):
        scaler.mirror_mismatches += 1
        log_mirror_mismatch(scaler._log, scaler._mirror, device_scale, scaler._tracker, tracker)
        if streak is not None:
            c.streak = streak
    scaler._mirror, scaler._tracker = device_scale, tracker
    scaler._mirror_exact = True
    scaler._machine.resync(scaler._mirror)
    scaler._settle()
