"""``GuardedGradScaler``: torch's AMP ``GradScaler`` bound to :class:`ScalerMachine`.

How it stays free of extra host-device syncs (the per-step cost is plain float arithmetic):

* **Overflow, per step, for free.** torch's ``_maybe_opt_step`` already reads the found-inf
  flags (``.item()``, its one sync per step) to decide whether to skip ``optimizer.step()``.
  The override below does exactly that and keeps the answer.
* **The scale, per step, without reading it.** A float32 host mirror replays torch's update
  rule (backoff on overflow; growth after ``growth_interval`` clean steps if finite), so
  ``get_scale()``, the threshold checks and ``state_dict()`` never touch the device.
* **Verified once per epoch.** ``end_epoch()`` reads the device scale and growth tracker in one
  sync, logs a mismatch loudly at ERROR, and re-syncs the mirror.
* **Fused optimizers** (``fused=True``) never call ``_maybe_opt_step``: there the overflow
  count, the consecutive-overflow streak and the extra halving run as tensor ops on the device,
  and the lifecycle reads them at ``end_epoch()``; ``get_scale()`` then reads the device.

Decisions use only facts every DDP rank shares (all-reduced gradients give every rank the same
found-inf flags), so every rank keeps the same scale and state without a collective.
"""

from __future__ import annotations

import logging
import math
import struct
import weakref
from collections.abc import Iterable
from typing import Any

import attrs
import torch

from ...fsm import ScaleCollapseError, ScalerConfig, format_kv
from ...fsm._scaler import Anomaly, EpochSummary, ScalerMachine, SetScale
from ._finite import NonFiniteInputError, non_finite_fields

__all__ = ["GuardedGradScaler"]

LOGGER_NAME = "regulator.scaler"
_F32 = struct.Struct("f")


def _f32(value: float) -> float:
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class GuardedGradScaler(torch.amp.GradScaler):
    """A drop-in ``torch.amp.GradScaler`` whose loss scale cannot run away.

    Args:
        model: the trained model: its trainable parameter count picks the initial scale
            (R2.1), its gradients and latest output feed the anomaly diagnostics (R3.2).
            Kept by weak reference.
        device: as for ``GradScaler`` ("cuda", "cpu", ...).
        config: the lifecycle rules; ``init_scale``, ``growth_factor``, ``backoff_factor`` and
            ``growth_interval`` keyword arguments override it (``GradScaler``'s names).
        enabled: False makes it a no-op, like ``GradScaler``.
        dtype: the autocast dtype; ``torch.bfloat16`` needs no loss scaling: the scaler then
            says so once and runs disabled.
        check_inputs: also check every forward's inputs for NaN/Inf (one sync per step).
        logger: where anomalies and epoch lines go (default ``regulator.scaler``).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        device: str = "cuda",
        *,
        config: ScalerConfig | None = None,
        init_scale: float | None = None,
        growth_factor: float | None = None,
        backoff_factor: float | None = None,
        growth_interval: int | None = None,
        enabled: bool = True,
        dtype: torch.dtype = torch.float16,
        check_inputs: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        config = config if config is not None else ScalerConfig()
        overrides: dict[str, Any] = {
            name: value
            for name, value in (
                ("growth_factor", growth_factor),
                ("backoff_factor", backoff_factor),
                ("growth_interval", growth_interval),
            )
            if value is not None
        }
        if init_scale is not None:
            overrides.update(init_scale_strategy="fixed", init_scale=float(init_scale))
        if overrides:
            config = attrs.evolve(config, **overrides)
        self.config = config
        self._log = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        self.trainable_parameters = trainable_parameters(model) if model is not None else None
        initial = config.initial_scale_for(self.trainable_parameters)
        bf16 = dtype == torch.bfloat16
        super().__init__(
            device,
            init_scale=initial,
            growth_factor=config.growth_factor,
            backoff_factor=config.backoff_factor,
            growth_interval=config.growth_interval,
            enabled=enabled and not bf16,
        )
        if bf16 and enabled:
            self._log.info(
                format_kv(
                    event="bf16",
                    message="bfloat16 has float32's exponent range and needs no loss scaling;"
                    " the scaler runs disabled",
                )
            )
        self.machine = ScalerMachine(config, initial_scale=initial)
        self._mirror = _f32(initial)
        self._tracker = 0
        self._mirror_exact = True
        self.mirror_mismatches = 0
        # per iteration
        self._host_checked = 0
        self._found_inf = False
        # device-side counters for fused optimizers: [overflows, streak, halvings]
        self._device_counters: torch.Tensor | None = None
        # the model, weakly, and the latest output (a reference, no copy)
        self._model_ref: weakref.ReferenceType[torch.nn.Module] | None = None
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._last_output: Any = None
        self._warned_bf16_output = bf16
        self._check_inputs = check_inputs
        if model is not None:
            self._model_ref = weakref.ref(model)
            self._hooks.append(model.register_forward_hook(self._remember_output))
            if check_inputs:
                self._hooks.append(model.register_forward_pre_hook(self._check_forward_inputs))

    # -- hooks -------------------------------------------------------------------------
    def _remember_output(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._last_output = output
        if not self._warned_bf16_output:
            tensor = _first_tensor(output)
            if tensor is not None and tensor.dtype == torch.bfloat16:
                self._warned_bf16_output = True
                self._log.warning(
                    format_kv(
                        event="bf16",
                        message="model output is bfloat16, which needs no loss scaling;"
                        " construct the scaler with dtype=torch.bfloat16 or enabled=False",
                    )
                )

    def _check_forward_inputs(self, module: torch.nn.Module, args: Any) -> None:
        problems = non_finite_fields(args)
        if problems:
            field, nans, infs = problems[0]
            raise NonFiniteInputError(self.machine.counters.epoch_steps, field, nans, infs)

    # -- torch's hooks into the step ---------------------------------------------------------
    def _maybe_opt_step(
        self,
        optimizer: torch.optim.Optimizer,
        optimizer_state: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> float | None:
        # The same single read torch does (its only per-step sync); we keep the answer.
        found = sum(v.item() for v in optimizer_state["found_inf_per_device"].values())
        self._host_checked += 1
        if found:
            self._found_inf = True
            return None
        retval: float | None = optimizer.step(*args, **kwargs)
        return retval

    def update(self, new_scale: float | torch.Tensor | None = None) -> None:
        """Update the scale (torch's rule), then let the lifecycle react (R2.3, R2.4)."""
        if not self._enabled:
            return
        if new_scale is not None:
            super().update(new_scale)
            # An explicit scale from the caller: honour it and re-sync the mirror.
            value = new_scale if isinstance(new_scale, float) else float(new_scale.item())
            self._mirror = _f32(value)
            self.machine.counters.scale = self._mirror
            self._end_iteration()
            return
        host = self._host_checked > 0 and self._host_checked == len(self._per_optimizer_states)
        found: torch.Tensor | None = None
        if not host:
            found = self._combined_found_inf()
        super().update()
        if host:
            overflowed = self._found_inf
            self._replay(overflowed)
            actions = self.machine.step(overflowed, self._mirror)
            if actions is not None:
                self._act(actions)
        else:
            assert found is not None
            self._device_step(found)
        self._end_iteration()

    def _end_iteration(self) -> None:
        self._host_checked = 0
        self._found_inf = False

    def _replay(self, overflowed: bool) -> None:
        """torch's ``_amp_update_scale_`` on the float32 mirror."""
        if overflowed:
            self._mirror = _f32(self._mirror * self._backoff_factor)
            self._tracker = 0
            return
        self._tracker += 1
        if self._tracker >= self._growth_interval:
            grown = _f32(self._mirror * self._growth_factor)
            if math.isfinite(grown):
                self._mirror = grown
            self._tracker = 0

    def _combined_found_inf(self) -> torch.Tensor:
        scale, _ = self._check_scale_growth_tracker("update")
        found = [
            f.to(device=scale.device, non_blocking=True)
            for state in self._per_optimizer_states.values()
            for f in state["found_inf_per_device"].values()
        ]
        if not found:
            raise AssertionError("No inf checks were recorded prior to update.")
        return torch.stack(found).sum()

    def _device_step(self, found: torch.Tensor) -> None:
        """The fused-optimizer path: count, streak and halve on the device, no sync."""
        scale, _ = self._check_scale_growth_tracker("update")
        if self._device_counters is None:
            self._device_counters = torch.zeros(3, dtype=torch.float32, device=scale.device)
        counters = self._device_counters
        over = (found > 0).to(torch.float32)
        counters[0].add_(over)
        counters[1].add_(1.0).mul_(over)
        halve = (counters[1] >= self.config.overflow_halving_batches).to(torch.float32)
        scale.mul_(1.0 - 0.5 * halve).clamp_(min=self.config.min_scale)
        counters[2].add_(halve)
        counters[1].mul_(1.0 - halve)
        c = self.machine.counters
        c.steps += 1
        c.epoch_steps += 1
        self._mirror_exact = False

    # -- lifecycle actions -----------------------------------------------------------------
    def _set_scale(self, value: float) -> None:
        self._mirror = _f32(value)
        self._tracker = 0
        if self._scale is None:
            self._init_scale = value
            self._init_growth_tracker = 0
            return
        self._scale.fill_(value)
        assert self._growth_tracker is not None
        self._growth_tracker.fill_(0)  # update(new_scale=...) would not reset it

    def _act(self, actions: Iterable[Any]) -> None:
        for action in actions:
            if isinstance(action, SetScale):
                self._set_scale(action.value)
            elif isinstance(action, Anomaly):
                diagnostics = self._diagnostics(action)
                line = format_kv(**diagnostics)
                if action.kind == "collapse":
                    self._log.error(line)
                    raise ScaleCollapseError(
                        f"loss scale collapsed: {action.message}. Lower the learning rate, clip"
                        " gradients, or check the data (regulator.adapters.torch.check_finite).",
                        diagnostics,
                    )
                self._log.warning(line)

    def _grad_norm(self) -> float | None:
        model = self._model_ref() if self._model_ref is not None else None
        if model is None:
            return None
        norms = [
            torch.linalg.vector_norm(p.grad.detach().float())
            for p in model.parameters()
            if p.grad is not None
        ]
        if not norms:
            return None
        total = float(torch.linalg.vector_norm(torch.stack(norms)))
        # fused optimizers leave the gradients scaled
        return total if self._mirror_exact else total / max(self.get_scale(), 1e-30)

    def _output_stats(self) -> dict[str, Any]:
        tensor = _first_tensor(self._last_output)
        if tensor is None:
            return {"output": None}
        data = tensor.detach().float()
        finite = data[torch.isfinite(data)]
        nan = int(torch.isnan(data).sum())
        stats: dict[str, Any] = {
            "output_mean": float(finite.mean()) if finite.numel() else None,
            "output_std": float(finite.std()) if finite.numel() > 1 else None,
            "output_min": float(finite.min()) if finite.numel() else None,
            "output_max": float(finite.max()) if finite.numel() else None,
            "output_nan": nan,
            "output_inf": int(data.numel() - finite.numel() - nan),
        }
        return stats

    def _diagnostics(self, anomaly: Anomaly) -> dict[str, Any]:
        """Everything R3.2 asks for; computed only now, on an anomaly."""
        return {
            "event": anomaly.kind,
            "epoch": anomaly.epoch,
            "batch": anomaly.batch,
            "step": anomaly.step,
            "scale": self._mirror,
            "state": self.machine.state,
            "consecutive_overflows": anomaly.consecutive_overflows,
            "grad_norm": self._grad_norm(),
            **self._output_stats(),
            "message": anomaly.message,
        }

    # -- epochs ---------------------------------------------------------------------------------
    def end_epoch(self) -> dict[str, Any]:
        """Close an epoch: verify the mirror (one sync), count epochs over threshold, reset
        when due (R2.3), and log one INFO line (R2.5). Returns that line's fields."""
        if not self._enabled:
            return {"event": "epoch", "state": "disabled", "scale": 1.0}
        self._verify_mirror()
        actions = self.machine.end_epoch()
        summary = next(a for a in actions if isinstance(a, EpochSummary))
        self._act(a for a in actions if not isinstance(a, EpochSummary))
        fields = {
            "event": "epoch",
            "epoch": summary.epoch,
            "scale": self._mirror,
            "state": self.machine.state,
            "steps": summary.steps,
            "overflows": summary.overflows,
            "over_threshold_epochs": summary.over_threshold_epochs,
        }
        self._log.info(format_kv(**fields))
        return fields

    def _verify_mirror(self) -> None:
        if self._scale is None or self._growth_tracker is None:
            return  # no step yet
        parts = [self._scale.float().reshape(1), self._growth_tracker.float().reshape(1)]
        if self._device_counters is not None:
            parts.append(self._device_counters)
        values = torch.cat(parts).tolist()  # the one sync of the epoch
        device_scale, tracker = values[0], int(values[1])
        if self._device_counters is not None:
            overflows, _streak, halvings = (int(v) for v in values[2:5])
            c = self.machine.counters
            c.overflows += overflows
            c.epoch_overflows += overflows
            c.halvings += halvings
            self._device_counters[0].zero_()
            self._device_counters[2].zero_()
        elif device_scale != self._mirror or tracker != self._tracker:
            self.mirror_mismatches += 1
            self._log.error(
                format_kv(
                    event="mirror_mismatch",
                    mirror_scale=self._mirror,
                    device_scale=device_scale,
                    mirror_tracker=self._tracker,
                    device_tracker=tracker,
                    message="the host mirror of the scale diverged from the device; re-synced",
                )
            )
        self._mirror, self._tracker = device_scale, tracker
        self._mirror_exact = True
        self.machine.resync(self._mirror)

    # -- reading ---------------------------------------------------------------------------------
    def get_scale(self) -> float:
        """The current scale, from the host mirror: no device sync (fused optimizers: synced)."""
        if not self._enabled:
            return 1.0
        if self._mirror_exact:
            return self._mirror
        return float(super().get_scale())

    def _get_growth_tracker(self) -> int:
        if not self._enabled:
            return 0
        if self._mirror_exact:
            return self._tracker
        return int(super()._get_growth_tracker())

    @property
    def state(self) -> str:
        """The lifecycle state ("warmup", "stable", ...; "disabled" when not enabled)."""
        return self.machine.state if self._enabled else "disabled"

    def get_statistics(self) -> dict[str, Any]:
        """Counters and history, the names users of the old monitor read (R5.1)."""
        stats = self.machine.statistics()
        stats.update(
            current_scale=self.get_scale(),
            state=self.state,
            growth_tracker=self._get_growth_tracker(),
            trainable_parameters=self.trainable_parameters,
            mirror_mismatches=self.mirror_mismatches,
        )
        return stats

    # -- checkpoints (R5.3) ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``GradScaler.state_dict()`` plus the lifecycle under the extra key ``"regulator"``.

        A plain ``GradScaler`` loads it (it ignores extra keys).
        """
        state = super().state_dict()
        if state:
            state["regulator"] = self.machine.snapshot()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``GuardedGradScaler`` or a plain ``GradScaler`` checkpoint.

        From a plain checkpoint the lifecycle starts in ``stable`` at the saved scale.
        """
        super().load_state_dict(state_dict)
        if not self._enabled:
            return
        self._mirror = _f32(float(state_dict["scale"]))
        self._tracker = int(state_dict["_growth_tracker"])
        self._mirror_exact = True
        snapshot = state_dict.get("regulator")
        if snapshot is not None:
            self.machine = ScalerMachine.restore(snapshot, self.config)
        else:
            initial = self.machine.initial_scale
            self.machine = ScalerMachine(self.config, initial_scale=initial, _start_value="stable")
        self.machine.counters.scale = self._mirror

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for name in ("_model_ref", "_last_output"):
            state[name] = None
        state["_hooks"] = []
        return state

    def diagram(self) -> str:
        """The scaler machine as Mermaid text, the current state highlighted."""
        return format(self.machine, "mermaid")
