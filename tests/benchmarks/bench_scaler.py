"""Scaler benchmarks: step time guarded vs plain (interleaved), host cost, syncs, send(), memory."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from typing import Any

import torch
import torch.nn.functional as F
from regulator.adapters.torch import GuardedGradScaler
from regulator.fsm import ScalerConfig
from regulator.fsm._scaler import ScalerMachine
from torch import nn


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)
    )


class _Encoder(nn.Module):
    """A small transformer encoder standing in for the Informer (not ProbSparse)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(1, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x))[:, -1])


def _setup(kind: str, guarded: bool) -> tuple[Any, ...]:
    torch.manual_seed(0)
    model = _mlp() if kind == "mlp" else _Encoder()
    x = torch.randn(64, 32) if kind == "mlp" else torch.randn(32, 48, 1)
    y = torch.randn(64 if kind == "mlp" else 32, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = (
        GuardedGradScaler("cpu", model=model, config=ScalerConfig(max_scale_threshold=1e30))
        if guarded
        else torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_factor=1.2)
    )
    return model, opt, scaler, x, y


def _steps(setup: tuple[Any, ...], n: int) -> float:
    model, opt, scaler, x, y = setup
    start = time.perf_counter()
    for _ in range(n):
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.float16):
            loss = F.mse_loss(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return (time.perf_counter() - start) / n


def step_time(kind: str, blocks: int, per_block: int) -> dict[str, Any]:
    plain, guarded = _setup(kind, False), _setup(kind, True)
    _steps(plain, 5), _steps(guarded, 5)
    a, b = [], []
    for i in range(blocks):  # interleaved, alternating who goes first
        first, second = (plain, guarded) if i % 2 == 0 else (guarded, plain)
        t1, t2 = _steps(first, per_block), _steps(second, per_block)
        (a if first is plain else b).append(t1)
        (b if first is plain else a).append(t2)
    pa, pb = statistics.median(a), statistics.median(b)
    ratios = sorted(y / x for x, y in zip(a, b, strict=True))
    return {
        "plain_ms": pa * 1e3,
        "guarded_ms": pb * 1e3,
        "ratio_of_medians": pb / pa,
        "ratio": statistics.median(ratios),
        "ratio_p10": ratios[len(ratios) // 10],
        "ratio_p90": ratios[9 * len(ratios) // 10],
        "steps": blocks * per_block,
        "params": sum(p.numel() for p in plain[0].parameters()),
    }


def host_cost(n: int = 200_000) -> dict[str, float]:
    """The guard's own per-step host work: the mirror replay plus machine.step (fast path)."""
    scaler = GuardedGradScaler("cpu", config=ScalerConfig(max_scale_threshold=1e30))
    machine = scaler.machine
    machine.step(False, 65536.0)
    start = time.perf_counter()
    for _ in range(n):
        scaler._replay(False)
        machine.step(False, scaler._mirror)
    return {"host_us_per_step": (time.perf_counter() - start) / n * 1e6}


def send_cost(n: int = 2000) -> dict[str, float]:
    machine = ScalerMachine(initial_scale=1024.0)
    machine.step(False, 1024.0)
    start = time.perf_counter()
    for _ in range(n):
        machine.step(False, 2e5)  # stable -> over_threshold (a send)
        machine.step(True, 1000.0)  # -> recover (a send)
    return {"send_us": (time.perf_counter() - start) / (2 * n) * 1e6}


def syncs() -> dict[str, int]:
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for name, guarded in (("plain", False), ("guarded", True)):
        setup = _setup("mlp", guarded)
        _steps(setup, 2)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _steps(setup, 10)
        out[name] = sum(1 for e in prof.events() if e.name == "aten::_local_scalar_dense")
    return out


def memory(n: int = 1_000_000) -> dict[str, float]:
    machine = ScalerMachine(ScalerConfig(growth_interval=10), initial_scale=1024.0)
    for _ in range(1000):
        machine.step(False, 1024.0)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        machine.step(i % 997 == 0, 1024.0)
        if i % 100_000 == 0:
            machine.end_epoch()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"steps": n, "bytes_held_delta": after - before}
