"""ScalerCallback with a real Lightning Trainer on the CPU: float16 autocast through
``MixedPrecision("16-mixed", "cpu", scaler=...)``, epoch ends, logged statistics, resume."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from _amp import mlp
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import MixedPrecision
from regulator.adapters.lightning import ScalerCallback
from regulator.adapters.torch import GuardedGradScaler
from regulator.fsm import ScalerConfig

pytestmark = [
    # Lightning's own advice on a tiny CPU run (workers, log intervals): not ours to fix
    pytest.mark.filterwarnings("ignore::UserWarning:lightning"),
    pytest.mark.filterwarnings("ignore::UserWarning:lightning_utilities"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]
POISONED = {5, 6, 7, 8, 9}  # global steps whose loss overflows: five in a row


class Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = mlp()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self(x), y)
        if self.trainer.global_step in POISONED:
            loss = loss * float("inf")
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e-3)


def _data() -> torch.utils.data.DataLoader[Any]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 8, generator=g), torch.randn(64, 1, generator=g)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)


def _trainer(tmp_path: Path, scaler: GuardedGradScaler, epochs: int) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        callbacks=[ScalerCallback(), ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)],
        logger=CSVLogger(tmp_path / "logs", name="run", version=0),
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )


def _config() -> ScalerConfig:
    return ScalerConfig(growth_interval=3, max_scale_threshold=70_000.0)


@pytest.mark.spec("R2.4")
@pytest.mark.spec("R2.5")
@pytest.mark.spec("R5.3")
def test_a_trainer_drives_the_guard_logs_it_and_resumes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "regulator.scaler")
    module = Module()
    scaler = GuardedGradScaler("cpu", model=module, config=_config())
    _trainer(tmp_path, scaler, epochs=3).fit(module, _data())
    stats = scaler.get_statistics()
    assert (stats["steps"], stats["epoch"], stats["overflow_count"]) == (12, 3, 5)
    assert stats["halvings"] == 1  # the fifth overflow in a row (R2.4)
    epoch_lines = [r for r in caplog.records if r.getMessage().startswith("event=epoch ")]
    assert len(epoch_lines) == 3  # one per epoch end, from the callback (R2.5)
    with (tmp_path / "logs" / "run" / "version_0" / "metrics.csv").open() as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("scaler/scale")]
    assert len(rows) == 3
    assert float(rows[-1]["scaler/scale"]) == scaler.get_scale()
    assert [float(r["scaler/epoch_overflows"]) for r in rows] == [0.0, 3.0, 2.0]

    expected = (scaler.state, scaler.get_scale(), stats["steps"], stats["halvings"])
    resumed_module = Module()
    resumed = GuardedGradScaler("cpu", model=resumed_module, config=_config())
    trainer = _trainer(tmp_path / "again", resumed, epochs=3)
    trainer.fit(resumed_module, _data(), ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    stats = resumed.get_statistics()
    assert (resumed.state, resumed.get_scale(), stats["steps"], stats["halvings"]) == expected
    assert stats["epoch"] == 3
