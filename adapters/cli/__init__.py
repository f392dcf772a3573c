"""The ``regulator`` command line: a host above the wings.

What it binds
-------------
Nothing new: it parses arguments and files, then calls the pure machines (``config``,
``simulate``, ``diagram``, ``docs``), the Binance wing (``stream``) or the demo (``demo``).

May import: ``regulator.fsm``, every wing, the demo. Nothing below imports it.

Data flow
---------
::

    argv --argparse--> _main.main --> config / simulate (regulator.fsm)
                                 --> diagram (_diagram: python-statemachine's own renderers)
                                 --> docs generate (_docgen: pages drawn from the code)
                                 --> stream (_stream: BinanceStream, events as JSON lines)
                                 --> demo (regulator.adapters.demo)

Exit status: 0 on success, 2 when the input is rejected (every problem on stderr, one a line).
"""

from ._main import main as main

__all__ = ["main"]
