"""Optuna on the guarded scaler: report epochs, record the scaler, prune a collapse.

.. code-block:: python

    def objective(trial):
        scaler = GuardedGradScaler("cuda", model=model, config=ScalerConfig())
        with ScalerTrial(trial, scaler) as guard:      # a collapse prunes the trial
            for epoch in range(epochs):
                train_one_epoch(...)                    # scaler.scale/step/update as usual
                guard.end_epoch(validation_loss)        # end_epoch + report + maybe prune
        return guard.best

Each epoch the scaler's statistics (state, scale, steps, overflows, halvings, resets,
collapses, epoch) are written as trial user attributes under ``scaler_``, so every trial of a
study, on any storage and any worker, keeps what its scaler did. A ``ScaleCollapseError``
(steps overflowing at ``min_scale``: the training diverges) records ``scaler_collapsed=True``
and the reason, then raises ``optuna.TrialPruned``; so does Optuna's own pruner.
"""

from __future__ import annotations

import math
from types import TracebackType
from typing import Any

import optuna

from ..fsm import ScaleCollapseError

__all__ = ["SCALER_ATTRS", "ScalerTrial", "scaler_attributes"]

#: The statistics recorded per trial (prefixed ``scaler_``).
SCALER_ATTRS = (
    "state",
    "current_scale",
    "steps",
    "overflow_count",
    "halvings",
    "resets",
    "collapses",
    "epoch",
    "initial_scale",
)


def scaler_attributes(scaler: Any) -> dict[str, Any]:
    """The scaler's statistics as JSON-ready trial attributes (host values: no device sync)."""
    stats = scaler.get_statistics()
    out: dict[str, Any] = {}
    for key in SCALER_ATTRS:
        value = stats.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        out[f"scaler_{key}"] = value
    return out


class ScalerTrial:
    """Binds an Optuna trial to a ``GuardedGradScaler`` (a context manager).

    Args:
        trial: the Optuna trial.
        scaler: the trial's ``GuardedGradScaler``.
        direction: ``"minimize"`` (default) or ``"maximize"``, for :attr:`best`.
    """

    def __init__(self, trial: optuna.Trial, scaler: Any, direction: str = "minimize") -> None:
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction: must be 'minimize' or 'maximize' (got {direction!r})")
        self.trial = trial
        self.scaler = scaler
        self.direction = direction
        self.best: float | None = None
        self.epoch = 0

    def __enter__(self) -> ScalerTrial:
        self._record()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if isinstance(exc, ScaleCollapseError):
            self._record()
            self.trial.set_user_attr("scaler_collapsed", True)
            self.trial.set_user_attr("scaler_collapse_reason", str(exc))
            # epochs counted from 1, as the demo and its report show them (Optuna's step is
            # ``epoch - 1``)
            raise optuna.TrialPruned(f"the loss scale collapsed in epoch {self.epoch + 1}: {exc}")
        if exc is None or isinstance(exc, optuna.TrialPruned):
            self._record()
        return None

    def _record(self) -> None:
        for key, value in scaler_attributes(self.scaler).items():
            self.trial.set_user_attr(key, value)

    def end_epoch(self, value: float) -> dict[str, Any]:
        """Close the scaler's epoch, record it, report ``value`` and prune when told to.

        A non-finite ``value`` is reported as pruned: the trial cannot be compared."""
        summary: dict[str, Any] = self.scaler.end_epoch()
        self._record()
        self.trial.set_user_attr("scaler_collapsed", False)
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"the objective is {value} in epoch {self.epoch + 1}")
        self.trial.report(value, self.epoch)
        if self.best is None or (
            value < self.best if self.direction == "minimize" else value > self.best
        ):
            self.best = value
        self.epoch += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned by {type(self.trial.study.pruner).__name__}")
        return summary
