"""regulator.adapters: the machines bound to real things, one wing per binding.

Layers (imports point down only; ``tests/test_layout.py`` checks every edge by AST)::

    cli/, demo/                      hosts: the ``regulator`` command, the demo system
       |
    websocket/  binance/  torch/     bindings: each binds a machine to one real part
    optuna.py   prometheus.py        (binance builds on websocket; prometheus reads both)
       |
    regulator.fsm                    the pure machines: no I/O, no clock, no torch

Each binding is a public module that imports its optional dependency only when imported
itself, so importing this package pulls in none:

* ``regulator.adapters.websocket``: ``ResilientWebSocket``, notifiers (extra ``ws``);
* ``regulator.adapters.binance``: ``BinanceStream`` (extra ``ws``);
* ``regulator.adapters.torch``: ``GuardedGradScaler``, ``check_finite`` (extra ``torch``);
* ``regulator.adapters.optuna``: ``ScalerTrial`` (extra ``optuna``);
* ``regulator.adapters.prometheus``: ``MetricsExporter`` (extra ``metrics``);
* ``regulator.adapters.cli``: the ``regulator`` command line; ``regulator.adapters.demo``.
"""

__all__: list[str] = []
