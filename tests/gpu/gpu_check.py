"""``make gpu-check``: the guarded scaler on a CUDA device, against the CPU reference.

Runs real float16 AMP steps with a forced-overflow schedule (the loss times inf at chosen
steps, so the lifecycle depends on the schedule only) that crosses the threshold, halves and
resets, and checks, printing one table:

* every optimizer path (fused AdamW, foreach AdamW, capturable Adam, for-loop AdamW): scale and
  state after every step equal the CPU for-loop reference, and the host mirror equals the
  device scale on every step (read each step, which folds the unseen steps in);
* the epoch lines and anomaly events of the whole run equal the reference's;
* syncs per step (profiler: ``aten::_local_scalar_dense``) of a guarded fused step equal a
  plain ``GradScaler`` step's, on clean and overflowing steps, nothing read between them;
* the guarded step's added host time on the fused path (median of interleaved blocks).

``--device cpu`` runs the same checks on the CPU (the test suite runs it short); capturable
needs CUDA and is left out there. Exit status 1 when a check fails. Finishes in about a minute
on one GPU for the default 10,000 steps.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from regulator.adapters.torch import GuardedGradScaler
from regulator.fsm import ScalerConfig
from torch import nn

CONFIG = ScalerConfig(
    growth_interval=40,
    growth_factor=2.0,
    max_scale_threshold=3000.0,
    reset_after_epochs=2,
    overflow_halving_batches=5,
)
INIT_SCALE = 1024.0
EPOCH = 500
PERIOD = 2000  # a run of 6 overflows in every PERIOD steps, from RUN_AT
RUN_AT = 1200
SINGLE = 97  # and a single overflow every SINGLE steps


def poisoned(step: int) -> bool:
    """The forced overflows: single ones, and a run of 6 every PERIOD steps (one halving)."""
    return step % SINGLE == 0 or RUN_AT <= step % PERIOD < RUN_AT + 6


def make_model(device: str) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)


def make_optimizer(mode: str, params: Any) -> torch.optim.Optimizer:
    if mode == "capturable":
        return torch.optim.Adam(params, lr=1e-4, capturable=True)
    return torch.optim.AdamW(params, lr=1e-4, fused=mode == "fused", foreach=mode == "foreach")


def data(device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(64, 32, generator=g).to(device), torch.randn(64, 1, generator=g).to(device))
        for _ in range(8)
    ]


def step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    batch: tuple[torch.Tensor, torch.Tensor],
    device: str,
    poison: bool,
) -> None:
    x, y = batch
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.float16):
        # small, as GMADL's: the scale climbs to 4M and no step overflows on its own, so the
        # lifecycle is the schedule's alone, on any device
        loss = F.mse_loss(model(x), y) * 1e-3
    if poison:
        loss = loss * float("inf")
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


class _Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@dataclass
class Run:
    trace: list[tuple[float, str]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    mirror_mismatches: int = 0


def run(device: str, mode: str, steps: int) -> Run:
    """The guarded scaler, read after every step (scale, state, mirror vs device)."""
    model = make_model(device)
    optimizer = make_optimizer(mode, model.parameters())
    scaler = GuardedGradScaler(device, model=model, config=CONFIG, init_scale=INIT_SCALE)
    handler = _Events()
    logger = logging.getLogger("regulator.scaler")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    out = Run()
    batches = data(device)
    try:
        for i in range(steps):
            step(model, optimizer, scaler, batches[i % len(batches)], device, poisoned(i))
            scale = scaler.get_scale()
            out.trace.append((scale, scaler.state))
            assert scaler._scale is not None
            if scaler._scale.item() != scale:
                out.mirror_mismatches += 1
            if i % EPOCH == EPOCH - 1:
                out.epochs.append(scaler.end_epoch())
    finally:
        logger.removeHandler(handler)
    out.mirror_mismatches += scaler.mirror_mismatches
    # the anomaly events without the fields that describe the device's numbers
    for line in handler.lines:
        head = line.split(" grad_norm=")[0]
        out.events.append(head)
    return out


def kinds(events: list[str]) -> set[str]:
    return {line.split()[0].removeprefix("event=") for line in events}


def syncs_per_step(device: str, guarded: bool, steps: int = 20) -> list[int]:
    """Reads of a device value in each of ``steps`` fused steps, nothing read between."""
    from torch.profiler import ProfilerActivity, profile

    model = make_model(device)
    optimizer = make_optimizer("fused", model.parameters())
    scaler: Any = (
        GuardedGradScaler(device, model=model, config=CONFIG, init_scale=INIT_SCALE)
        if guarded
        else torch.amp.GradScaler(device, init_scale=INIT_SCALE, growth_interval=40)
    )
    batches = data(device)
    step(model, optimizer, scaler, batches[0], device, False)  # lazy init outside the count
    counts = []
    for i in range(steps):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(model, optimizer, scaler, batches[i % 8], device, 5 <= i < 12)
        names = [e.name for e in prof.events()]
        counts.append(names.count("aten::_local_scalar_dense"))
    return counts


def host_cost(device: str, blocks: int = 20, per_block: int = 50) -> tuple[float, float]:
    """Median step time (us) plain and guarded on the fused path, interleaved blocks."""
    setups: dict[str, Any] = {}
    for kind in ("plain", "guarded"):
        model = make_model(device)
        optimizer = make_optimizer("fused", model.parameters())
        scaler: Any = (
            GuardedGradScaler(
                device,
                model=model,
                config=ScalerConfig(max_scale_threshold=1e30),
                init_scale=INIT_SCALE,
            )
            if kind == "guarded"
            else torch.amp.GradScaler(device, init_scale=INIT_SCALE)
        )
        setups[kind] = (model, optimizer, scaler)
    batches = data(device)
    times: dict[str, list[float]] = {"plain": [], "guarded": []}
    sync: Callable[[], None] = torch.cuda.synchronize if device == "cuda" else lambda: None
    for _ in range(blocks):
        for kind, (model, optimizer, scaler) in setups.items():
            sync()
            start = time.perf_counter_ns()
            for i in range(per_block):
                step(model, optimizer, scaler, batches[i % 8], device, False)
            sync()
            times[kind].append((time.perf_counter_ns() - start) / per_block / 1000)
    return statistics.median(times["plain"]), statistics.median(times["guarded"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, default=20, help="timing blocks of 50 steps")
    args = parser.parse_args(argv)
    device, steps = args.device, args.steps
    started = time.perf_counter()
    rows: list[tuple[str, bool, str]] = []
    reference = run("cpu", "for-loop", steps)
    modes = ["fused", "foreach", "for-loop"] + (["capturable"] if device == "cuda" else [])
    for mode in modes:
        got = run(device, mode, steps)
        differ = next(
            (i for i, (a, b) in enumerate(zip(got.trace, reference.trace, strict=True)) if a != b),
            None,
        )
        rows.append(
            (
                f"{mode}: scale+state every step = CPU reference",
                differ is None,
                "all equal"
                if differ is None
                else f"step {differ}: {got.trace[differ]} vs {reference.trace[differ]}",
            )
        )
        rows.append(
            (
                f"{mode}: host mirror = device scale every step",
                got.mirror_mismatches == 0,
                f"{got.mirror_mismatches} mismatches",
            )
        )
        rows.append(
            (
                f"{mode}: epoch lines and anomaly events = reference",
                got.epochs == reference.epochs and got.events == reference.events,
                f"{len(got.epochs)} epochs, {len(got.events)} events"
                f" ({', '.join(sorted(kinds(got.events) - {'epoch'}))})",
            )
        )
    plain, guarded = syncs_per_step(device, False), syncs_per_step(device, True)
    rows.append(
        (
            "fused: syncs per step guarded = plain (profiler)",
            plain == guarded,
            f"plain {plain}, guarded {guarded}",
        )
    )
    base, ours = host_cost(device, blocks=args.blocks)
    rows.append(
        (
            "fused: step time plain / guarded (median, us)",
            True,
            f"{base:.1f} / {ours:.1f} (+{ours - base:.1f})",
        )
    )
    width = max(len(r[0]) for r in rows)
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"gpu-check on {device} ({name}), torch {torch.__version__}, {steps} steps")
    for name, ok, detail in rows:
        print(f"{name:<{width}}  {'PASS' if ok else 'FAIL'}  {detail}")
    print(f"finished in {time.perf_counter() - started:.0f} s")
    return 0 if all(ok for _, ok, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
