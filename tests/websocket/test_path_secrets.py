"""A token in the URL's path (a user-data listenKey: ``/ws/<listenKey>``) never leaves the
library (issue 27 item 9): not in a log line or its stack, the stats, the failure history or
an exception, against a real TLS server on asyncio and trio."""

from __future__ import annotations

import json
import logging
import secrets
import string
from urllib.parse import quote

import anyio
import pytest
from _faultbed import Certs, ConnectionSettings
from _hostile import HostileServer
from hypothesis import given
from hypothesis import strategies as st
from regulator.adapters.websocket import ConnectionClosedError, ResilientWebSocket
from regulator.adapters.websocket._redact import redact_url
from regulator.fsm import ConnectionConfig

FAST = ConnectionSettings(initial_delay=0.02, max_delay=0.05, jitter=0.0, handshake_timeout=5.0)
ALNUM = string.ascii_letters + string.digits


def _key(length: int) -> str:
    # letters and digits both present, like Binance's listenKeys (60 characters)
    return "a1" + "".join(secrets.choice(ALNUM) for _ in range(length - 2))


KEYS = {
    "listenKey (60)": _key(60),
    "short token (20)": _key(20),
    "uuid": str(secrets.token_hex(16)),
}


@pytest.mark.anyio
@pytest.mark.parametrize("key", KEYS.values(), ids=KEYS.keys())
async def test_a_path_token_appears_nowhere(
    certs: Certs, caplog: pytest.LogCaptureFixture, key: str
) -> None:
    caplog.set_level(logging.DEBUG)
    with HostileServer(certs.server_context(), "bad_accept") as server:
        url = server.url.replace("/stream", f"/ws/{key}")
        ws = ResilientWebSocket(
            url,
            config=ConnectionConfig(
                **ConnectionSettings({**FAST, "max_retries": 1, "alarm_failures": 0})
            ),
            ssl_context=certs.client_context(),
        )
        async with ws:
            with anyio.fail_after(20), pytest.raises(ConnectionClosedError) as caught:
                async for _ in ws:
                    pass
    assert ws.machine.failures == 2
    seen = {
        "exception": f"{caught.value} {caught.value!r}",
        "stats": json.dumps(ws.get_connection_stats(), default=str),
        "history": repr(ws.machine.history),
        "logs": "\n".join(
            logging.Formatter("%(name)s %(message)s").format(r) for r in caplog.records
        ),
        "name": ws.name,
    }
    assert any(r.exc_info for r in caplog.records)  # the stack was logged, redacted
    for where, text in seen.items():
        for spelling in (key, quote(key, safe="")):
            assert spelling not in text, where
    assert "/ws/***" in seen["stats"]


@given(key=st.text(alphabet=ALNUM, min_size=16, max_size=200))
def test_any_token_like_segment_is_masked(key: str) -> None:
    if not (any(c.isdigit() for c in key) and any(c.isalpha() for c in key)) and len(key) < 32:
        return  # a word or a number: not token-like under 32 characters
    assert redact_url(f"wss://h/ws/{key}") == "wss://h/ws/***"
    assert redact_url(f"wss://h/ws/{quote(key)}/x") == "wss://h/ws/***/x"


@pytest.mark.parametrize(
    "url",
    [
        "wss://stream.binance.com:9443/stream?streams=btcusdt@kline_1m/ethusdt@trade",
        "wss://h/ws/btcusdt@depth20@100ms",
        "wss://h/api/v3/userDataStream",
        "wss://data-stream.binance.vision/ws/bnbbtc@aggTrade",
    ],
)
def test_stream_names_and_words_are_kept(url: str) -> None:
    assert redact_url(url) == url
