"""A Binance-compatible exchange simulator and a fault-injecting proxy on 127.0.0.1, for tests
and demos (extras ``ws``).

.. code-block:: python

    from regulator.specs.exchange import Exchange, MarketConfig

    with Exchange(ssl_context=server_ctx, market=MarketConfig(speed=60)) as exchange:
        ...  # BinanceStream(["ethusdt@kline_1m"], base_url=exchange.url, ssl_context=client_ctx)
"""

from ._exchange import ConnectionRecord as ConnectionRecord
from ._exchange import Exchange as Exchange
from ._exchange import MarketConfig as MarketConfig
from ._proxy import FaultProxy as FaultProxy

__all__ = ["ConnectionRecord", "Exchange", "FaultProxy", "MarketConfig"]
