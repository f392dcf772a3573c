"""GuardedGradScaler on real float16 AMP steps on the CPU."""

from __future__ import annotations

import functools
import io
import logging
import pickle
import random
from collections.abc import Callable
from typing import Any

import pytest
import torch
from _amp import amp_step, batch, mlp
from regulator.adapters.torch import GuardedGradScaler, NonFiniteInputError, check_finite
from regulator.fsm import ScaleCollapseError, ScalerConfig, parse_kv
from torch import nn

LOGGER = "regulator.scaler"


def records(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, str]]:
    out = []
    for record in caplog.records:
        if record.name == LOGGER and record.getMessage().startswith(f"event={event} "):
            out.append({"level": record.levelname, **parse_kv(record.getMessage())})
    return out


def guarded(model: nn.Module | None = None, **config: Any) -> GuardedGradScaler:
    return GuardedGradScaler("cpu", model=model, config=ScalerConfig(**config))


# -- R2.1, R2.2 -------------------------------------------------------------------------


class Sized(nn.Module):
    def __init__(self, parameters: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(parameters))
        self.frozen = nn.Parameter(torch.zeros(10), requires_grad=False)


@pytest.mark.spec("R2.1")
@pytest.mark.parametrize(
    ("parameters", "scale"),
    [
        (20_000, 2.0**16),
        (999_999, 2.0**16),
        (1_000_000, 2.0**14),
        (10_000_000, 2.0**14),
        (10_000_001, 2.0**12),
    ],
)
def test_initial_scale_follows_the_trainable_parameter_count(parameters: int, scale: float) -> None:
    scaler = GuardedGradScaler("cpu", model=Sized(parameters))
    assert scaler.trainable_parameters == parameters  # frozen ones do not count
    assert scaler.get_scale() == scale
    assert scaler.get_statistics()["initial_scale"] == scale


@pytest.mark.spec("R2.1")
def test_fixed_strategy_and_gradscaler_style_init_scale() -> None:
    fixed = GuardedGradScaler(
        "cpu", model=mlp(), config=ScalerConfig(init_scale_strategy="fixed", init_scale=512.0)
    )
    assert fixed.get_scale() == 512.0
    assert GuardedGradScaler("cpu", model=mlp(), init_scale=1024.0).get_scale() == 1024.0


@pytest.mark.spec("R2.2")
def test_default_growth_and_backoff_are_the_conservative_ones() -> None:
    scaler = GuardedGradScaler("cpu", model=mlp())
    assert scaler.get_growth_factor() == 1.2
    assert scaler.get_growth_interval() == 2000
    assert scaler.get_backoff_factor() == 0.5


@pytest.mark.spec("R2.2")
def test_real_growth_and_backoff_follow_the_config() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler(
        "cpu", model=model, config=ScalerConfig(growth_interval=3), init_scale=1024.0
    )
    seen = []
    for i in range(7):
        amp_step(model, opt, scaler, batch(i))
        seen.append(scaler.get_scale())
    assert seen == [
        1024.0,
        1024.0,
        1228.800048828125,
        1228.800048828125,
        1228.800048828125,
        1474.56005859375,
        1474.56005859375,
    ]
    amp_step(model, opt, scaler, batch(0), poison=True)
    assert scaler.get_scale() == pytest.approx(1474.56005859375 * 0.5)
    assert scaler.get_scale() == scaler._scale.item()  # type: ignore[union-attr]


# -- R2.3 -------------------------------------------------------------------------------


def run_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    scaler: GuardedGradScaler,
    steps: int,
    poison: frozenset[int] = frozenset(),
) -> dict[str, Any]:
    for i in range(steps):
        amp_step(model, opt, scaler, batch(i), poison=i in poison)
    return scaler.end_epoch()


@pytest.mark.spec("R2.3")
def test_over_threshold_warns_once_then_resets_after_three_epochs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    scaler = GuardedGradScaler(
        "cpu", model=model, config=ScalerConfig(growth_interval=2, max_scale_threshold=70_000.0)
    )
    assert scaler.get_scale() == 2.0**16
    run_epoch(model, opt, scaler, 3)  # 65536 -> 78643.2 after 2 clean steps
    assert scaler.state == "over_threshold"
    warnings = records(caplog, "over_threshold")
    assert len(warnings) == 1 and warnings[0]["level"] == "WARNING"
    run_epoch(model, opt, scaler, 2)
    assert scaler.state == "over_threshold" and not records(caplog, "reset")
    summary = run_epoch(model, opt, scaler, 2)  # third consecutive epoch end over threshold
    assert summary["state"] == "reset"
    assert scaler.get_scale() == 0.5 * 2.0**16
    assert scaler._get_growth_tracker() == 0 and scaler._growth_tracker.item() == 0  # type: ignore[union-attr]
    assert scaler._scale.item() == 32768.0  # type: ignore[union-attr]
    (reset,) = records(caplog, "reset")
    assert reset["level"] == "WARNING" and reset["scale"] == "32768"
    assert len(records(caplog, "over_threshold")) == 1  # one WARNING on entry, not per step
    amp_step(model, opt, scaler, batch(0))
    assert scaler.state == "stable"
    assert scaler.get_statistics()["resets"] == 1


@pytest.mark.spec("R2.3")
def test_no_reset_when_auto_reset_is_off() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    scaler = GuardedGradScaler(
        "cpu",
        model=model,
        config=ScalerConfig(growth_interval=2, max_scale_threshold=70_000.0, auto_reset=False),
    )
    for _ in range(5):
        run_epoch(model, opt, scaler, 3)
    assert scaler.state == "over_threshold" and scaler.get_statistics()["resets"] == 0


# -- R2.4, R3.2 -------------------------------------------------------------------------


@pytest.mark.spec("R2.4")
@pytest.mark.spec("R3.2")
def test_five_consecutive_overflows_halve_once_more_with_diagnostics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, init_scale=2.0**16)
    amp_step(model, opt, scaler, batch(0))
    assert scaler.state == "stable"
    scales = []
    held: list[torch.Tensor] = []
    for i in range(5):
        amp_step(model, opt, scaler, batch(i), poison=True, held=held)
        scales.append(scaler.get_scale())
    # torch halves on each overflow; the fifth in a row halves once more
    assert scales == [2.0**15, 2.0**14, 2.0**13, 2.0**12, 2.0**10]
    assert scaler.state == "overflow_halved"
    assert scaler._scale.item() == 2.0**10  # type: ignore[union-attr]
    (warning,) = records(caplog, "overflow_halved")
    assert warning["level"] == "WARNING"
    for key in (
        "epoch",
        "batch",
        "scale",
        "grad_norm",
        "output_mean",
        "output_std",
        "output_min",
        "output_max",
        "output_nan",
        "output_inf",
    ):
        assert key in warning, key
    assert (warning["epoch"], warning["batch"], warning["scale"]) == ("0", "5", "1024")
    assert warning["grad_norm"] in ("inf", "nan")
    assert float(warning["output_std"]) > 0
    amp_step(model, opt, scaler, batch(9))
    assert scaler.state == "stable"
    assert scaler.get_statistics()["consecutive_overflows"] == 0


def test_scale_never_drops_below_min_scale_and_collapse_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler(
        "cpu",
        model=model,
        config=ScalerConfig(min_scale=4.0, collapse_after=3, overflow_halving_batches=100),
        init_scale=16.0,
    )
    amp_step(model, opt, scaler, batch(0), poison=True)  # 8
    amp_step(model, opt, scaler, batch(0), poison=True)  # 4
    amp_step(model, opt, scaler, batch(0), poison=True)  # 2 -> clamped to 4
    assert scaler.get_scale() == 4.0 == scaler._scale.item()  # type: ignore[union-attr]
    amp_step(model, opt, scaler, batch(0), poison=True)
    with pytest.raises(ScaleCollapseError, match="loss scale collapsed") as caught:
        amp_step(model, opt, scaler, batch(0), poison=True)
    assert caught.value.diagnostics["event"] == "collapse"
    assert scaler.get_statistics()["collapses"] == 1
    assert records(caplog, "collapse")[0]["level"] == "ERROR"


# -- R2.5 -------------------------------------------------------------------------------


@pytest.mark.spec("R2.5")
def test_every_epoch_end_logs_one_info_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, init_scale=256.0)
    run_epoch(model, opt, scaler, 4, poison=frozenset({2}))
    run_epoch(model, opt, scaler, 3)
    lines = [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO
    ]
    assert lines == [
        "event=epoch epoch=0 scale=128 state=stable steps=4 overflows=1 over_threshold_epochs=0",
        "event=epoch epoch=1 scale=128 state=stable steps=3 overflows=0 over_threshold_epochs=0",
    ]


# -- the mirror, syncs --------------------------------------------------------------------


def test_host_mirror_equals_the_device_scale_over_a_long_random_run() -> None:
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler(
        "cpu",
        model=model,
        config=ScalerConfig(growth_interval=3, growth_factor=1.2, max_scale_threshold=1e30),
        init_scale=2.0**20,
    )
    rng = random.Random(3)
    for i in range(400):
        amp_step(model, opt, scaler, batch(i % 7), poison=rng.random() < 0.3)
        assert scaler.get_scale() == scaler._scale.item(), i  # type: ignore[union-attr]
        assert scaler._get_growth_tracker() == scaler._growth_tracker.item(), i  # type: ignore[union-attr]
        if i % 50 == 49:
            scaler.end_epoch()
    assert scaler.mirror_mismatches == 0
    assert scaler.get_statistics()["halvings"] > 0


def _syncs(step: Any) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    names = [e.name for e in prof.events()]
    return names.count("aten::_local_scalar_dense")


def test_a_guarded_step_syncs_exactly_as_often_as_a_plain_step() -> None:
    data = batch(0)
    counts = {}
    factories: list[tuple[str, Callable[[nn.Module], Any]]] = [
        ("plain", lambda m: torch.amp.GradScaler("cpu", init_scale=2.0**16)),
        ("guarded", lambda m: GuardedGradScaler("cpu", model=m, init_scale=2.0**16)),
    ]
    for name, factory in factories:
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        scaler = factory(model)
        amp_step(model, opt, scaler, data)  # lazy init outside the count
        counts[name] = (
            _syncs(functools.partial(amp_step, model, opt, scaler, data)),
            _syncs(functools.partial(amp_step, model, opt, scaler, data, poison=True)),
        )
    assert counts["guarded"] == counts["plain"]
    assert counts["plain"][0] >= 1  # torch's own read in _maybe_opt_step


# -- fused optimizers -----------------------------------------------------------------------


def test_fused_optimizer_counts_overflows_on_the_device() -> None:
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    scaler = GuardedGradScaler("cpu", model=model, init_scale=2.0**16)
    for i in range(8):
        amp_step(model, opt, scaler, batch(i), poison=1 <= i <= 6)  # 6 in a row
    device_scale = scaler._scale.item()  # type: ignore[union-attr]
    # torch halves 6 times; the 5th in a row halves once more
    assert device_scale == 2.0**16 / 2**7
    assert scaler.get_scale() == device_scale  # synced read in fused mode
    summary = scaler.end_epoch()
    assert summary["overflows"] == 6
    stats = scaler.get_statistics()
    assert (stats["steps"], stats["overflow_count"], stats["halvings"]) == (8, 6, 1)


# -- R3.4 ----------------------------------------------------------------------------------


@pytest.mark.spec("R3.4")
def test_check_finite_names_batch_field_and_counts() -> None:
    good = [{"x": torch.ones(4, 3), "y": torch.zeros(4)} for _ in range(3)]
    assert check_finite(good) == 3
    bad = [
        *good,
        {
            "x": torch.tensor([[1.0, float("nan")], [float("inf"), float("-inf")]]),
            "y": torch.zeros(2),
        },
    ]
    with pytest.raises(NonFiniteInputError) as caught:
        check_finite(bad)
    err = caught.value
    assert (err.batch_index, err.field, err.nan_count, err.inf_count) == (3, "x", 1, 2)
    assert str(err) == "batch 3, field 'x': 1 NaN and 2 Inf values"


@pytest.mark.spec("R3.4")
def test_check_finite_reads_a_dataloader_of_tuples() -> None:
    x = torch.randn(10, 3)
    x[7, 1] = float("nan")
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.arange(10)), batch_size=4
    )
    with pytest.raises(NonFiniteInputError, match=r"batch 1, field '\[0\]': 1 NaN"):
        check_finite(loader)
    assert check_finite(torch.ones(3)) == 1


@pytest.mark.spec("R3.4")
def test_opt_in_per_step_input_check() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, check_inputs=True)
    amp_step(model, opt, scaler, batch(0))
    x, y = batch(1)
    x[0, 0] = float("inf")
    with pytest.raises(NonFiniteInputError, match=r"batch 1, field '\[0\]': 0 NaN and 1 Inf"):
        amp_step(model, opt, scaler, (x, y))


# -- R5.1, R5.3 ------------------------------------------------------------------------------


@pytest.mark.spec("R5.1")
def test_statistics_keep_the_names_users_read() -> None:
    stats = GuardedGradScaler("cpu", model=mlp()).get_statistics()
    for key in (
        "current_scale",
        "initial_scale",
        "state",
        "overflow_count",
        "consecutive_overflows",
        "steps",
        "epoch",
        "resets",
        "halvings",
        "history",
    ):
        assert key in stats


def _save(state: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)
    return loaded


@pytest.mark.spec("R5.3")
def test_a_plain_gradscaler_loads_a_guarded_checkpoint() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, init_scale=4096.0, growth_interval=2)
    for i in range(5):
        amp_step(model, opt, scaler, batch(i))
    state = _save(scaler.state_dict())
    assert set(state) == {
        "scale",
        "growth_factor",
        "backoff_factor",
        "growth_interval",
        "_growth_tracker",
        "regulator",
    }
    plain = torch.amp.GradScaler("cpu")
    plain.load_state_dict(state)
    assert plain.get_scale() == scaler.get_scale()
    assert plain.state_dict() == {k: v for k, v in state.items() if k != "regulator"}


@pytest.mark.spec("R5.3")
def test_a_guarded_scaler_loads_a_plain_checkpoint_and_starts_stable() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    plain = torch.amp.GradScaler("cpu", init_scale=2048.0, growth_interval=3)
    for i in range(4):
        amp_step(model, opt, plain, batch(i))
    scaler = GuardedGradScaler("cpu", model=model)
    scaler.load_state_dict(_save(plain.state_dict()))
    assert scaler.state == "stable"
    assert scaler.get_scale() == plain.get_scale() and scaler._get_growth_tracker() == 1
    amp_step(model, opt, scaler, batch(0))
    amp_step(model, opt, plain, batch(0))
    assert scaler.get_scale() == plain.get_scale()


@pytest.mark.spec("R5.3")
def test_a_resumed_run_continues_with_the_same_state_and_scale() -> None:
    def make() -> tuple[nn.Module, torch.optim.Optimizer, GuardedGradScaler]:
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        return (
            model,
            opt,
            GuardedGradScaler(
                "cpu",
                model=model,
                config=ScalerConfig(growth_interval=2, max_scale_threshold=5000.0),
                init_scale=4096.0,
            ),
        )

    model, opt, scaler = make()
    schedule = [False, False, True, False, False, False, True, True, False, False, False, False]
    for i, poison in enumerate(schedule[:6]):
        amp_step(model, opt, scaler, batch(i), poison=poison)
    scaler.end_epoch()
    checkpoint = _save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "scaler": scaler.state_dict()}
    )
    for i, poison in enumerate(schedule[6:]):
        amp_step(model, opt, scaler, batch(i + 6), poison=poison)
    expected = (scaler.state, scaler.get_scale(), scaler.get_statistics()["steps"])

    model2, opt2, scaler2 = make()
    model2.load_state_dict(checkpoint["model"])
    opt2.load_state_dict(checkpoint["opt"])
    scaler2.load_state_dict(checkpoint["scaler"])
    for i, poison in enumerate(schedule[6:]):
        amp_step(model2, opt2, scaler2, batch(i + 6), poison=poison)
    assert (scaler2.state, scaler2.get_scale(), scaler2.get_statistics()["steps"]) == expected


# -- enabled=False, cuda without CUDA, bf16, pickling ----------------------------------------------


def test_disabled_is_a_no_op_like_torch() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, enabled=False)
    amp_step(model, opt, scaler, batch(0))
    assert scaler.state == "disabled" and scaler.get_scale() == 1.0 and scaler.state_dict() == {}
    assert scaler.end_epoch()["state"] == "disabled"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA fallback")
def test_cuda_without_cuda_warns_and_disables_like_torch() -> None:
    with pytest.warns(UserWarning, match="CUDA is not available"):
        scaler = GuardedGradScaler("cuda", model=mlp())
    assert scaler.state == "disabled"


def test_bf16_says_once_that_no_scaling_is_needed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    scaler = GuardedGradScaler("cpu", model=mlp(), dtype=torch.bfloat16)
    assert scaler.state == "disabled"
    assert len(records(caplog, "bf16")) == 1
    model = mlp()
    kept = GuardedGradScaler("cpu", model=model)
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = model(batch(0)[0])
        kept.scale(output.float().sum())  # the scaler looks at the forward's output here
    assert len(records(caplog, "bf16")) == 2  # once for the constructor, once for the output


def test_pickles_between_iterations() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, init_scale=512.0)
    amp_step(model, opt, scaler, batch(0))
    clone = pickle.loads(pickle.dumps(scaler))
    assert clone.get_scale() == 512.0 and clone.state == "stable"


def test_diagram_highlights_the_current_state() -> None:
    text = GuardedGradScaler("cpu", model=mlp()).diagram()
    assert text.startswith("stateDiagram-v2") and "class warmup active" in text


@pytest.mark.spec("R2.2")
def test_mirror_follows_torch_when_the_tracker_is_past_a_lowered_interval() -> None:
    # torch grows only when the clean-step count reaches the interval exactly: a tracker
    # already past it (set_growth_interval() lowered mid-run) never grows until an overflow
    # zeroes it. The host mirror must replay that, not grow at once.
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler(
        "cpu",
        model=model,
        config=ScalerConfig(growth_interval=8, growth_factor=2.0, max_scale_threshold=1e30),
        init_scale=2.0**10,
    )
    for i in range(5):
        amp_step(model, opt, scaler, batch(i))
    scaler.set_growth_interval(3)
    for i in range(12):
        amp_step(model, opt, scaler, batch(i), poison=i == 6)
        assert scaler.get_scale() == scaler._scale.item(), i  # type: ignore[union-attr]
        assert scaler._get_growth_tracker() == scaler._growth_tracker.item(), i  # type: ignore[union-attr]
    scaler.end_epoch()
    assert scaler.mirror_mismatches == 0
