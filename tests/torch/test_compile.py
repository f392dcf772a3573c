"""The scaler under ``torch.compile``, built before or after the compile (real AMP steps, CPU).

Against plain ``GradScaler`` on the same compiled model: no more graphs (recompiles) and no
more graph breaks, counted with ``torch._dynamo.utils.counters``; every anomaly line describes
the step it is logged for (its output, not the trace's); ``check_inputs`` raises on a NaN input
without a graph break.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
import torch._dynamo
from _amp import amp_step, batch, mlp
from regulator.adapters.torch import GuardedGradScaler, NonFiniteInputError
from regulator.fsm import ScalerConfig, parse_kv
from torch._dynamo.utils import counters

LOGGER = "regulator.scaler"
CONFIG = ScalerConfig(growth_interval=3, growth_factor=2.0, max_scale_threshold=3000.0)
POISON = {0, 12, 13, 14, 15, 16}
STEPS = 18


def _run(
    backend: str, guarded: bool, scaler_first: bool, check_inputs: bool
) -> tuple[dict[str, int], int, list[float]]:
    torch._dynamo.reset()
    counters.clear()
    model = mlp()
    scaler: Any
    if not guarded:
        compiled = torch.compile(model, backend=backend)
        scaler = torch.amp.GradScaler(
            "cpu", init_scale=1024.0, growth_factor=2.0, growth_interval=3
        )
    elif scaler_first:
        scaler = GuardedGradScaler(
            "cpu", model=model, config=CONFIG, init_scale=1024.0, check_inputs=check_inputs
        )
        compiled = torch.compile(model, backend=backend)
    else:
        compiled = torch.compile(model, backend=backend)
        assert isinstance(compiled, torch.nn.Module)  # an OptimizedModule
        scaler = GuardedGradScaler(
            "cpu", model=compiled, config=CONFIG, init_scale=1024.0, check_inputs=check_inputs
        )
    assert isinstance(compiled, torch.nn.Module)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    held: list[torch.Tensor] = []
    means = []
    for i in range(STEPS):
        amp_step(compiled, optimizer, scaler, batch(i % 5), poison=i in POISON, held=held)
        means.append(float(held[0].detach().float().mean()))
    graphs = dict(counters["stats"]).get("unique_graphs", 0)
    breaks = sum(counters["graph_break"].values())
    return {"graphs": graphs}, breaks, means


CASES = [
    (backend, scaler_first, check_inputs)
    for backend in ("eager", "aot_eager")
    for scaler_first in (True, False)
    for check_inputs in (False, True)
] + [
    pytest.param(
        "inductor",
        True,
        True,
        # torch's own inductor import path warns (torch 2.13); not ours to fix
        marks=pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated"),
    )
]


@pytest.mark.spec("R3.2")
@pytest.mark.spec("R3.4")
@pytest.mark.parametrize(("backend", "scaler_first", "check_inputs"), CASES)
def test_compiled_either_order_no_extra_graph_and_lines_describe_their_step(
    backend: str, scaler_first: bool, check_inputs: bool, caplog: pytest.LogCaptureFixture
) -> None:
    plain_graphs, plain_breaks, _ = _run(backend, False, scaler_first, check_inputs)
    caplog.set_level(logging.WARNING, LOGGER)
    graphs, breaks, means = _run(backend, True, scaler_first, check_inputs)
    assert graphs == plain_graphs == {"graphs": 1}
    assert breaks == plain_breaks == 0
    lines = [parse_kv(r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert [line["event"] for line in lines] == ["over_threshold", "overflow_halved"]
    for line in lines:  # the output of the line's own step (steps count from 1)
        own = means[int(line["step"]) - 1]
        assert float(line["output_mean"]) == pytest.approx(own, rel=1e-3), line
    assert means[4] != pytest.approx(means[15], rel=1e-3)  # the steps' outputs differ


@pytest.mark.spec("R3.4")
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_check_inputs_rejects_a_nan_input_before_the_backward(backend: str) -> None:
    torch._dynamo.reset()
    counters.clear()
    model = mlp()
    scaler = GuardedGradScaler("cpu", model=model, check_inputs=True)
    compiled = torch.compile(model, backend=backend)
    assert isinstance(compiled, torch.nn.Module)  # an OptimizedModule
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    amp_step(compiled, optimizer, scaler, batch(0))
    x, y = batch(1)
    x[2, 3] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(NonFiniteInputError, match=r"batch 1, field '\[0\]': 1 NaN and 0 Inf"):
        amp_step(compiled, optimizer, scaler, (x, y))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert sum(counters["graph_break"].values()) == 0
    assert dict(counters["stats"])["unique_graphs"] == 1
