"""``regulator demo``: both machines end to end, offline.

1. The connection machine against scripted faults on a virtual clock (the simulator): a
   10-minute outage (alarm, then resolution) and a day of drops at minute 17 (pattern report).
2. Real float16 AMP training on the CPU under ``GuardedGradScaler``: a small regression model
   on a generated, seeded random walk of returns (not market data), three runs that show
   warmup, overflow_halved, over_threshold and reset happening.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from ..fsm import ScalerConfig, format_kv, load_schedule, simulate

__all__ = ["run_demo"]


def _connection_part(quick: bool) -> None:
    for name, hours in (("outage", 1.0), ("hourly", 6.0 if quick else 24.0)):
        schedule = load_schedule(name)
        print(
            format_kv(
                part="connection",
                schedule=name,
                hours=hours,
                description=schedule.description,
                clock="virtual",
            )
        )
        result = simulate(schedule, hours=hours, seed=1)
        for line in result.lines:
            if any(f" event={e} " in line for e in ("alarm", "resolved", "pattern", "give_up")):
                print("  " + line)
        totals = dict(result.totals)
        totals.pop("failures_by_kind")
        print("  " + format_kv(event="totals", **totals))


def _returns(steps: int, seed: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    # A random walk of log returns with volatility clusters (GARCH-like), scaled like 1-minute
    # crypto returns (~1e-3): generated, not market data.
    vol = torch.empty(steps)
    v = 1e-3
    shocks = torch.randn(steps, generator=g)
    for i in range(steps):
        v = (0.94 * v**2 + 0.06 * (shocks[i - 1].item() * v) ** 2 + 1e-8) ** 0.5 if i else v
        vol[i] = v
    return shocks * vol


def _train(
    name: str,
    config: ScalerConfig,
    *,
    init_scale: float | None,
    epochs: int,
    lr: float,
    exporter: Any = None,
) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from .torch import GuardedGradScaler, check_finite

    torch.manual_seed(0)
    returns = _returns(4096, seed=7)
    window = 32
    x = returns.unfold(0, window, 1)[:-1].unsqueeze(-1) * 100.0  # (n, 32, 1), in percent
    y = returns[window:].unsqueeze(-1) * 100.0
    check_finite((x, y))
    model = nn.Sequential(nn.Flatten(), nn.Linear(window, 64), nn.GELU(), nn.Linear(64, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    scaler = GuardedGradScaler(model, "cpu", config=config, init_scale=init_scale)
    if exporter is not None:
        exporter.register(scaler, name=name)
    print(
        format_kv(
            part="training",
            run=name,
            parameters=scaler.trainable_parameters,
            initial_scale=scaler.get_scale(),
            dtype="float16",
            device="cpu",
        )
    )
    batches = torch.split(torch.arange(len(x)), 64)
    for _ in range(epochs):
        for idx in batches:
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.mse_loss(model(x[idx]), y[idx])
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            scaler.step(opt)
            scaler.update()
        scaler.end_epoch()
    stats = scaler.get_statistics()
    return {
        k: stats[k]
        for k in ("state", "current_scale", "steps", "overflow_count", "halvings", "resets")
    }


def run_demo(*, quick: bool = False, metrics_port: int | None = None) -> int:
    started = time.perf_counter()
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("regulator")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        _connection_part(quick)
        try:
            import torch  # noqa: F401
        except ImportError:
            print(format_kv(part="training", skipped="torch is not installed (extra: torch)"))
            return 0
        epochs = 2 if quick else 4
        runs = [
            ("default", ScalerConfig(), None, 1e-3),
            # a deliberately high initial scale: overflows in a row, halved again (R2.4)
            ("too-high-init-scale", ScalerConfig(), 2.0**40, 1e-3),
            # fast growth under a low threshold: over threshold, then a reset (R2.3)
            (
                "fast-growth",
                ScalerConfig(
                    growth_interval=10,
                    growth_factor=2.0,
                    max_scale_threshold=2.0**17,
                    reset_after_epochs=2,
                ),
                None,
                1e-3,
            ),
        ]
        exporter = None
        if metrics_port is not None:
            from .prometheus import start_metrics_server

            exporter, server = start_metrics_server(metrics_port)
            print(format_kv(event="metrics", url=f"http://127.0.0.1:{server.server_port}/metrics"))
        for name, config, init, lr in runs:
            summary = _train(name, config, init_scale=init, epochs=epochs, lr=lr, exporter=exporter)
            print("  " + format_kv(event="run_summary", run=name, **summary))
    finally:
        logger.removeHandler(handler)
    print(format_kv(event="demo_done", seconds=round(time.perf_counter() - started, 1)))
    return 0
