"""The lifecycle does not depend on how the optimizer steps (real float16 AMP steps, CPU).

The for-loop run (``foreach=False, fused=False``: torch's ``_maybe_opt_step`` reads the
found-inf flag, the host sees every step) is the reference. Every other path torch offers on
the CPU, ``foreach=True`` (the same host path) and ``fused=True`` (the kernel skips on the
device; the host sees nothing), and the clip-and-skip loop (``unscale_()`` every step,
``step()`` left out when the norm is not finite) must give, step by step, the same scale,
state, counters, resets, halvings and anomaly lines, and the same final weights.
``capturable=True`` needs CUDA (torch asserts it): ``make gpu-check`` runs it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _amp import amp_step, batch, mlp
from regulator.adapters.torch import GuardedGradScaler, _device_steps, _fused_check
from regulator.fsm import ScaleCollapseError, ScalerConfig, parse_kv
from torch import nn

LOGGER = "regulator.scaler"

#: torch's optimizers and the step modes each offers on the CPU (torch 2.13)
FOREACH = ("Adam", "AdamW", "SGD", "Adagrad", "Adamax", "NAdam", "RAdam", "RMSprop", "Rprop")
FUSED = ("Adam", "AdamW", "SGD", "Adagrad")

#: crosses the threshold (growth 2x every 3 clean steps from 512 over 3000), halves (5 in a
#: row), resets (3 epoch ends over the threshold), and runs on after each
CONFIG = ScalerConfig(
    growth_interval=3,
    growth_factor=2.0,
    max_scale_threshold=3000.0,
    reset_after_epochs=2,
    overflow_halving_batches=5,
)
EPOCH = 10
POISON = {0, 2, 23, 24, 25, 26, 27, 28, 41, 62, 63}
STEPS = 70


def _optimizer(name: str, params: Any, mode: str | None) -> torch.optim.Optimizer:
    cls = getattr(torch.optim, name)
    kwargs: dict[str, Any] = {"lr": 1e-3}
    if mode is None:
        kwargs["foreach"] = False
        if name in FUSED:
            kwargs["fused"] = False
    else:
        kwargs[mode] = True
    optimizer: torch.optim.Optimizer = cls(params, **kwargs)
    return optimizer


def _clip_and_skip(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: GuardedGradScaler,
    data: tuple[torch.Tensor, torch.Tensor],
    *,
    poison: bool = False,
    held: list[torch.Tensor] | None = None,
) -> None:
    """unscale_() every step; step() only when the gradient norm is finite."""
    amp_step(model, optimizer, scaler, data, poison=poison, held=held, clip=True)


Step = Callable[..., Any]


def _run(
    name: str,
    mode: str | None,
    step: Step = amp_step,
    *,
    read_every_step: bool = True,
    caplog: pytest.LogCaptureFixture | None = None,
) -> tuple[list[Any], list[Any], nn.Module]:
    model = mlp()
    optimizer = _optimizer(name, model.parameters(), mode)
    scaler = GuardedGradScaler("cpu", model=model, config=CONFIG, init_scale=512.0)
    per_step, per_epoch = [], []
    held: list[torch.Tensor] = []  # the output lives until the next forward, as in a loop
    for i in range(STEPS):
        step(model, optimizer, scaler, batch(i % 7), poison=i in POISON, held=held)
        if read_every_step:
            per_step.append(
                (i, scaler.get_scale(), scaler.state, scaler.machine.counters.as_dict())
            )
        if i % EPOCH == EPOCH - 1:
            per_epoch.append((scaler.end_epoch(), scaler.get_statistics()))
    assert scaler.mirror_mismatches == 0
    return per_step, per_epoch, model


def _anomalies(
    caplog: pytest.LogCaptureFixture, *, diagnostics: bool = False
) -> list[dict[str, str]]:
    keep = ("event", "epoch", "batch", "step", "scale", "state", "consecutive_overflows")
    lines = []
    for record in caplog.records:
        if record.name == LOGGER and record.levelno >= logging.WARNING:
            fields = parse_kv(record.getMessage())
            lines.append(fields if diagnostics else {k: fields[k] for k in keep if k in fields})
    caplog.clear()
    return lines


@functools.cache
def _reference(
    name: str,
) -> tuple[list[Any], list[Any], dict[str, torch.Tensor], list[dict[str, str]]]:
    logger = logging.getLogger(LOGGER)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        per_step, per_epoch, model = _run(name, None)
    finally:
        logger.removeHandler(handler)
    lines = [parse_kv(r.getMessage()) for r in records]
    return per_step, per_epoch, {k: v.clone() for k, v in model.state_dict().items()}, lines


def _same_weights(model: nn.Module, reference: dict[str, torch.Tensor]) -> None:
    for key, value in model.state_dict().items():
        # fused kernels round differently from the for-loop (a few ulps); a skipped or extra
        # step would move the weights by lr ~ 1e-3
        torch.testing.assert_close(value, reference[key], rtol=1e-5, atol=1e-6, msg=key)


def test_the_schedule_crosses_the_threshold_resets_and_halves() -> None:
    per_step, per_epoch, _, _ = _reference("Adam")
    states = {state for _, _, state, _ in per_step}
    assert {"warmup", "stable", "over_threshold", "overflow_halved"} <= states
    final = per_epoch[-1][1]
    assert final["resets"] >= 1 and final["halvings"] >= 1
    assert any(epoch["state"] == "reset" for epoch, _ in per_epoch)


@pytest.mark.spec("R2.3")
@pytest.mark.spec("R2.4")
@pytest.mark.parametrize(
    ("name", "mode"),
    [(n, "foreach") for n in FOREACH] + [(n, "fused") for n in FUSED],
)
def test_every_optimizer_path_gives_the_for_loop_lifecycle(
    name: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    per_step, per_epoch, model = _run(name, mode)
    lines = _anomalies(caplog, diagnostics=True)
    ref_steps, ref_epochs, ref_weights, ref_lines = _reference(name)
    assert per_step == ref_steps
    assert per_epoch == ref_epochs
    _same_weights(model, ref_weights)
    # read after each step, every line describes its own step: the gradient norm (unscaled:
    # fused steps leave the gradients scaled) and the output are the for-loop run's
    assert [line.keys() for line in lines] == [line.keys() for line in ref_lines]
    for line, ref in zip(lines, ref_lines, strict=True):
        for key, value in line.items():
            if key in ("grad_norm", "output_mean", "output_std") and ref[key] != "nan":
                assert float(value) == pytest.approx(float(ref[key]), rel=1e-3), key
            else:
                assert value == ref[key], key


@pytest.mark.spec("R2.3")
@pytest.mark.spec("R2.4")
@pytest.mark.spec("R3.2")
@pytest.mark.parametrize("name", FUSED)
def test_fused_read_once_an_epoch_replays_the_same_lifecycle_and_lines(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing read between epoch ends: the epoch's steps are folded in once, same result."""
    caplog.set_level(logging.INFO, LOGGER)
    _, ref_epochs, ref_model = _run(name, None)
    ref_lines = _anomalies(caplog)
    _, per_epoch, model = _run(name, "fused", read_every_step=False)
    assert per_epoch == ref_epochs
    assert _anomalies(caplog) == ref_lines
    assert {line["event"] for line in ref_lines} == {"over_threshold", "overflow_halved", "reset"}
    _same_weights(model, ref_model.state_dict())


@pytest.mark.spec("R2.4")
@pytest.mark.parametrize("read_every_step", [True, False])
def test_clip_and_skip_gives_the_state_of_the_loop_that_steps(read_every_step: bool) -> None:
    per_step, per_epoch, _ = _run("Adam", None, _clip_and_skip, read_every_step=read_every_step)
    ref_steps, ref_epochs, _ = _run("Adam", None, read_every_step=read_every_step)
    assert per_step == ref_steps
    assert per_epoch == ref_epochs
    if read_every_step:  # the 5th overflow in a row reads overflow_halved, as with step()
        assert per_step[27][2] == "overflow_halved"


@pytest.mark.spec("R3.2")
@pytest.mark.parametrize("reads", ["every_step", "none", "none_and_one_more_step"])
def test_a_replayed_anomaly_describes_its_own_step(
    reads: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Read after each step: the host knows when an anomaly may come and watches that forward;
    the line has that step's gradients and output. Not read: the line says it did not see them
    (and how many steps later it was logged) instead of describing another step."""
    caplog.set_level(logging.WARNING, LOGGER)
    model = mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    scaler = GuardedGradScaler("cpu", model=model, config=CONFIG, init_scale=512.0)
    held: list[torch.Tensor] = []
    for i in range(5):
        amp_step(model, optimizer, scaler, batch(i), poison=True, held=held)
        if reads == "every_step":
            scaler.state  # noqa: B018 (folds)
    if reads == "none_and_one_more_step":
        amp_step(model, optimizer, scaler, batch(5), held=held)
    assert scaler.state in ("overflow_halved", "stable")
    (line,) = (parse_kv(r.getMessage()) for r in caplog.records)
    assert line["event"] == "overflow_halved"
    assert line["step"] == "5" and line["batch"] == "4"
    assert line["scale"] == "8"  # 512: 5 backoffs and the extra halving
    if reads == "every_step":
        assert line["output_nan"] == "0" and float(line["output_std"]) > 0
        assert line["grad_norm"] == "nan"  # the poisoned step's own gradients
    else:
        assert line["output"] == "not_observed" and line["grad_norm"] == "-"
        assert line["logged_steps_later"] == ("1" if reads == "none_and_one_more_step" else "0")


@pytest.mark.spec("R2.4")
def test_fused_collapse_raises_at_the_fold_with_the_loop_run_counters() -> None:
    config = ScalerConfig(min_scale=1.0, collapse_after=3, overflow_halving_batches=5)
    for mode in (None, "fused"):
        model = mlp()
        optimizer = _optimizer("Adam", model.parameters(), mode)
        scaler = GuardedGradScaler("cpu", model=model, config=config, init_scale=8.0)

        def run(model: nn.Module = model, optimizer: Any = optimizer, scaler: Any = scaler) -> None:
            for i in range(12):
                amp_step(model, optimizer, scaler, batch(i), poison=True)
                scaler.state  # noqa: B018 (the read folds: the collapse surfaces at this step)

        with pytest.raises(ScaleCollapseError) as caught:
            run()
        assert caught.value.diagnostics["step"] == 6  # 8 -> 4 -> 2 -> 1, then 3 at the floor
        assert scaler.get_scale() == 1.0


class _ToList(torch.overrides.TorchFunctionMode):
    """Counts ``Tensor.tolist()``: a device read the profiler does not name (on CUDA, one copy
    to the host and one sync, like ``item()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.Tensor.tolist:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _syncs(step: Callable[[], Any]) -> tuple[int, int]:
    """Reads of a device value: (in all, outside torch's fused optimizer kernels).

    ``aten::_local_scalar_dense`` (``item()``, ``bool()``...) plus ``tolist()`` calls. torch's
    CPU fused kernels read ``found_inf`` themselves (on the CPU that is no wait); on CUDA they
    do not. What the scaler adds shows outside them.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof, _ToList() as lists:
        step()
    total = outside = lists.count
    for event in prof.events():
        if event.name != "aten::_local_scalar_dense":
            continue
        total += 1
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::_fused_"):
            parent = parent.cpu_parent
        outside += parent is None
    return total, outside


@pytest.mark.spec("R2.4")
@pytest.mark.parametrize("name", FUSED)
def test_a_guarded_fused_step_syncs_as_often_as_a_plain_one(name: str) -> None:
    """No read at all on the fused path: clean, overflowing, and the halving step."""
    counts = {}
    for kind in ("plain", "guarded"):
        model = mlp()
        optimizer = _optimizer(name, model.parameters(), "fused")
        scaler: Any = (
            torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=3)
            if kind == "plain"
            else GuardedGradScaler("cpu", model=model, config=CONFIG, init_scale=512.0)
        )
        amp_step(model, optimizer, scaler, batch(0))  # lazy init outside the count
        counts[kind] = [
            _syncs(functools.partial(amp_step, model, optimizer, scaler, batch(i), poison=i > 1))
            for i in range(8)  # steps 2..7 overflow: the 5th in a row halves
        ]
    assert counts["guarded"] == counts["plain"]
    assert [outside for _, outside in counts["guarded"]] == [0] * 8


@pytest.mark.spec("R2.4")
def test_a_guarded_fused_step_adds_only_the_halving_ops_and_allocates_less_than_plain() -> None:
    """The guard's device work on a fused step: the clean flag, the halving kernel and (once
    the worst case reaches the floor) the clamp; none of torch's four per-step tensors of the
    found-inf check (its 1.0 and zero flag, made once here, and their per-device copies: the
    flag is the ledger's slot): fewer ops than a plain step."""
    from collections import Counter

    from torch.profiler import ProfilerActivity, profile

    counts: dict[str, Counter[str]] = {}
    for kind in ("plain", "guarded"):
        model = mlp()
        optimizer = _optimizer("Adam", model.parameters(), "fused")
        scaler: Any = (
            torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=3)
            if kind == "plain"
            else GuardedGradScaler("cpu", model=model, config=CONFIG, init_scale=512.0)
        )
        for i in range(3):  # lazy init, the first unseen step (the ledger's buffers)
            amp_step(model, optimizer, scaler, batch(i), poison=i == 1)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for i in range(10):
                amp_step(model, optimizer, scaler, batch(i), poison=i == 4)
        counts[kind] = Counter(event.name for event in prof.events())
    added = counts["guarded"] - counts["plain"]
    assert set(added) <= {"aten::_amp_update_scale_", "aten::logical_not", "aten::clamp_min_"}
    assert added["aten::_amp_update_scale_"] == added["aten::logical_not"] == 10
    assert added["aten::clamp_min_"] <= 10
    removed = counts["plain"] - counts["guarded"]
    assert removed["aten::full"] == 20  # torch's 1.0 and zero flag, each step
    assert removed["aten::_to_copy"] == 20  # _unscale_grads_'s copies of both, each step
    assert counts["guarded"].total() < counts["plain"].total()


def test_unseen_steps_are_packed_and_bounded_and_fold_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unseen steps packed (every CHUNK) and folded on their own (at LIMIT): the loop's state."""
    monkeypatch.setattr(_device_steps, "CHUNK", 16)
    monkeypatch.setattr(_device_steps, "LIMIT", 100)
    config = ScalerConfig(growth_interval=7, max_scale_threshold=1e30)
    results = []
    for mode in (None, "fused"):
        model = nn.Linear(8, 1)
        optimizer = _optimizer("SGD", model.parameters(), mode)
        scaler = GuardedGradScaler("cpu", model=model, config=config, init_scale=2.0**10)
        x, y = batch(0)
        for i in range(137):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.mse_loss(model(x), y)
            if i % 11 == 0 or 50 <= i < 56:
                loss = loss * float("inf")
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if mode == "fused":  # 137 = 100 (folded on their own) + 37 (kept: 2 chunks + 5)
                assert scaler._ledger.count == (i + 1) % 100
        results.append((scaler.get_statistics(), scaler.state))
        assert scaler.mirror_mismatches == 0
    assert results[0] == results[1]
    assert results[0][0]["halvings"] == 1


@pytest.mark.spec("R2.4")
def test_a_clip_and_skip_loop_syncs_as_often_guarded_as_plain() -> None:
    """Skipped steps read nothing; the next step() folds them into torch's own single read."""
    counts = {}
    for kind in ("plain", "guarded"):
        model = mlp()
        optimizer = _optimizer("Adam", model.parameters(), None)
        scaler: Any = (
            torch.amp.GradScaler("cpu", init_scale=512.0, growth_interval=3)
            if kind == "plain"
            else GuardedGradScaler("cpu", model=model, config=CONFIG, init_scale=512.0)
        )
        _clip_and_skip(model, optimizer, scaler, batch(0))  # lazy init outside the count
        counts[kind] = [
            _syncs(
                functools.partial(
                    _clip_and_skip, model, optimizer, scaler, batch(i), poison=2 <= i < 8
                )
            )
            for i in range(10)  # 6 skipped steps in a row (one halving), then two that step
        ]
    assert counts["guarded"] == counts["plain"]


def _fold_every_third(scaler: GuardedGradScaler) -> None:
    if int(scaler.machine.counters.steps) % 3 == 0:
        scaler.get_statistics()  # folds the steps kept so far


#: amp_step with the lifecycle read between step() and update() every third step: a fold while
#: the step's found-inf flag (the ledger's slot) is written but not yet stepped
_read_mid_iteration = functools.partial(amp_step, before_update=_fold_every_third)


@pytest.mark.spec("R2.4")
@pytest.mark.parametrize("read_every_step", [True, False])
def test_a_fold_between_step_and_update_keeps_the_steps_flag(read_every_step: bool) -> None:
    per_step, per_epoch, model = _run(
        "AdamW", "fused", _read_mid_iteration, read_every_step=read_every_step
    )
    ref_steps, ref_epochs, ref_model = _run(
        "AdamW", None, _read_mid_iteration, read_every_step=read_every_step
    )
    assert per_step == ref_steps
    assert per_epoch == ref_epochs
    _same_weights(model, ref_model.state_dict())


@pytest.mark.spec("R2.4")
def test_two_fused_optimizers_each_get_their_own_flag() -> None:
    """Two optimizers in one iteration: the first check is handed the ledger's slot, the
    second a flag of its own (one overflowing half must not skip the other's step), and the
    iteration's overflow is theirs combined, as in the for-loop run."""
    results = []
    for mode in (None, "fused"):
        torch.manual_seed(0)
        first, second = nn.Linear(8, 8), nn.Linear(8, 1)
        optimizers = [_optimizer("Adam", m.parameters(), mode) for m in (first, second)]
        model = nn.Sequential(first, second)
        scaler = GuardedGradScaler("cpu", model=model, config=CONFIG, init_scale=512.0)
        x, y = batch(0)
        trace: list[tuple[Any, ...]] = []  # (step, scale, state), then ("end", statistics)
        for i in range(40):
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.mse_loss(model(x), y)
            scaler.scale(loss).backward()
            if i in POISON:  # one optimizer's gradients overflow, the other's do not
                grad = (first if i % 2 else second).bias.grad
                assert grad is not None
                grad[0] = float("inf")
            for optimizer in optimizers:
                scaler.step(optimizer)
            scaler.update()
            if i % 4 == 0:
                trace.append((i, scaler.get_scale(), scaler.state))
        trace.append(("end", scaler.get_statistics()))
        results.append((trace, [p.detach().clone() for p in model.parameters()]))
        assert scaler.mirror_mismatches == 0
    (ref_trace, ref_weights), (trace, weights) = results
    assert trace == ref_trace
    assert ref_trace[-1][1]["halvings"] >= 1
    for got, want in zip(weights, ref_weights, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.spec("R2.4")
def test_an_explicit_new_scale_after_a_fused_step_leaves_no_stale_flag() -> None:
    """update(new_scale) ends an iteration whose flag slot was handed out and written (an
    overflow): the slot goes back to zero, so the next steps read their own flags."""
    results = []
    for mode in (None, "fused"):
        model = mlp()
        optimizer = _optimizer("SGD", model.parameters(), mode)
        scaler = GuardedGradScaler("cpu", model=model, config=CONFIG, init_scale=512.0)
        trace = []
        for i in range(30):
            x, y = batch(i % 7)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.mse_loss(model(x), y)
            scaler.scale(loss * float("inf") if i in (3, 9, 10) else loss).backward()
            scaler.step(optimizer)
            scaler.update(256.0 if i in (3, 10) else None)
            trace.append((scaler.get_scale(), scaler.state, scaler.machine.counters.as_dict()))
        results.append(trace)
    assert results[0] == results[1]


@pytest.mark.spec("R2.4")
def test_torchs_own_check_route_gives_the_same_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradients the guard's check does not group itself (sparse, or on another device than
    the scale: neither runs with a fused optimizer on the CPU) take torch's _unscale_grads_
    with a fresh flag, which update() copies into the ledger: same lifecycle, same weights."""
    monkeypatch.setattr(_fused_check, "dense_grads_on", lambda optimizer, device: None)
    per_step, per_epoch, model = _run("SGD", "fused")
    ref_steps, ref_epochs, ref_weights, _ = _reference("SGD")
    assert per_step == ref_steps
    assert per_epoch == ref_epochs
    _same_weights(model, ref_weights)
