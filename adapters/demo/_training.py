"""The demo's second half: an Informer trained with GMADL on the klines the stream collected,
under float16 autocast and ``GuardedGradScaler``, tuned by Optuna.

Two enqueued trials make the scaler's lifecycle visible: one starts with a scale of 2^40
(overflows in a row: ``overflow_halved``), one uses a learning rate that diverges (overflows
at ``min_scale``: a collapse, which prunes the trial). Every trial runs a scaler config with a
low threshold and fast growth, so ``over_threshold`` and a reset happen too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs

from ...fsm import ScalerConfig
from ._storage import open_storage, redact_storage
from ._view import View

__all__ = ["DEMO_SCALER", "SKIPPED_FLAG", "TrainingRecord", "kline_dataset", "run_study"]

#: Fast growth under a low threshold, so a few short epochs show over_threshold and a reset.
DEMO_SCALER = ScalerConfig(
    growth_interval=2,
    growth_factor=2.0,
    max_scale_threshold=2.0**17,
    reset_after_epochs=1,
    collapse_after=3,
)
WINDOW = 32


@attrs.define
class TrainingRecord:
    study_name: str = ""
    storage: str = ""
    samples: int = 0
    trials: list[dict[str, Any]] = attrs.field(factory=list)
    traces: dict[int, list[tuple[int, float, str]]] = attrs.field(factory=dict)
    best: dict[str, Any] | None = None
    threshold: float = DEMO_SCALER.max_scale_threshold


def kline_dataset(klines: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Closed klines (in open-time order) -> (windows of features, next log return in %)."""
    import torch

    close = torch.tensor([float(k["c"]) for k in klines], dtype=torch.float64)
    high = torch.tensor([float(k["h"]) for k in klines], dtype=torch.float64)
    low = torch.tensor([float(k["l"]) for k in klines], dtype=torch.float64)
    volume = torch.tensor([float(k["v"]) for k in klines], dtype=torch.float64)
    returns = torch.diff(close.log()) * 100.0
    spread = (high / low).log()[1:] * 100.0
    vol = torch.log1p(volume[1:])
    vol = (vol - vol.mean()) / (vol.std() + 1e-9)
    features = torch.stack([returns, spread, vol], dim=-1).float()
    x = features.unfold(0, WINDOW, 1)[:-1].transpose(1, 2).contiguous()  # (n, WINDOW, 3)
    y = returns[WINDOW:].float()
    return x, y


#: A trial that skipped more than this fraction of its optimizer steps is flagged in the report:
#: its value comes from far fewer updates than its step count says.
SKIPPED_FLAG = 0.2


def _record_steps(trial: Any, steps: int, taken: int) -> None:
    trial.set_user_attr("steps", steps)
    trial.set_user_attr("steps_skipped", steps - taken)


def _objective(
    x: Any, y: Any, epochs: int, view: View, record: TrainingRecord, exporter: Any
) -> Callable[[Any], float]:
    import optuna
    import torch

    from ..optuna import ScalerTrial
    from ..torch import GuardedGradScaler, check_finite
    from ._informer import Informer, gmadl_loss

    check_finite((x, y))
    split = int(len(x) * 0.8)
    train_x, train_y, val_x, val_y = x[:split], y[:split], x[split:], y[split:]

    def objective(trial: optuna.Trial) -> float:
        scenario = trial.user_attrs.get("scenario", "tuned")
        lr = trial.suggest_float("lr", 1e-4, 3e-3, log=True)
        width = trial.suggest_categorical("width", [16, 32])
        a = trial.suggest_float("gmadl_a", 1.0, 50.0, log=True)
        init_scale = 2.0**40 if scenario == "too-high-init-scale" else None
        if scenario == "diverging":
            lr = 30.0  # far too high: the weights blow up, every later step overflows
            init_scale = 2.0  # close to min_scale, so the collapse comes within an epoch
        trial.set_user_attr("effective_lr", lr)
        torch.manual_seed(trial.number)
        model = Informer(x.shape[-1], d_model=width)
        opt = torch.optim.AdamW(model.parameters(), lr=lr)
        scaler = GuardedGradScaler("cpu", model=model, config=DEMO_SCALER, init_scale=init_scale)
        if exporter is not None:
            exporter.register(scaler, name=f"trial-{trial.number}")
        row = {
            "number": trial.number,
            "scenario": scenario,
            "lr": f"{lr:.2g}",
            "width": width,
            "a": f"{a:.3g}",
            "state": scaler.state,
            "scale": "",
            "epoch": 0,
            "value": "",
            "result": "running",
        }
        view.trials[trial.number] = row
        trace: list[tuple[int, float, str]] = [(0, scaler.get_scale(), scaler.state)]
        record.traces[trial.number] = trace
        step = 0
        batches = torch.split(
            torch.randperm(len(train_x), generator=torch.Generator().manual_seed(0)), 32
        )
        try:
            with ScalerTrial(trial, scaler) as guard:
                for _epoch in range(epochs):
                    model.train()
                    for idx in batches:
                        # counted before the step: a collapse raised inside it still counts
                        step += 1
                        opt.zero_grad(set_to_none=True)
                        with torch.autocast("cpu", dtype=torch.float16):
                            loss = gmadl_loss(model(train_x[idx]), train_y[idx], a=a, b=1.5)
                        scaler.scale(loss).backward()
                        scaler.step(opt)
                        scaler.update()
                        scale, state = scaler.get_scale(), scaler.state  # host mirror: no sync
                        if (scale, state) != trace[-1][1:]:
                            trace.append((step, scale, state))
                    model.eval()
                    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
                        value = float(gmadl_loss(model(val_x), val_y, a=a, b=1.5))
                    summary = guard.end_epoch(value)
                    row.update(
                        state=scaler.state,
                        scale=f"{scaler.get_scale():.3g}",
                        epoch=summary.get("epoch", 0) + 1,
                        value=f"{value:.4f}",
                    )
                    trace.append((step, scaler.get_scale(), scaler.state))
                    view.scaler_state = f"{scaler.state} (trial {trial.number})"
                    view.line(
                        event="epoch",
                        trial=trial.number,
                        scenario=scenario,
                        epoch=row["epoch"],
                        value=round(value, 5),
                        scale=scaler.get_scale(),
                        state=scaler.state,
                    )
        except optuna.TrialPruned as pruned:
            _record_steps(trial, step, _optimizer_steps(opt, model))
            # what the scaler did last (a collapse ends in a reset): the plot and the view
            # show the state the report's table gives
            final = (step, scaler.get_scale(), scaler.state)
            if final[1:] != trace[-1][1:]:
                trace.append(final)
            row.update(state=scaler.state, scale=f"{scaler.get_scale():.3g}", result="pruned")
            trial.set_user_attr("scale_trace", trace)
            view.line(event="pruned", trial=trial.number, scenario=scenario, reason=str(pruned))
            raise
        _record_steps(trial, step, _optimizer_steps(opt, model))
        row["result"] = "complete"
        trial.set_user_attr("scale_trace", trace)
        return guard.best if guard.best is not None else math.inf

    return objective


MAX_SAMPLES = 400


def run_study(
    klines: list[dict[str, Any]],
    view: View,
    *,
    quick: bool,
    storage: str,
    exporter: Any = None,
) -> TrainingRecord:
    import time

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    record = TrainingRecord(storage=redact_storage(storage))
    x, y = kline_dataset(klines)
    # The scaler scenarios (overflow_halved in the first epoch, then reset) are tuned to about
    # this many samples; how many klines the market phase collects varies with its faults.
    x, y = x[:MAX_SAMPLES], y[:MAX_SAMPLES]
    record.samples = len(x)
    epochs = 2 if quick else 4
    trials = 4 if quick else 7
    record.study_name = f"regulator-demo-{int(time.time())}"
    view.phase = "training under the guard"
    view.line(
        event="study",
        name=record.study_name,
        storage=redact_storage(storage),
        samples=len(x),
        trials=trials,
        epochs=epochs,
        model="Informer (ProbSparse + distilling)",
        loss="GMADL (float32)",
        autocast="float16 on cpu",
    )
    study = optuna.create_study(
        study_name=record.study_name,
        storage=open_storage(storage),
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
    )
    study.enqueue_trial(
        {"lr": 1e-3, "width": 32, "gmadl_a": 10.0}, user_attrs={"scenario": "too-high-init-scale"}
    )
    study.enqueue_trial(
        {"lr": 1e-3, "width": 16, "gmadl_a": 10.0}, user_attrs={"scenario": "diverging"}
    )
    study.optimize(_objective(x, y, epochs, view, record, exporter), n_trials=trials)
    for t in study.trials:
        record.trials.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": dict(t.params),
                "scenario": t.user_attrs.get("scenario", "tuned"),
                "steps": t.user_attrs.get("steps", 0),
                "skipped": t.user_attrs.get("steps_skipped", 0),
                "scaler": {
                    k[len("scaler_") :]: v
                    for k, v in t.user_attrs.items()
                    if k.startswith("scaler_")
                },
            }
        )
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if done:
        best = study.best_trial
        record.best = {"number": best.number, "value": best.value, "params": best.params}
    return record


def _optimizer_steps(opt: Any, model: Any) -> int:
    """Steps the optimizer really took (AdamW counts them per parameter): read once per epoch,
    so the skipped-step rate is measured, not inferred from the scaler's own overflow count."""
    state = opt.state.get(next(model.parameters()), {})
    return int(state["step"]) if "step" in state else 0
