"""regulator.adapters: the machines bound to real things.

Each adapter lives in its own public module so that importing this package pulls in no
optional dependency:

* ``regulator.adapters.torch``: ``GuardedGradScaler``, ``check_finite`` (extra ``torch``);
* ``regulator.adapters.websocket``: ``ResilientWebSocket``, notifiers (extra ``ws``);
* the ``regulator`` command line (``regulator.adapters._cli``).
"""

__all__: list[str] = []
