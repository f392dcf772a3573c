"""The AMP loss-scale lifecycle: one declarative state machine, pure (no torch).

Rule 1: everything that decides the scaler's lifecycle lives in this file. The torch adapter
(``regulator.adapters.torch.GuardedGradScaler``) learns per step whether the step overflowed and
what torch's update rule made of the scale (a host mirror, no device sync), reports both here,
and does what the returned actions say.

Theory of operation
-------------------
States and transitions are declared once, in the ``ScalerMachine`` class body::

    warmup --calibrated--> stable                (first step that does not overflow)
    stable --exceed--> over_threshold            (scale > max_scale_threshold: one WARNING)
    over_threshold --recover--> stable           (scale back at or below the threshold)
    over_threshold --reset_scale--> reset        (the reset_after_epochs-th consecutive epoch end
                                                  over the threshold, auto_reset on)
    reset --resume--> stable                     (the next step)
    warmup | stable | over_threshold | overflow_halved --halve--> overflow_halved
                                                 (overflow_halving_batches consecutive overflows;
                                                  not from reset: a step leaves reset before it
                                                  counts its overflow, so a streak completing
                                                  right after a reset halves from stable)
    overflow_halved --settle--> stable           (the next step that does not overflow)

Per-step work never calls python-statemachine's ``send()`` (about 70 us): :meth:`step` updates
plain counters (``self.counters``, a slotted object) and compares two floats; it changes the
lifecycle only when due, and returns None on the fast path.

How a transition executes: as ``ConnectionMachine``'s, on the compiled engine of
``regulator.fsm.Machine`` (``fsm/_machine.py``) through the shared dispatch ``Machine._move``:
the event looked up for the current state, the guard (``auto_reset_enabled``) called as
``send()`` would, the new state written to python-statemachine's model field (so
``configuration``, the diagrams and the exporters see it). A subclass's callbacks and
listeners run on the engine too; ``tests/fsm/test_scaler_engine.py`` runs the engine and
``send()`` side by side.

Beyond the seed: the scale never goes below ``min_scale`` (a ``SetScale`` clamps it); when
``collapse_after`` consecutive steps overflow with the scale already at the floor, the loss is
diverging, not the scale, and the machine returns a ``collapse`` anomaly that the adapter raises
as :class:`ScaleCollapseError` (fairseq and DeepSpeed stop the same way).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal, Self

import attrs
from statemachine import State

from ._config import ScalerConfig
from ._errors import IllegalEventError
from ._machine import Machine
from ._mirror import replay_torch_update

__all__ = [
    "SCALER_STATES",
    "Anomaly",
    "EpochSummary",
    "ScalerCounters",
    "ScalerMachine",
    "SetScale",
]

#: The keyword arguments of the scaler's events (none; never changed).
_NO_KWARGS: dict[str, Any] = {}

SCALER_STATES = ("warmup", "stable", "over_threshold", "reset", "overflow_halved")
AnomalyKind = Literal["over_threshold", "reset", "overflow_halved", "collapse"]


@attrs.frozen(kw_only=True)
class SetScale:
    """Set the loss scale to ``value`` and zero torch's growth tracker."""

    value: float
    reason: str


@attrs.frozen(kw_only=True)
class Anomaly:
    """Something the operator must hear about: log a WARNING with diagnostics (R3.2).

    ``collapse`` means: raise :class:`ScaleCollapseError`.
    """

    kind: AnomalyKind
    step: int
    epoch: int
    batch: int
    scale: float
    consecutive_overflows: int
    message: str

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen(kw_only=True)
class EpochSummary:
    """The end-of-epoch record that the adapter logs at INFO (R2.5)."""

    epoch: int
    scale: float
    state: str
    steps: int
    overflows: int
    over_threshold_epochs: int


class ScalerCounters:
    """Plain per-step counters (slots: the hot path only touches these)."""

    __slots__ = (
        "collapses",
        "epoch",
        "epoch_overflows",
        "epoch_steps",
        "floor_streak",
        "halvings",
        "over_threshold_epochs",
        "overflows",
        "resets",
        "scale",
        "steps",
        "streak",
    )

    def __init__(self, scale: float) -> None:
        self.steps = 0
        self.overflows = 0
        self.streak = 0
        self.floor_streak = 0
        self.epoch = 0
        self.epoch_steps = 0
        self.epoch_overflows = 0
        self.over_threshold_epochs = 0
        self.resets = 0
        self.halvings = 0
        self.collapses = 0
        self.scale = scale

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


ScalerAction = SetScale | Anomaly


class ScalerMachine(Machine):
    """The loss-scale lifecycle (see the module header for how it works).

    Args:
        config: the rules' parameters.
        initial_scale: the scale training starts with (R2.1 picks it from the model size).

    .. versionadded:: 0.1.0
    """

    warmup = State("Warmup (calibrating)", initial=True)
    stable = State("Stable")
    over_threshold = State("Over threshold")
    reset = State("Reset")
    overflow_halved = State("Overflow halved")

    calibrated = warmup.to(stable)
    exceed = stable.to(over_threshold)
    recover = over_threshold.to(stable)
    reset_scale = over_threshold.to(reset, cond="auto_reset_enabled")
    resume = reset.to(stable)
    halve = (
        warmup.to(overflow_halved)
        | stable.to(overflow_halved)
        | over_threshold.to(overflow_halved)
        | overflow_halved.to.itself()  # type: ignore[no-untyped-call]
    )
    settle = overflow_halved.to(stable)

    # The machine never ends: training can always go on.
    validate_final_reachability = False
    validate_trap_states = False

    #: torch's update rule (R2.2) as the host mirror applies it (the torch adapter calls it;
    #: the property suite checks it against its own model).
    scale_update = staticmethod(replay_torch_update)

    def auto_reset_enabled(self) -> bool:
        return self.config.auto_reset

    def __init__(
        self,
        config: ScalerConfig | None = None,
        *,
        initial_scale: float | None = None,
        _start_value: str | None = None,
    ) -> None:
        self.config = config if config is not None else ScalerConfig()
        self.initial_scale = float(
            initial_scale if initial_scale is not None else self.config.initial_scale_for(None)
        )
        if not self.initial_scale >= self.config.min_scale:
            raise ValueError(
                f"initial_scale: must be >= min_scale {self.config.min_scale!r}"
                f" (got {self.initial_scale!r})"
            )
        self.counters = ScalerCounters(self.initial_scale)
        self._history: deque[Anomaly] = deque(maxlen=self.config.history_size)
        # Cached state name: reading current_state_value costs more than a str compare.
        self._state = _start_value or "warmup"
        if _start_value is None:
            super().__init__()
        else:
            super().__init__(start_value=_start_value)

    # -- views --------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def history(self) -> tuple[Anomaly, ...]:
        """The last ``history_size`` anomalies, oldest first."""
        return tuple(self._history)

    # -- transitions ----------------------------------------------------------------------
    def _go(self, event: str) -> None:
        # The declared transition, on the compiled engine (fsm/_machine.py) or through
        # python-statemachine's send() for a subclass the engine cannot run.
        if not self._move(event, _NO_KWARGS):
            raise IllegalEventError("ScalerMachine", event, self._state)
        self._state = self.model.state

    def replay_event(self, event: str) -> None:
        """Take the transition ``event`` through its real guard (``regulator diagram
        --events``); the counters do not move."""
        self._go(event)

    def _anomaly(self, kind: AnomalyKind, message: str) -> Anomaly:
        c = self.counters
        anomaly = Anomaly(
            kind=kind,
            step=c.steps,
            epoch=c.epoch,
            batch=max(c.epoch_steps - 1, 0),
            scale=c.scale,
            consecutive_overflows=c.streak,
            message=message,
        )
        self._history.append(anomaly)
        return anomaly

    # -- the hot path -------------------------------------------------------------------
    def step(self, overflowed: bool, scale: float) -> tuple[ScalerAction, ...] | None:
        """One optimizer step happened; ``scale`` is the scale after torch's own update.

        Returns None when nothing but counters changed (the common case), else the actions.
        """
        c = self.counters
        cfg = self.config
        previous = c.scale
        c.steps += 1
        c.epoch_steps += 1
        c.scale = scale
        if self._state == "reset":
            self._go("resume")
        if overflowed:
            c.overflows += 1
            c.epoch_overflows += 1
            c.streak += 1
            c.floor_streak = c.floor_streak + 1 if previous <= cfg.min_scale else 0
            if c.streak >= cfg.overflow_halving_batches or scale < cfg.min_scale:
                return self._overflow_actions(scale)
            if c.floor_streak >= cfg.collapse_after:
                return self._collapse()
            if self._state == "over_threshold" and scale <= cfg.max_scale_threshold:
                self._go("recover")
            return None
        c.streak = 0
        c.floor_streak = 0
        state = self._state
        if state == "stable":
            if scale > cfg.max_scale_threshold:
                return self._exceed()
            return None
        if state == "over_threshold":
            if scale <= cfg.max_scale_threshold:
                self._go("recover")
            return None
        if state == "warmup":
            self._go("calibrated")
        elif state == "overflow_halved":
            self._go("settle")
        if scale > cfg.max_scale_threshold:
            return self._exceed()
        return None

    def _exceed(self) -> tuple[ScalerAction, ...]:
        self._go("exceed")
        cfg = self.config
        return (
            self._anomaly(
                "over_threshold",
                f"scale {self.counters.scale:g} exceeds max_scale_threshold"
                f" {cfg.max_scale_threshold:g}",
            ),
        )

    def _overflow_actions(self, scale: float) -> tuple[ScalerAction, ...]:
        c = self.counters
        cfg = self.config
        actions: list[ScalerAction] = []
        if c.streak >= cfg.overflow_halving_batches:
            new = max(scale * 0.5, cfg.min_scale)
            streak = c.streak
            self._go("halve")
            c.halvings += 1
            c.scale = new
            actions.append(SetScale(value=new, reason="overflow_halved"))
            actions.append(
                self._anomaly(
                    "overflow_halved",
                    f"{streak} consecutive overflowing steps: scale halved again to {new:g}",
                )
            )
            c.streak = 0
        elif scale < cfg.min_scale:
            c.scale = cfg.min_scale
            actions.append(SetScale(value=cfg.min_scale, reason="min_scale"))
        if c.floor_streak >= cfg.collapse_after:
            actions += self._collapse()
        elif self._state == "over_threshold" and c.scale <= cfg.max_scale_threshold:
            self._go("recover")
        return tuple(actions)

    def _collapse(self) -> tuple[ScalerAction, ...]:
        c = self.counters
        streak = c.floor_streak
        c.collapses += 1
        c.floor_streak = 0
        return (
            self._anomaly(
                "collapse",
                f"{streak} consecutive steps overflowed with the scale at min_scale"
                f" {self.config.min_scale:g}: the loss or gradients are diverging",
            ),
        )

    # -- epochs ---------------------------------------------------------------------------
    def end_epoch(self) -> tuple[EpochSummary | ScalerAction, ...]:
        """An epoch ended: count epochs over the threshold, reset when due (R2.3, R2.5)."""
        c = self.counters
        cfg = self.config
        actions: list[EpochSummary | ScalerAction] = []
        if self._state == "over_threshold":
            c.over_threshold_epochs += 1
            if c.over_threshold_epochs >= cfg.reset_after_epochs and cfg.auto_reset:
                old = c.scale
                new = self.reset_target()
                self._go("reset_scale")
                c.resets += 1
                c.scale = new
                c.over_threshold_epochs = 0
                actions.append(SetScale(value=new, reason="reset"))
                actions.append(
                    self._anomaly(
                        "reset",
                        f"scale {old:g} over max_scale_threshold {cfg.max_scale_threshold:g}"
                        f" for {cfg.reset_after_epochs} epochs: reset to {new:g}"
                        f" ({cfg.reset_fraction:g} x min(initial {self.initial_scale:g},"
                        f" threshold {cfg.max_scale_threshold:g}))",
                    )
                )
        else:
            c.over_threshold_epochs = 0
        actions.insert(
            0,
            EpochSummary(
                epoch=c.epoch,
                scale=c.scale,
                state=self._state,
                steps=c.epoch_steps,
                overflows=c.epoch_overflows,
                over_threshold_epochs=c.over_threshold_epochs,
            ),
        )
        c.epoch += 1
        c.epoch_steps = 0
        c.epoch_overflows = 0
        return tuple(actions)

    def reset_target(self) -> float:
        """Where an R2.3 reset puts the scale.

        R2.3 says "50 % of the initial scale"; its intent is a scale back under the threshold.
        So the target is ``reset_fraction`` x the initial scale, capped at ``reset_fraction`` x
        ``max_scale_threshold`` (a run started at 2^40 would otherwise "reset" to 2^39, over
        the threshold for ever), never above the current scale, and never below ``min_scale``.
        """
        cfg = self.config
        cap = cfg.reset_fraction * min(self.initial_scale, cfg.max_scale_threshold)
        return max(min(cap, self.counters.scale), cfg.min_scale)

    def resync(self, scale: float) -> None:
        """The device says the scale is ``scale`` (epoch-end check, fused optimizers)."""
        c = self.counters
        c.scale = scale
        if self._state == "stable" and scale > self.config.max_scale_threshold:
            self._exceed()
        elif self._state == "over_threshold" and scale <= self.config.max_scale_threshold:
            self._go("recover")

    # -- persistence ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The lifecycle as a plain dict (checkpoint-safe: only str/int/float/bool/list/dict)."""
        return {
            "version": 1,
            "state": self._state,
            "initial_scale": self.initial_scale,
            "counters": self.counters.as_dict(),
            "history": [a.as_dict() for a in self._history],
        }

    @classmethod
    def restore(cls, snapshot: dict[str, Any], config: ScalerConfig | None = None) -> Self:
        if snapshot.get("version") != 1:
            raise ValueError(f"snapshot.version: must be 1 (got {snapshot.get('version')!r})")
        state = snapshot.get("state")
        if state not in SCALER_STATES:
            raise ValueError(f"snapshot.state: must be one of {SCALER_STATES} (got {state!r})")
        machine = cls(config, initial_scale=snapshot["initial_scale"], _start_value=state)
        for name, value in snapshot["counters"].items():
            setattr(machine.counters, name, value)
        for record in snapshot["history"]:
            machine._history.append(Anomaly(**record))
        return machine

    def statistics(self) -> dict[str, Any]:
        c = self.counters
        return {
            "current_scale": c.scale,
            "initial_scale": self.initial_scale,
            "state": self._state,
            "overflow_count": c.overflows,
            "consecutive_overflows": c.streak,
            "steps": c.steps,
            "epoch": c.epoch,
            "epoch_steps": c.epoch_steps,
            "epoch_overflows": c.epoch_overflows,
            "over_threshold_epochs": c.over_threshold_epochs,
            "resets": c.resets,
            "halvings": c.halvings,
            "collapses": c.collapses,
            "history": [a.as_dict() for a in self._history],
        }
