"""The Binance wing (extra ``ws``): spot market streams on the resilient socket.

What it binds
-------------
Binance's combined-stream endpoint (``/stream``) and its request/reply protocol (SUBSCRIBE,
UNSUBSCRIBE, LIST_SUBSCRIPTIONS) to ``ResilientWebSocket``, adding what the exchange's rules
demand: paced requests, a process-wide connection-attempt budget, lossless rotation before the
24 h cut, and gap detection on the exchange's own ids.

May import: ``regulator.fsm`` and the WebSocket wing. Never the command line or the demo.

Data flow
---------
::

    ResilientWebSocket (one per leg) --a read's messages--> _inbound.Inbound._on_batch
        reply {"id": ...}         --> _requests (pending futures by id)
        event {"stream", "data"}  --> _tracker (identity, gaps) --> buffer --> host
        serverShutdown / age      --> _rotation (make-before-break, de-duplicated merge)
        a gap (backfill=True)     --> _backfill (the range from REST, _rest.RestClient paced
                                      by request weight; the stream's live events wait)
        a depth event of a book  --> _book_keeper --> _order_book.OrderBook (pure; a snapshot
                                      from REST when it is unsynced: order_book(symbol))
    (re)connect --> _subscriptions (SUBSCRIBE, then LIST_SUBSCRIPTIONS verifies)
    requests --> _pacing.RequestPacer (frames/s) --> leg.send
    connects --> a Budget (attempts per window, shared by every stream of the process:
                 _pacing.AttemptBudget; of the host: _ledger.FileBudget; of every host
                 behind one address: _redis.RedisBudget; protocol and fallback in _budget)
    statistics <-- _stats.Statistics (counters summed over every connection)

``BinanceStream`` (``_stream``) is assembled from one mixin per concern: ``Inbound``
(on ``Rotation``), ``Subscriptions``, ``Statistics`` and ``OrderBooks``.

.. code-block:: python

    from regulator.adapters.binance import BinanceStream

    async with BinanceStream(["ethusdt@kline_1m", "ethusdt@aggTrade"]) as stream:
        async for event in stream:  # {"stream": ..., "data": ...}
            ...
"""

from ._budget import Budget as Budget
from ._budget import SharedBudget as SharedBudget
from ._budget import StoreUnavailable as StoreUnavailable
from ._budget import WeightBudget as WeightBudget
from ._budget import budget_from_url as budget_from_url
from ._budget import shared_budget as shared_budget
from ._ledger import FileBudget as FileBudget
from ._order_book import OrderBook as OrderBook
from ._order_book import OrderBookError as OrderBookError
from ._pacing import AttemptBudget as AttemptBudget
from ._pacing import RequestPacer as RequestPacer
from ._pacing import shared_attempt_budget as shared_attempt_budget
from ._redis import RedisBudget as RedisBudget
from ._requests import BinanceRequestError as BinanceRequestError
from ._requests import RequestTimeout as RequestTimeout
from ._rest import DEFAULT_REST_URL as DEFAULT_REST_URL
from ._rest import RestClient as RestClient
from ._rest import RestError as RestError
from ._stream import DEFAULT_BASE_URL as DEFAULT_BASE_URL
from ._stream import BinanceStream as BinanceStream
from ._stream import validate_streams as validate_streams
from ._tracker import Gap as Gap
from ._tracker import StreamTracker as StreamTracker
from ._tracker import event_identity as event_identity

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_REST_URL",
    "AttemptBudget",
    "BinanceRequestError",
    "BinanceStream",
    "Budget",
    "FileBudget",
    "Gap",
    "OrderBook",
    "OrderBookError",
    "RedisBudget",
    "RequestPacer",
    "RequestTimeout",
    "RestClient",
    "RestError",
    "SharedBudget",
    "StoreUnavailable",
    "StreamTracker",
    "WeightBudget",
    "budget_from_url",
    "event_identity",
    "shared_attempt_budget",
    "shared_budget",
    "validate_streams",
]
