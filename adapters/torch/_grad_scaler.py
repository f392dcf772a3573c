"""``GuardedGradScaler``: torch's AMP ``GradScaler`` bound to :class:`ScalerMachine`.

How it stays free of extra host-device syncs (the per-step cost is plain float arithmetic):

* **Overflow, per step, for free.** torch's ``_maybe_opt_step`` already reads the found-inf
  flags (``.item()``, its one sync per step) to decide whether to skip ``optimizer.step()``.
  The override below does exactly that and keeps the answer.
* **The scale, per step, without reading it.** A float32 host mirror replays torch's update
  rule (backoff on overflow; growth after ``growth_interval`` clean steps if finite), so
  ``get_scale()``, the threshold checks and ``state_dict()`` never touch the device.
* **Steps the host cannot see** (fused optimizers, which never call ``_maybe_opt_step``, and
  an ``unscale_()`` whose ``step()`` was skipped): the extra halving and the floor run on the
  device, and the per-step found-inf flags are kept there (``_device_steps.py``). The first
  read of the lifecycle (``state``, ``machine``, ``get_scale()``, statistics, ``end_epoch()``,
  ``state_dict()``; or the next host step, merged into torch's own read) folds them in with
  one read and replays them through the same machine steps (``_unseen.py``), so the
  lifecycle does not depend on how the optimizer steps.
* **Little host work in the common step.** Stable and clean on the host path, or any unseen
  step: ``update()`` takes a short path (torch's update kernel on the one flag, counters or
  the ledger's two ops), and the fused found-inf check makes none of the four tensors torch
  makes for it each step (its flag is the ledger's slot), so a guarded fused step issues fewer
  ops than a plain one (``docs/scaler.md``).
* **Verified once per epoch.** ``end_epoch()`` reads the device scale and growth tracker in one
  sync, logs a mismatch loudly at ERROR, and re-syncs the mirror.

What the guard logs (anomaly lines with their R3.2 diagnostics, forward notes) is built in
``_diagnostics.py``. Decisions use only facts every DDP rank shares (all-reduced gradients
give every rank the same found-inf flags), so every rank keeps the same scale and state
without a collective.
"""

from __future__ import annotations

import logging
import weakref
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import attrs
import torch
from torch.amp.grad_scaler import _refresh_per_optimizer_state

from ...fsm import ScaleCollapseError, ScalerConfig, format_kv, load_config
from ...fsm._diagram import mermaid
from ...fsm._mirror import f32 as _f32
from ...fsm._scaler import Anomaly, EpochSummary, ScalerMachine, SetScale
from . import _defaults as default
from . import _diagnostics, _fused_check, _unseen
from ._checkpoint import read_checkpoint
from ._device_steps import DeviceSteps
from ._hooks import OutputProbe

__all__ = ["GuardedGradScaler", "trainable_parameters"]

LOGGER_NAME = "regulator.scaler"
_TORCH_NUMBERS = ("growth_factor", "backoff_factor", "growth_interval")


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class GuardedGradScaler(torch.amp.GradScaler):
    """A drop-in ``torch.amp.GradScaler`` whose loss scale cannot run away.

    The positional arguments are torch's, with torch's meaning: every call that works with
    ``torch.amp.GradScaler`` works unchanged. What the guard adds is keyword-only.

    Args:
        device: as for ``GradScaler`` ("cuda", "cpu", ...).
        init_scale, growth_factor, backoff_factor, growth_interval: torch's numbers. Passed
            explicitly they win over the config (validated as torch validates them, and then
            by the config's rules); left out, the config decides (R2.2: growth 1.2 every 2000
            steps). The lifecycle rules (threshold, resets, extra halving, floor) apply either
            way.
        enabled: False makes it a no-op, like ``GradScaler`` (nothing is validated then).
        model: the trained model. Its trainable parameter count picks the initial scale
            (R2.1; without a model the initial scale is the config's ``init_scale``) and its
            gradients and latest output feed the anomaly diagnostics (R3.2). Held weakly; the
            hooks put on it hold the scaler weakly too, so ``copy.deepcopy(model)`` and
            ``torch.save(model)`` work at any point of a step and a saved model does not
            reference regulator.
        config: the lifecycle rules; default ``load_config().scaler``: the file named by
            ``REGULATOR_CONFIG`` and the environment (R4.3, R5.4).
        dtype: the autocast dtype; ``torch.bfloat16`` needs no loss scaling: the scaler then
            says so once and runs disabled.
        check_inputs: check every forward's positional and keyword inputs for NaN/Inf (one
            sync per forward; needs ``model``); under fp16 autocast, values beyond float16's
            range (> 65504) are reported once per field at WARNING.
        logger: where anomalies and epoch lines go (default ``regulator.scaler``).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0 torch's positional order; ``model`` is keyword-only.
    """

    #: torch's update is its kernel on one flag (a subclass whose base updates otherwise,
    #: FSDP's on a CPU scale, says False: its ``update()`` and found-inf check are used as is)
    _own_update = True

    def __init__(
        self,
        device: str = "cuda",
        init_scale: float | None = default.INIT_SCALE,
        growth_factor: float | None = default.GROWTH_FACTOR,
        backoff_factor: float | None = default.BACKOFF_FACTOR,
        growth_interval: int | None = default.GROWTH_INTERVAL,
        enabled: bool = True,
        *,
        model: torch.nn.Module | None = None,
        config: ScalerConfig | None = None,
        dtype: torch.dtype = torch.float16,
        check_inputs: bool = False,
        logger: logging.Logger | None = None,
    ) -> None:
        if isinstance(device, torch.nn.Module):
            raise TypeError(
                "device: got a model; the first positional argument is the device, as for"
                ' torch.amp.GradScaler: write GuardedGradScaler("cuda", model=model)'
            )
        if model is not None and not isinstance(model, torch.nn.Module):
            raise TypeError(
                f"model: must be a torch.nn.Module (got {type(model).__name__}); the first"
                " positional argument is the device, as for torch.amp.GradScaler: write"
                ' GuardedGradScaler("cuda", model=model)'
            )
        base = config if config is not None else load_config().scaler
        explicit: dict[str, Any] = {
            name: value
            for name, value in (
                ("growth_factor", growth_factor),
                ("backoff_factor", backoff_factor),
                ("growth_interval", growth_interval),
            )
            if not default.is_default(value)
        }
        self._log = logger if logger is not None else logging.getLogger(LOGGER_NAME)
        self.trainable_parameters = trainable_parameters(model) if model is not None else None
        initial: float = (
            base.initial_scale_for(self.trainable_parameters)
            if init_scale is None or default.is_default(init_scale)
            else init_scale
        )
        bf16 = dtype == torch.bfloat16
        # torch validates (growth > 1, backoff < 1, only when enabled) and picks the device
        super().__init__(
            device,
            init_scale=initial,
            growth_factor=explicit.get("growth_factor", base.growth_factor),
            backoff_factor=explicit.get("backoff_factor", base.backoff_factor),
            growth_interval=explicit.get("growth_interval", base.growth_interval),
            enabled=enabled and not bf16,
        )
        if not default.is_default(init_scale):
            explicit.update(init_scale_strategy="fixed", init_scale=init_scale)
        # Then the config's rules, on what torch accepted (a disabled scaler checks nothing).
        self.config = attrs.evolve(base, **explicit) if explicit and self._enabled else base
        initial = float(initial) if self._enabled else self.config.initial_scale_for(None)
        if bf16 and enabled:
            self._log.info(
                format_kv(
                    event="bf16",
                    message="bfloat16 has float32's exponent range and needs no loss scaling;"
                    " the scaler runs disabled",
                )
            )
        self._machine = ScalerMachine(self.config, initial_scale=initial)
        self._mirror = _f32(initial)
        self._tracker = 0
        self._mirror_exact = True
        self.mirror_mismatches = 0
        # per iteration
        self._host_checked = 0
        self._found_inf = False
        # steps the host does not see (fused optimizers, a skipped step()): see _device_steps
        self._ledger = DeviceSteps()
        # probe.output when the latest device step updated, if its forward ran with the hook
        # on (a new forward replaces it)
        self._output_at_update: object = None
        self._output_seen = False
        self._warned_bf16_output = bf16
        self._fp16_fields_warned: set[str] = set()
        self._model_ref = None if model is None else weakref.ref(model)
        self._probe: OutputProbe | None = None
        if model is not None and (self._enabled or check_inputs):
            self._probe = OutputProbe(self, model, check_inputs)
        if self._probe is not None and self._enabled:
            self._probe.attach()  # on until the first output tells a bf16 model apart
        self._probe_wanted = True
        self._fast = False  # armed by _settle() once the lifecycle is in its common state
        self._device_fast = False  # the same, for steps only the device sees (fused)
        # fused optimizers' found-inf check without per-step allocations (_check_inf_per_device)
        self._unit_inv_scale: torch.Tensor | None = None
        self._scale_device: torch.device | None = None  # set with the scale (lazily, by torch)

    # -- what the hooks report (they hold the scaler weakly; see _hooks.py) -------------------
    def _reject_input(self, field: str, nans: int, infs: int) -> None:
        _diagnostics.reject_input(self, field, nans, infs)

    def _note_fp16_overflow(self, field: str) -> None:
        _diagnostics.note_fp16_overflow(self, field)

    def scale(self, outputs: Any) -> Any:
        """torch's ``scale``; first, what the forward hooks left (see ``_hooks.py``)."""
        probe = self._probe
        if probe is not None and (probe.held is not None or probe.pending):
            _diagnostics.take_forward(self, probe)
        return super().scale(outputs)

    # -- torch's hooks into the step ---------------------------------------------------------
    def _maybe_opt_step(
        self,
        optimizer: torch.optim.Optimizer,
        optimizer_state: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> float | None:
        found_infs = optimizer_state["found_inf_per_device"].values()
        if self._mirror_exact:
            # The same single read torch does (its only per-step sync); we keep the answer.
            found = sum(v.item() for v in found_infs)
        else:
            found = self._fold(list(found_infs))  # unseen steps folded in: still one read
        self._host_checked += 1
        if found:
            self._found_inf = True
            return None
        retval: float | None = optimizer.step(*args, **kwargs)
        return retval

    def _check_inf_per_device(self, optimizer: torch.optim.Optimizer) -> dict[Any, Any]:
        """torch's found-inf check for fused optimizers, without the four tensors torch makes
        for it each step; its flag is the ledger's slot (``_fused_check.py``)."""
        if not self._own_update:
            return super()._check_inf_per_device(optimizer)
        return _fused_check.check_inf_per_device(self, optimizer)

    def _lazy_init_scale_growth_tracker(self, dev: torch.device) -> None:
        super()._lazy_init_scale_growth_tracker(dev)
        assert self._scale is not None
        self._scale_device = self._scale.device

    def _single_found(self) -> torch.Tensor | None:
        """The iteration's one found-inf flag when there is exactly one (one optimizer, one
        device, on the scale's): torch's update then needs neither a sum nor a copy."""
        states = self._per_optimizer_states
        if len(states) != 1:
            return None
        for state in states.values():
            per_device = state["found_inf_per_device"]
            if len(per_device) == 1:
                for found in per_device.values():
                    return found if found.device == self._scale_device else None
        return None

    def _torch_update(self, found: torch.Tensor) -> None:
        """torch's ``update()`` for one found-inf flag on the scale's device: its kernel and
        a fresh per-optimizer state (the same-device ``.to()`` left out)."""
        torch._amp_update_scale_(
            self._scale,  # type: ignore[arg-type]
            self._growth_tracker,  # type: ignore[arg-type]
            found,
            self._growth_factor,
            self._backoff_factor,
            self._growth_interval,
        )
        self._per_optimizer_states = defaultdict(_refresh_per_optimizer_state)

    def update(self, new_scale: float | torch.Tensor | None = None) -> None:
        """Update the scale (torch's rule), then let the lifecycle react (R2.3, R2.4)."""
        if self._fast and new_scale is None and not self._found_inf:
            # The common host step (stable, clean, no growth due, nothing to watch; _fast is
            # armed only when enabled): torch's update plus three counters, as the general
            # path below would do them.
            checked = self._host_checked
            tracker = self._tracker + 1
            if (
                checked
                and checked == len(self._per_optimizer_states)
                and tracker + 1 < self._growth_interval
            ):
                found = self._single_found() if self._own_update else None
                if found is not None:
                    self._torch_update(found)
                else:
                    super().update()
                self._host_checked = 0
                self._tracker = tracker
                counters = self._machine.counters
                counters.steps += 1
                counters.epoch_steps += 1
                return
        elif self._device_fast and new_scale is None and not self._host_checked:
            # The common unseen step (fused optimizer; _device_fast is armed by _settle() only
            # when nothing but the ledger has work): torch's update, then the ledger's two ops.
            found = self._single_found() if self._own_update else None
            if found is not None:
                self._torch_update(found)
                probe = self._probe
                self._output_at_update = (
                    probe.output if probe is not None and self._output_seen else None
                )
                self._output_seen = False
                if self._ledger.step(self._scale, found, self._backoff_factor):  # type: ignore[arg-type]
                    self._fold()  # the bound on what is kept: one sync per LIMIT unseen steps
                return
        if not self._enabled:
            return
        if new_scale is not None:
            self._catch_up()
            self._ledger.drop()  # a flag slot handed to this iteration's check goes unused
            super().update(new_scale)
            # An explicit scale from the caller: honour it and re-sync the mirror.
            value = new_scale if isinstance(new_scale, float) else float(new_scale.item())
            self._mirror = _f32(value)
            self._machine.counters.scale = self._mirror
            self._host_checked = 0
            self._found_inf = False
            self._settle()
            return
        host = self._host_checked > 0 and self._host_checked == len(self._per_optimizer_states)
        combined: torch.Tensor | None = None if host else _unseen.combined_found_inf(self)
        super().update()
        self._host_checked = 0
        if host:
            self._ledger.drop()  # (only a caller's own _check_inf_per_device hands one out)
            overflowed = self._found_inf
            self._found_inf = False
            self._replay(overflowed)
            actions = self._machine.step(overflowed, self._mirror)
            if actions is not None:
                self._act(actions)
        else:
            assert combined is not None
            self._found_inf = False
            self._device_step(combined)
        self._settle()

    def _settle(self) -> None:
        """After anything but the common step: steer the output hook, arm the fast path.

        The output hook is on only while the next step may bring an anomaly: a forward hook
        costs every forward torch's slow module-call path (about 1.5 us), and in the common case
        (stable, no overflow streak, no growth over the threshold due) nothing needs it.
        """
        c = self._machine.counters
        self._fast = (
            self._machine.state == "stable"
            and self._mirror_exact
            and c.streak == 0
            and c.floor_streak == 0
            and self._mirror <= self.config.max_scale_threshold
        )
        probe = self._probe
        if probe is None:
            self._device_fast = not self._mirror_exact and self._ledger.count > 0
            return
        cfg = self.config
        if not self._mirror_exact:
            # Steps only the device saw (fused, a skipped step()): the host cannot tell whether
            # the next one brings an anomaly, and a line replayed later describes no output
            # anyway (it says so, R3.2). So the hook stays off (it costs every forward), but
            # for the dtype check; a read after a step folds it in and decides as below.
            wanted = not probe.output_dtype_seen
        else:
            wanted = (
                self._machine.state != "stable"  # warmup, over threshold (a reset may come)
                or self._machine.counters.streak + 1 >= cfg.overflow_halving_batches
                or self._mirror <= cfg.min_scale  # a collapse may come
                or (  # the next clean step grows the scale over the threshold
                    self._tracker + 1 == self._growth_interval
                    and self._mirror * self._growth_factor > cfg.max_scale_threshold
                )
                or not probe.output_dtype_seen
            )
        self._fast = self._fast and not wanted
        self._device_fast = not self._mirror_exact and not wanted and self._ledger.count > 0
        if wanted != self._probe_wanted:
            self._probe_wanted = wanted
            if wanted:
                probe.attach()
            else:
                probe.detach()

    def _replay(self, overflowed: bool) -> None:
        """torch's ``_amp_update_scale_`` on the float32 mirror: the machine's rule
        (``ScalerMachine.scale_update``, pure), with torch's current numbers (a caller's
        ``set_growth_factor()`` and the like are followed)."""
        self._mirror, self._tracker = self._machine.scale_update(
            self._mirror,
            self._tracker,
            overflowed,
            self._growth_factor,
            self._backoff_factor,
            self._growth_interval,
        )

    # -- steps only the device saw (_unseen.py) ---------------------------------------------
    def _device_step(self, found: torch.Tensor) -> None:
        """A step the host did not see: halve and floor on the device, keep the flag; no sync."""
        _unseen.device_step(self, found)

    def _fold(self, extra: list[torch.Tensor] | None = None) -> float:
        """Fold the unseen steps in (one read), replay them; returns ``extra``'s sum."""
        return _unseen.fold(self, extra or [])

    def _catch_up(self) -> None:
        """Before anything reads the lifecycle: fold unseen steps in (a sync, as torch's
        ``get_scale()``); nothing when there are none."""
        if self._ledger.count:
            self._fold()

    # -- lifecycle actions -----------------------------------------------------------------
    def _set_scale(self, value: float, *, device: bool = True) -> None:
        self._mirror = _f32(value)
        self._tracker = 0
        if not device:
            return  # a replayed step: the device already did it (_device_steps.py)
        if self._scale is None:
            self._init_scale = value
            self._init_growth_tracker = 0
            return
        self._scale.fill_(value)
        assert self._growth_tracker is not None
        self._growth_tracker.fill_(0)  # update(new_scale=...) would not reset it

    def _act(
        self, actions: Iterable[Any], *, device_done: bool = False, late: int | None = None
    ) -> None:
        """Do what the machine says. ``device_done``: a replayed step, whose scale the device
        already set; ``late``: logged that many steps after the step it describes."""
        for action in actions:
            if isinstance(action, SetScale):
                self._set_scale(action.value, device=not device_done)
            elif isinstance(action, Anomaly):
                diagnostics = _diagnostics.anomaly_fields(self, action, late)
                line = format_kv(**diagnostics)
                if action.kind == "collapse":
                    self._log.error(line)
                    raise ScaleCollapseError(
                        f"loss scale collapsed: {action.message}. Lower the learning rate, clip"
                        " gradients, or check the data (regulator.adapters.torch.check_finite).",
                        diagnostics,
                    )
                self._log.warning(line)

    # -- epochs ---------------------------------------------------------------------------------
    def end_epoch(self) -> dict[str, Any]:
        """Close an epoch: verify the mirror (one sync), count epochs over threshold, reset
        when due (R2.3), and log one INFO line (R2.5). Returns that line's fields."""
        if not self._enabled:
            return {"event": "epoch", "state": "disabled", "scale": 1.0}
        self._verify_mirror()
        actions = self._machine.end_epoch()
        summary = next(a for a in actions if isinstance(a, EpochSummary))
        self._act(a for a in actions if not isinstance(a, EpochSummary))
        fields = {
            "event": "epoch",
            "epoch": summary.epoch,
            "scale": self._mirror,
            "state": self._machine.state,
            "steps": summary.steps,
            "overflows": summary.overflows,
            "over_threshold_epochs": summary.over_threshold_epochs,
        }
        self._log.info(format_kv(**fields))
        self._settle()
        return fields

    def _verify_mirror(self) -> None:
        """The one sync of the epoch: unseen steps folded in, the mirror checked."""
        if self._scale is None or self._growth_tracker is None:
            return  # no step yet
        if self._ledger.count:
            self._fold()
            return
        values = _unseen.read_device(self, [])
        _unseen.adopt(self, values[0], int(values[1]))

    # -- reading ---------------------------------------------------------------------------------
    def get_scale(self) -> float:
        """The current scale: the host mirror, no device sync (after device steps: synced)."""
        if not self._enabled:
            return 1.0
        self._catch_up()
        return self._mirror

    def _get_growth_tracker(self) -> int:
        if not self._enabled:
            return 0
        self._catch_up()
        return self._tracker

    @property
    def state(self) -> str:
        """The lifecycle state ("warmup", "stable", ...; "disabled" when not enabled).

        After steps only the device saw (fused optimizers, a skipped ``step()``), reading it
        folds them in first: one sync, as torch's ``get_scale()``."""
        if not self._enabled:
            return "disabled"
        self._catch_up()
        return self._machine.state

    @property
    def machine(self) -> ScalerMachine:
        """The lifecycle machine, caught up with every step (see :attr:`state`)."""
        if self._enabled:
            self._catch_up()
        return self._machine

    @machine.setter
    def machine(self, machine: ScalerMachine) -> None:
        self._machine = machine

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
        self._catch_up()
        state = super().state_dict()
        if state:
            state["regulator"] = self._machine.snapshot()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``GuardedGradScaler`` or a plain ``GradScaler`` checkpoint.

        Everything is checked first; a bad checkpoint (a scale that is NaN, inf, <= 0 or not
        representable in float32, a missing key, a wrong type) raises
        :class:`InvalidCheckpointError` naming the key and value, and changes nothing.

        A guarded checkpoint restores torch's numbers and the lifecycle. A plain one gives the
        scale and growth tracker; the configured growth factor, backoff and growth interval
        (R2.2) stay in force (one INFO line says so), and the lifecycle starts in ``stable``.
        """
        if not self._enabled:
            return  # as torch: a disabled scaler ignores checkpoints
        loaded = read_checkpoint(state_dict, self.config)
        super().load_state_dict({**state_dict, **loaded.torch_numbers})
        self.config = loaded.config
        self._mirror = loaded.scale
        self._tracker = loaded.growth_tracker
        self._mirror_exact = True
        self._host_checked = 0
        self._found_inf = False
        self._ledger.clear()  # steps before the load are the loaded checkpoint's business
        if loaded.machine is not None:
            self._machine = loaded.machine
        else:
            self._machine = ScalerMachine(
                self.config, initial_scale=self._machine.initial_scale, _start_value="stable"
            )
            ignored = {
                k: state_dict[k] for k in _TORCH_NUMBERS if state_dict[k] != getattr(self, f"_{k}")
            }
            self._log.info(
                format_kv(
                    event="plain_checkpoint",
                    scale=self._mirror,
                    growth_tracker=self._tracker,
                    **{f"kept_{k}": getattr(self, f"_{k}") for k in _TORCH_NUMBERS},
                    message="a plain GradScaler checkpoint: its scale and growth tracker are"
                    " loaded; the configured growth_factor, backoff_factor and growth_interval"
                    f" (R2.2) stay in force{' over ' + str(ignored) if ignored else ''}",
                )
            )
        self._machine.counters.scale = self._mirror
        self._settle()

    def __getstate__(self) -> dict[str, Any]:
        self._catch_up()  # kept flags are device tensors: folded, not pickled
        state = super().__getstate__()
        state["_model_ref"] = None
        state["_probe"] = None
        state["_unit_inv_scale"] = None  # remade on the first fused step
        return state

    def diagram(self) -> str:
        """The scaler machine as Mermaid text, the current state highlighted."""
        return mermaid(self.machine)
