"""The demo: the host system in miniature (``regulator demo``).

What it binds
-------------
Everything, as a host would: the Binance wing against the exchange simulator through the
fault proxy (``regulator.specs.exchange``), the torch wing under an Informer trained with
GMADL, the Optuna and Prometheus bindings, and a report. It is an example of use, not a
library part: nothing but the command line imports it.

May import: ``regulator.fsm``, ``regulator.specs``, every wing; matplotlib, rich, optuna.

Data flow
---------
::

    _run.run_demo
      1. _market.run_market: Exchange --FaultProxy (scheduled faults)--> BinanceStream
             --> klines, trades, gaps, state changes --> MarketRecord, _view (live or key=value)
      2. _training.run_study: closed klines --> _informer.Informer + GMADL, float16 autocast,
             GuardedGradScaler, Optuna (ScalerTrial) --> TrainingRecord, _view
      3. _report.write_report: MarketRecord + TrainingRecord --> <report>/index.html
"""

from ._run import run_demo as run_demo

__all__ = ["run_demo"]
