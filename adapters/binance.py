"""Binance spot market streams on the resilient socket (extra ``ws``).

.. code-block:: python

    from regulator.adapters.binance import BinanceStream

    async with BinanceStream(["ethusdt@kline_1m", "ethusdt@aggTrade"]) as stream:
        async for event in stream:  # {"stream": ..., "data": ...}
            ...
"""

from ._binance import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from ._binance import BinanceRequestError as BinanceRequestError
from ._binance import BinanceStream as BinanceStream
from ._binance import RequestTimeout as RequestTimeout
from ._binance import validate_streams as validate_streams
from ._binance_tracker import Gap as Gap
from ._binance_tracker import StreamTracker as StreamTracker
from ._binance_tracker import event_identity as event_identity
from ._pacing import AttemptBudget as AttemptBudget
from ._pacing import RequestPacer as RequestPacer
from ._pacing import shared_attempt_budget as shared_attempt_budget

__all__ = [
    "DEFAULT_BASE_URL",
    "AttemptBudget",
    "BinanceRequestError",
    "BinanceStream",
    "Gap",
    "RequestPacer",
    "RequestTimeout",
    "StreamTracker",
    "event_identity",
    "shared_attempt_budget",
    "validate_streams",
]
