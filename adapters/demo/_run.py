"""``regulator demo``: the host system in miniature, offline, in a few minutes on 2 cores.

1. **Market data under fire.** The exchange simulator (``regulator.specs.exchange``) streams
   generated ETHUSDT klines and trades over TLS on 127.0.0.1; a scripted schedule hits the real
   ``BinanceStream`` through the fault proxy: a bad record MAC, a half-open link, a server
   restart, a 429 with Retry-After, a ``serverShutdown``, a burst of refused connections that
   raises and resolves an alarm, and rotations. ``--url`` streams a real exchange instead.
2. **Training under the guard.** The closed klines feed a small Informer trained with GMADL
   under float16 autocast and ``GuardedGradScaler``; Optuna tunes learning rate, width and
   GMADL's ``a`` (SQLite by default, ``--storage`` for any Optuna storage) and prunes a trial
   whose scaler collapses.
3. **The report.** ``<report>/index.html``: both diagrams with the final states, the connection
   timeline, the scale per trial, the failure history, the pattern report, the study.

On a terminal the view is live (rich); anywhere else it prints ``key=value`` lines.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anyio

from ...fsm import ConfigError, format_kv, load_schedule, simulate
from ._storage import check_storage
from ._view import make_view

__all__ = ["run_demo"]


def _simulated_patterns() -> list[str]:
    """The pattern detector over a simulated day of drops at minute 17 (virtual clock)."""
    result = simulate(load_schedule("hourly"), hours=24.0, seed=1)
    return [report.describe() for report in result.machine.pattern_reports]


def run_demo(
    *,
    quick: bool = False,
    metrics_port: int | None = None,
    url: str | None = None,
    storage: str | None = None,
    report: str = "regulator-report",
    budget: str | None = None,
) -> int:
    started = time.perf_counter()
    if storage is not None:
        # before the market phase: a missing driver must not cost the whole run
        check_storage(storage)
    folder = Path(report)
    folder.mkdir(parents=True, exist_ok=True)
    view = make_view()
    # the library's own log lines would tear the live view (the view shows the same events)
    library_log = logging.getLogger("regulator")
    level = library_log.level
    library_log.setLevel(logging.CRITICAL)
    try:
        return _run(view, folder, started, quick, metrics_port, url, storage, budget)
    finally:
        library_log.setLevel(level)


def _run(
    view: Any,
    folder: Path,
    started: float,
    quick: bool,
    metrics_port: int | None,
    url: str | None,
    storage: str | None,
    budget: str | None = None,
) -> int:
    exporter: Any = None
    with view:
        if metrics_port is not None:
            from ..prometheus import start_metrics_server

            try:
                exporter, server = start_metrics_server(metrics_port)
            except OSError as exc:
                raise ConfigError(
                    [
                        "--metrics-port: must be a free port we may listen on"
                        f" ({exc.strerror}) (got {metrics_port})"
                    ]
                ) from None
            view.line(event="metrics", url=f"http://127.0.0.1:{server.server_port}/metrics")
        from ._market import run_market

        market = anyio.run(
            lambda: run_market(view, quick=quick, url=url, exporter=exporter, budget=budget)
        )
        klines = [market.klines[t] for t in sorted(market.klines)]
        view.line(
            event="market_done",
            seconds=round(market.duration, 1),
            messages=market.stats.get("messages_received"),
            closed_klines=len(klines),
            gaps=len(market.gaps),
            backfilled=view.backfilled,
            faults=len(market.faults),
            failures=view.failures,  # the live view's count, the report's failure table
        )
        training = None
        try:
            import optuna  # noqa: F401
            import torch  # noqa: F401
        except ImportError as exc:
            view.line(
                event="training",
                skipped=f'{exc.name} is not installed (pip install "regulator[demo]")',
            )
        else:
            from ._training import WINDOW, run_study

            if len(klines) < WINDOW + 20:
                view.line(event="training", skipped=f"only {len(klines)} closed klines")
            else:
                training = run_study(
                    klines,
                    view,
                    quick=quick,
                    storage=storage or f"sqlite:///{(folder / 'study.db').resolve()}",
                    exporter=exporter,
                )
        view.phase = "writing the report"
        view.refresh()
        from ._report import write_report

        path = write_report(
            folder,
            market,
            training,
            patterns=market.patterns,
            simulated_patterns=_simulated_patterns(),
        )
    print(format_kv(event="report", path=str(path.resolve())))
    print(format_kv(event="demo_done", seconds=round(time.perf_counter() - started, 1)))
    return 0
