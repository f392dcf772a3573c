"""One Optuna worker process: ``python _optuna_worker.py OUT STORAGE STUDY N_TRIALS``.

It publishes the trials it ran (tests/_spawn.py) once its study work is done, so a crash in
an interpreter's teardown afterwards cannot fail the test, and a crash before it does.

Each trial trains a small MLP with real float16 AMP steps under ``GuardedGradScaler``; some
trials poison batches (overflows), one kind diverges into a collapse (pruned)."""

from __future__ import annotations

import os
import sys

import optuna
import torch
from _amp import amp_step, batch, mlp
from _spawn import publish
from regulator.adapters.optuna import ScalerTrial
from regulator.adapters.torch import GuardedGradScaler
from regulator.fsm import ScalerConfig


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    poison_every = trial.suggest_categorical("poison_every", [0, 3])
    model = mlp(seed=trial.number)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    config = ScalerConfig(min_scale=1.0, collapse_after=3)
    collapse = trial.number % 4 == 3  # every 4th trial diverges: always poisoned, low scale
    scaler = GuardedGradScaler(
        "cpu", model=model, config=config, init_scale=4.0 if collapse else None
    )
    with ScalerTrial(trial, scaler) as guard:
        for epoch in range(3):
            for i in range(6):
                poison = collapse or (poison_every and i % poison_every == 0)
                amp_step(model, opt, scaler, batch(seed=i), poison=bool(poison))
            with torch.no_grad():
                x, y = batch(seed=99)
                value = float(torch.nn.functional.mse_loss(model(x), y))
            guard.end_epoch(value + epoch * 0.0)
    assert guard.best is not None
    return guard.best


if __name__ == "__main__":
    out, storage, name, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=storage)
    ran: list[int] = []
    study.optimize(objective, n_trials=n, callbacks=[lambda _, trial: ran.append(trial.number)])
    publish(out, os.environ["WORKER_NAME"], {"trials": ran})
