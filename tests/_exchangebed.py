"""The exchange simulator behind the fault proxy, both on the simulator's loop thread."""

from __future__ import annotations

from typing import Any

from _faultbed import Certs
from regulator.fsm import ConnectionConfig
from regulator.specs.exchange import Exchange, MarketConfig
from regulator.specs.exchange import FaultProxy as Proxy

#: a stream that reconnects within a fraction of a second and never alarms: the config of the
#: fault-through-the-proxy tests (backfill, order books)
FAST_RECONNECT = ConnectionConfig(
    initial_delay=0.05,
    max_delay=0.3,
    jitter=0.0,
    ping_interval=0.5,
    pong_timeout=0.5,
    handshake_timeout=2.0,
    alarm_failures=30,
    alarm_window=10.0,
)


class ExchangeBed:
    def __init__(self, certs: Certs, **exchange: Any) -> None:
        market = exchange.pop("market", MarketConfig(trades_per_second=100.0, speed=60.0))
        self.certs = certs
        self.exchange = Exchange(ssl_context=certs.server_context(), market=market, **exchange)
        self.proxy: Proxy | None = None

    def __enter__(self) -> ExchangeBed:
        self.exchange.start()
        self.proxy = Proxy(self.exchange.port)
        self.exchange.call(self.proxy.start)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proxy is not None
        self.exchange.call(self.proxy.aclose)
        self.exchange.stop()

    @property
    def url(self) -> str:
        assert self.proxy is not None
        return f"wss://127.0.0.1:{self.proxy.port}"

    def reset(self) -> None:
        assert self.proxy is not None
        self.exchange.call(self.proxy.reset_all)

    def black_hole(self, on: bool = True) -> None:
        assert self.proxy is not None
        self.proxy.black_hole = on
