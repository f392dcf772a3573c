"""GuardedGradScaler as a true drop-in: torch's constructor, a model that travels alone, no
retained activations, a mirror that never lags (real float16 AMP steps on the CPU)."""

from __future__ import annotations

import copy
import gc
import inspect
import io
import logging
import weakref
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _amp import amp_step, batch, mlp
from regulator.adapters.torch import GuardedGradScaler
from regulator.fsm import ConfigError, ScalerConfig, parse_kv
from torch import nn

LOGGER = "regulator.scaler"


# -- torch's constructor ------------------------------------------------------------------


def test_the_signature_is_torchs_with_the_guard_keyword_only() -> None:
    ours = inspect.signature(GuardedGradScaler).parameters
    theirs = inspect.signature(torch.amp.GradScaler).parameters
    assert list(ours)[:6] == list(theirs)
    for name, parameter in theirs.items():
        assert ours[name].default == parameter.default, name
        assert repr(ours[name].default) == repr(parameter.default), name
        assert ours[name].kind == parameter.kind, name
    extras = {name: p.kind for name, p in ours.items() if name not in theirs}
    assert extras == dict.fromkeys(
        ["model", "config", "dtype", "check_inputs", "logger"], inspect.Parameter.KEYWORD_ONLY
    )


def test_every_positional_call_torch_accepts_works() -> None:
    scaler = GuardedGradScaler("cpu", 1024.0, 3.0, 0.25, 7, True)
    assert (scaler.get_scale(), scaler.get_growth_factor()) == (1024.0, 3.0)
    assert (scaler.get_backoff_factor(), scaler.get_growth_interval()) == (0.25, 7)
    assert GuardedGradScaler("cpu").is_enabled()
    assert GuardedGradScaler(device="cpu", init_scale=2.0).get_scale() == 2.0


def test_a_model_passed_first_gets_a_clear_error() -> None:
    with pytest.raises(TypeError, match=r'GuardedGradScaler\("cuda", model=model\)'):
        GuardedGradScaler("cpu", model="cuda")  # type: ignore[arg-type]


@pytest.mark.spec("R2.2")
def test_left_out_the_config_decides_passed_explicitly_torchs_numbers_win() -> None:
    config = ScalerConfig(growth_interval=5)
    default = GuardedGradScaler("cpu", config=config)
    assert (default.get_growth_factor(), default.get_growth_interval()) == (1.2, 5)
    # torch's own default values, passed explicitly, are a choice: they win
    explicit = GuardedGradScaler("cpu", growth_factor=2.0, growth_interval=2000, config=config)
    assert (explicit.get_growth_factor(), explicit.get_growth_interval()) == (2.0, 2000)
    assert explicit.config.growth_factor == 2.0 and explicit.config.max_scale_threshold == 1e5


@pytest.mark.spec("R2.3")
def test_the_lifecycle_applies_to_torchs_numbers_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    scaler = GuardedGradScaler("cpu", 2.0**16, 2.0, 0.5, 1, model=model)
    amp_step(model, opt, scaler, batch(0))  # 2^16 -> 2^17, over 100000
    assert scaler.state == "over_threshold" and scaler.get_scale() == 2.0**17
    for _ in range(3):
        scaler.end_epoch()
    assert scaler.get_scale() == 0.5 * 2.0**16  # R2.3's reset, torch's growth factor


def test_torch_validates_only_when_enabled_then_the_config_rules() -> None:
    with pytest.raises(AssertionError, match="growth factor"):
        GuardedGradScaler("cpu", growth_factor=0.5)
    disabled = GuardedGradScaler("cpu", growth_factor=0.5, init_scale=-1.0, enabled=False)
    assert disabled.state == "disabled" and disabled.get_scale() == 1.0
    with pytest.raises(ConfigError, match=r"scaler\.init_scale: must be within float32's range"):
        GuardedGradScaler("cpu", init_scale=1e39)


@pytest.mark.spec("R2.1")
def test_without_a_model_the_initial_scale_is_the_configs_init_scale() -> None:
    config = ScalerConfig(init_scale=512.0)
    assert GuardedGradScaler("cpu", config=config).get_scale() == 512.0
    assert GuardedGradScaler("cpu", model=mlp(), config=config).get_scale() == 2.0**16


# -- the model travels alone --------------------------------------------------------------


def _saved(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_the_model_copies_and_saves_at_every_point_of_a_step() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, check_inputs=True)
    x, y = batch(0)
    copies = []
    for point in ("forward", "backward", "step", "update"):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.mse_loss(model(x), y)
        if point != "forward":
            scaler.scale(loss).backward()
        if point in ("step", "update"):
            scaler.step(opt)  # between step() and update(): GradScaler refuses to pickle
        copies.append(copy.deepcopy(model))
        data = _saved(model)
        assert b"regulator" not in data
        loaded = torch.load(io.BytesIO(data), weights_only=False)
        assert torch.equal(loaded(x), model(x))
        if point in ("step", "update"):
            scaler.update()
    probe = scaler._probe
    assert probe is not None
    before = probe.output
    for clone in copies:
        clone(x)  # a copy's forward neither feeds this scaler nor checks for it
    assert probe.output is before
    amp_step(model, opt, scaler, batch(1))
    assert scaler.get_statistics()["steps"] == 3


def test_a_dead_scaler_leaves_no_hook_behind() -> None:
    model = mlp()
    scaler = GuardedGradScaler("cpu", model=model, check_inputs=True)
    assert model._forward_hooks and model._forward_pre_hooks
    del scaler
    gc.collect()
    assert not model._forward_hooks and not model._forward_pre_hooks


# -- no retained activations --------------------------------------------------------------


class Wide(nn.Module):
    """A model with a 6 MiB output (float32 1536 x 1024)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 1024)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.proj(x).float()
        return out


@pytest.mark.spec("R3.2")
def test_no_output_is_kept_alive_and_diagnostics_say_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    model = Wide()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, config=ScalerConfig(overflow_halving_batches=1))
    outputs: list[weakref.ReferenceType[torch.Tensor]] = []
    model.register_forward_hook(lambda m, a, out: outputs.append(weakref.ref(out)))
    x = torch.randn(1536, 8)
    for poison in (False, True):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = model(x).square().mean()
        scaler.scale(loss * (float("inf") if poison else 1.0)).backward()
        scaler.step(opt)
        scaler.update()
        del loss
        gc.collect()
        assert outputs[-1]() is None  # the 6 MiB output died with the step
    (line,) = [r.getMessage() for r in caplog.records if "event=overflow_halved" in r.getMessage()]
    assert parse_kv(line)["output"] == "released"


def test_in_the_common_case_no_hook_slows_the_forward() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, config=ScalerConfig(max_scale_threshold=1e30))
    assert model._forward_hooks  # until the first output shows it is not bfloat16
    for i in range(3):
        amp_step(model, opt, scaler, batch(i))
    assert not model._forward_hooks
    for i in range(4):  # an overflow streak nearing the extra halving puts it back
        amp_step(model, opt, scaler, batch(i), poison=True)
    assert model._forward_hooks


# -- the mirror never lags --------------------------------------------------------------------


def test_unscale_then_a_skipped_step_keeps_get_scale_on_the_device_scale() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", init_scale=2.0**16, model=model)

    def device() -> float:
        assert scaler._scale is not None
        return float(scaler._scale.item())

    schedule = ["plain", "unscale_only", "unscale_only", "poison", "poison", "poison", "poison"]
    schedule += ["poison", "plain", "unscale_only", "plain"]
    seen = []
    for i, kind in enumerate(schedule):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.mse_loss(model(batch(i)[0]), batch(i)[1])
        if kind == "poison":
            loss = loss * float("inf")
        scaler.scale(loss).backward()
        if kind == "unscale_only":
            scaler.unscale_(opt)  # e.g. to clip, then the caller skips the step
        else:
            scaler.step(opt)
        scaler.update()
        assert scaler.get_scale() == device(), (i, kind)
        seen.append(scaler.get_scale())
    # five poisoned steps in a row: torch's four halvings and then the fifth plus the extra one
    assert seen[3:8] == [2.0**15, 2.0**14, 2.0**13, 2.0**12, 2.0**10]
    assert scaler.get_statistics()["halvings"] == 1
    scaler.end_epoch()
    assert scaler.mirror_mismatches == 0 and scaler.get_scale() == device()


def test_the_sharded_signature_is_shardedgradscalers() -> None:
    from regulator.adapters.torch import GuardedShardedGradScaler
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    ours = inspect.signature(GuardedShardedGradScaler).parameters
    theirs = inspect.signature(ShardedGradScaler).parameters
    assert list(ours)[: len(theirs)] == list(theirs)  # backoff before growth, as theirs
    for name, parameter in theirs.items():
        assert repr(ours[name].default) == repr(parameter.default), name
    scaler = GuardedShardedGradScaler("cpu", 8.0, 0.25, 3.0, 5)
    assert (scaler.get_backoff_factor(), scaler.get_growth_factor()) == (0.25, 3.0)
    assert isinstance(scaler, ShardedGradScaler) and isinstance(scaler, GuardedGradScaler)


def test_an_epoch_end_keeps_the_hosts_streak_after_device_steps() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", init_scale=2.0**16, model=model)
    x, y = batch(0)
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.float16):
        loss = F.mse_loss(model(x), y)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)  # a step the host does not see: device counters from now on
    scaler.update()
    for i in range(3):
        amp_step(model, opt, scaler, batch(i), poison=True)
    scaler.end_epoch()  # the streak of 3 crosses the epoch end
    for i in range(2):
        amp_step(model, opt, scaler, batch(i), poison=True)
    assert scaler.get_statistics()["halvings"] == 1  # the fifth in a row
    assert scaler.get_scale() == 2.0**16 / 2**6 == scaler._scale.item()  # type: ignore[union-attr]


def test_old_call_order_and_disabled_scalers_get_no_hooks() -> None:
    model = mlp()
    with pytest.raises(TypeError, match=r'GuardedGradScaler\("cuda", model=model\)'):
        GuardedGradScaler(model, "cpu")  # type: ignore[arg-type]
    scaler = GuardedGradScaler("cpu", model=model, enabled=False)
    assert not model._forward_hooks and scaler.state == "disabled"
