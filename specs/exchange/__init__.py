"""A Binance-compatible exchange simulator and a fault-injecting proxy on 127.0.0.1, for tests
and demos (extras ``ws``).

One TLS origin serves the spot REST market data (``/api/v3/...``) and the WebSocket streams,
by the exchange's documentation: shapes, parameters, errors, request weights and connection
limits. The market is generated; its history is the streams' history, so what REST returns is
what the streams published.

.. code-block:: python

    from regulator.specs.exchange import Exchange, MarketConfig

    with Exchange(ssl_context=server_ctx, market=MarketConfig()) as exchange:
        ...  # BinanceStream(["ethusdt@kline_1m"], base_url=exchange.url, ssl_context=client_ctx)
        ...  # GET f"{exchange.rest_url}/api/v3/klines?symbol=ETHUSDT&interval=1m"

Modules, one concern each: ``_market`` (the generated market and its history), ``_book`` (its
order book, its diffs, the book at any update id), ``_streams``
(stream names, payloads, cadences), ``_requests`` (the control requests), ``_rest`` (REST
endpoints), ``_limits`` (attempts and request weight: 429, then 418), ``_connection`` (what
is kept per connection), ``_http`` (REST answers, status lines), ``_sessions`` (upgrades and
stream connections: requests, limits, keepalive, close), ``_server`` (the origin, the market's
loops and the commands tests use).
"""

from .._proxy import FaultProxy as FaultProxy
from ._connection import ConnectionRecord as ConnectionRecord
from ._market import MarketConfig as MarketConfig
from ._server import Exchange as Exchange

__all__ = ["ConnectionRecord", "Exchange", "FaultProxy", "MarketConfig"]
