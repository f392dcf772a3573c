"""Lightning on the guarded scaler: epoch ends, statistics in Lightning's logger, checkpoints.

.. code-block:: python

    from lightning.pytorch import Trainer
    from lightning.pytorch.plugins import MixedPrecision
    from regulator.adapters.lightning import ScalerCallback

    scaler = GuardedGradScaler("cuda", model=model, config=ScalerConfig())
    trainer = Trainer(
        plugins=[MixedPrecision("16-mixed", "cuda", scaler=scaler)],
        callbacks=[ScalerCallback()],  # finds the plugin's scaler
    )

Lightning drives ``scale``/``unscale_``/``step``/``update`` itself and stores the scaler's
``state_dict`` (lifecycle included) under the plugin's checkpoint key; what it cannot know is
when the guard's epoch ends. The callback calls ``end_epoch()`` at every training epoch's end
(the R2.5 line, the R2.3 resets), logs the statistics through ``LightningModule.log_dict``
(so every Lightning logger gets them, under ``scaler/``), and keeps the scaler's state in its
own checkpoint entry too, so a scaler that is not the plugin's is restored as well.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl

from ..fsm._scaler import SCALER_STATES
from .torch import GuardedGradScaler

__all__ = ["ScalerCallback", "scaler_metrics"]


def scaler_metrics(scaler: GuardedGradScaler, epoch_fields: dict[str, Any]) -> dict[str, float]:
    """The numbers logged per epoch (a logger takes numbers: the state is its index in
    ``SCALER_STATES``, -1 when disabled). Read from the host mirror: no device sync."""
    stats = scaler.get_statistics()
    state = scaler.state
    return {
        "scaler/scale": float(stats["current_scale"]),
        "scaler/state": float(SCALER_STATES.index(state) if state in SCALER_STATES else -1),
        "scaler/epoch_overflows": float(epoch_fields.get("overflows", 0)),
        "scaler/overflow_count": float(stats.get("overflow_count", 0)),
        "scaler/halvings": float(stats.get("halvings", 0)),
        "scaler/resets": float(stats.get("resets", 0)),
        "scaler/collapses": float(stats.get("collapses", 0)),
        "scaler/over_threshold_epochs": float(epoch_fields.get("over_threshold_epochs", 0)),
    }


class ScalerCallback(pl.Callback):
    """Binds a Lightning ``Trainer`` to a :class:`GuardedGradScaler`.

    Args:
        scaler: the guarded scaler; None takes the one given to the ``MixedPrecision``
            plugin (``trainer.precision_plugin.scaler``) when training starts.

    .. versionadded:: 0.2.0
    """

    def __init__(self, scaler: GuardedGradScaler | None = None) -> None:
        self.scaler = scaler
        self._pending: dict[str, Any] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.scaler is None:
            found = getattr(trainer.precision_plugin, "scaler", None)
            if not isinstance(found, GuardedGradScaler):
                raise TypeError(
                    "ScalerCallback: no GuardedGradScaler given and the precision plugin has"
                    f" {type(found).__name__}; pass MixedPrecision('16-mixed', device,"
                    " scaler=GuardedGradScaler(device, model=model)) or ScalerCallback(scaler)"
                )
            self.scaler = found
        if self._pending is not None:
            self.scaler.load_state_dict(self._pending)
            self._pending = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self.scaler is not None
        fields = self.scaler.end_epoch()
        pl_module.log_dict(
            scaler_metrics(self.scaler, fields), on_step=False, on_epoch=True, logger=True
        )

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = state_dict.get("scaler")
        if not state:
            return
        if self.scaler is None:
            self._pending = state  # the plugin's scaler is known at setup
        else:
            self.scaler.load_state_dict(state)
