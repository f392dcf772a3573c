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
        out: torch.Tensor = self.head(self.encoder(self.embed(x))[:, -1])
        return out


def _setup(kind: str, guarded: bool, fused: bool = False) -> tuple[Any, ...]:
    torch.manual_seed(0)
    if kind == "tiny":  # the guard's cost is most visible where the step costs least
        model: nn.Module = nn.Linear(8, 8)
        x, y = torch.randn(4, 8), torch.randn(4, 8)
    elif kind == "mlp":
        model, x, y = _mlp(), torch.randn(64, 32), torch.randn(64, 1)
    else:
        model, x, y = _Encoder(), torch.randn(32, 48, 1), torch.randn(32, 1)
    # fused: the kernel skips overflowing steps on the device; the guard keeps the flag and
    # halves on the device (tests/torch/test_optimizer_paths.py proves the lifecycle)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused)
    scaler = (
        GuardedGradScaler("cpu", model=model, config=ScalerConfig(max_scale_threshold=1e30))
        if guarded
        else torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_factor=1.2)
    )
    return model, opt, scaler, x, y


def _step(setup: tuple[Any, ...]) -> int:
    """Nanoseconds of one whole step: forward under autocast, scale, backward, step, update."""
    model, opt, scaler, x, y = setup
    start = time.perf_counter_ns()
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.float16):
        loss = F.mse_loss(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return time.perf_counter_ns() - start


def step_time(kind: str, steps: int, fused: bool = False) -> dict[str, Any]:
    """The whole step, guarded vs plain, interleaved step by step (alternating who goes first).

    Each figure is the median of single-step times: on a shared machine the neighbours add
    outliers, which the median ignores. The spread is that of 10 interleaved subsets.
    """
    plain, guarded = _setup(kind, False, fused), _setup(kind, True, fused)
    for _ in range(20):
        _step(plain), _step(guarded)
    a: list[int] = []
    b: list[int] = []
    for i in range(steps):
        if i % 2:
            b.append(_step(guarded))
            a.append(_step(plain))
        else:
            a.append(_step(plain))
            b.append(_step(guarded))
    pa, pb = statistics.median(a), statistics.median(b)
    subsets = sorted(statistics.median(b[k::10]) / statistics.median(a[k::10]) for k in range(10))
    added = sorted(
        (statistics.median(b[k::10]) - statistics.median(a[k::10])) / 1e3 for k in range(10)
    )
    return {
        "plain_ms": pa / 1e6,
        "guarded_ms": pb / 1e6,
        "ratio_of_medians": pb / pa,
        "ratio": pb / pa,
        "ratio_p10": subsets[0],
        "ratio_p90": subsets[-1],
        "added_us": (pb - pa) / 1e3,
        "added_us_min": added[0],
        "added_us_max": added[-1],
        "steps": steps,
        "params": sum(p.numel() for p in plain[0].parameters()),
        "hooks_at_end": len(guarded[0]._forward_hooks),
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


class _ViaSend(ScalerMachine):
    """The same machine, every lifecycle change through python-statemachine's send()."""

    _execute_with_send = True


def send_cost(n: int = 2000, rounds: int = 5) -> dict[str, float]:
    """A lifecycle change (stable -> over_threshold -> stable, with its step), through the
    compiled table and through send(); interleaved rounds, median us per change."""

    def per_change(machine: ScalerMachine) -> float:
        start = time.perf_counter()
        for _ in range(n):
            machine.step(False, 2e5)  # stable -> over_threshold (exceed)
            machine.step(True, 1000.0)  # -> stable (recover)
        return (time.perf_counter() - start) / (2 * n) * 1e6

    table, send = ScalerMachine(initial_scale=1024.0), _ViaSend(initial_scale=1024.0)
    table.step(False, 1024.0)
    send.step(False, 1024.0)
    times: dict[str, list[float]] = {"table": [], "send": []}
    for _ in range(rounds):
        times["table"].append(per_change(table))
        times["send"].append(per_change(send))
    return {
        "table_us": statistics.median(times["table"]),
        "send_us": statistics.median(times["send"]),
    }


def syncs(fused: bool = False) -> dict[str, int]:
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for name, guarded in (("plain", False), ("guarded", True)):
        setup = _setup("mlp", guarded, fused)
        for _ in range(2):
            _step(setup)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                _step(setup)
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


def main() -> None:
    """The scaler section alone (``python tests/benchmarks/bench_scaler.py``): whole-step
    figures, guarded vs plain, for docs/performance.md."""
    import logging

    logging.getLogger("regulator").addHandler(logging.NullHandler())
    logging.getLogger("regulator").propagate = False
    torch.set_num_threads(1)
    for kind, steps, fused in (
        ("tiny", 20_000, False),
        ("tiny", 20_000, True),
        ("mlp", 2_000, False),
        ("encoder", 300, False),
    ):
        r = step_time(kind, steps, fused)
        print(
            f"{kind}{' fused' if fused else ''} ({r['params']:,} params):"
            f" plain {r['plain_ms'] * 1e3:.1f} us,"
            f" guarded {r['guarded_ms'] * 1e3:.1f} us, added {r['added_us']:.2f} us"
            f" (10 subsets {r['added_us_min']:.2f}..{r['added_us_max']:.2f}),"
            f" ratio {r['ratio']:.4f} ({r['ratio_p10']:.4f}..{r['ratio_p90']:.4f}),"
            f" {r['steps']} steps each, hooks on at the end: {r['hooks_at_end']}",
            flush=True,
        )
    print(host_cost(), send_cost(), syncs(), {"fused": syncs(fused=True)}, flush=True)


if __name__ == "__main__":
    main()
