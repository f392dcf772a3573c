"""regulator.adapters.optuna: epochs reported, scaler statistics recorded, collapses pruned;
two worker processes sharing one SQLite study."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from _amp import amp_step, batch, mlp
from _spawn import run_scripts
from regulator.adapters.optuna import SCALER_ATTRS, ScalerTrial
from regulator.adapters.torch import GuardedGradScaler
from regulator.fsm import ScalerConfig

HERE = Path(__file__).parent


def study(tmp_path: Path, name: str = "s") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=name, storage=f"sqlite:///{tmp_path / 'study.db'}", direction="minimize"
    )


def train(trial: optuna.Trial, *, poison: bool, init_scale: float | None = None) -> float:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    config = ScalerConfig(min_scale=1.0, collapse_after=3)
    scaler = GuardedGradScaler("cpu", model=model, config=config, init_scale=init_scale)
    with ScalerTrial(trial, scaler) as guard:
        for epoch in range(2):
            for i in range(5):
                amp_step(model, opt, scaler, batch(seed=i), poison=poison)
            guard.end_epoch(1.0 / (epoch + 1))
    assert guard.best is not None
    return guard.best


@pytest.mark.spec("R2.1")
def test_each_epoch_is_reported_and_the_scaler_recorded(tmp_path: Path) -> None:
    s = study(tmp_path)
    s.optimize(lambda t: train(t, poison=False), n_trials=1)
    trial = s.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == 0.5
    assert trial.intermediate_values == {0: 1.0, 1: 0.5}
    attrs: dict[str, Any] = trial.user_attrs
    assert {f"scaler_{k}" for k in SCALER_ATTRS} <= set(attrs)
    assert attrs["scaler_steps"] == 10 and attrs["scaler_epoch"] == 2
    assert attrs["scaler_current_scale"] == 65536.0 and attrs["scaler_collapsed"] is False
    assert attrs["scaler_initial_scale"] == 2.0**16  # under 1M parameters (R2.1)


def test_a_collapsing_scaler_prunes_the_trial_and_says_why(tmp_path: Path) -> None:
    s = study(tmp_path)
    s.optimize(lambda t: train(t, poison=True, init_scale=4.0), n_trials=1)
    trial = s.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["scaler_collapsed"] is True
    assert "collapsed" in trial.user_attrs["scaler_collapse_reason"]
    assert trial.user_attrs["scaler_collapses"] == 1
    assert trial.user_attrs["scaler_current_scale"] == 1.0


def test_a_non_finite_objective_is_pruned(tmp_path: Path) -> None:
    s = study(tmp_path)

    def objective(trial: optuna.Trial) -> float:
        model = mlp()
        scaler = GuardedGradScaler("cpu", model=model)
        with ScalerTrial(trial, scaler) as guard:
            guard.end_epoch(float("nan"))
        return 0.0

    s.optimize(objective, n_trials=1)
    assert s.trials[0].state == optuna.trial.TrialState.PRUNED


def test_direction_is_checked() -> None:
    with pytest.raises(ValueError, match=r"direction: must be 'minimize' or 'maximize'"):
        ScalerTrial(None, None, direction="up")  # type: ignore[arg-type]


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name="shared", storage=storage, direction="minimize")
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    worker = [sys.executable, str(HERE / "_optuna_worker.py"), str(tmp_path), storage, "shared"]
    published = run_scripts([[*worker, "4"], [*worker, "4"]], tmp_path, env=env)
    assert sorted(n for p in published for n in p["trials"]) == list(range(8))
    done = optuna.load_study(study_name="shared", storage=storage)
    trials = done.trials
    assert len(trials) == 8
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(t.state in finished for t in trials)
    for t in trials:
        assert {f"scaler_{k}" for k in SCALER_ATTRS} <= set(t.user_attrs), t.number
        assert t.user_attrs["scaler_steps"] > 0
    assert any(t.user_attrs["scaler_overflow_count"] > 0 for t in trials)
    collapsed = [t for t in trials if t.user_attrs.get("scaler_collapsed")]
    assert collapsed and all(t.state == optuna.trial.TrialState.PRUNED for t in collapsed)
    assert done.best_trial.state == optuna.trial.TrialState.COMPLETE
