"""One redaction policy on every channel a secret could leave by: each secret goes through a
real connection (a hostile TLS server answering a bad 101, so every attempt fails and alarms),
a webhook that fails (its URL carries a token), the exceptions, the stats, the logs (ours and
httpx's) and the metrics; then every channel is searched for it (issue 17)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import anyio
import pytest
from _faultbed import Certs
from _hostile import HostileServer
from regulator.adapters.prometheus import MetricsExporter
from regulator.adapters.websocket import (
    CallbackNotifier,
    ConnectionClosedError,
    ResilientWebSocket,
    WebhookNotifier,
    redact_url,
)
from regulator.adapters.websocket._redact import RedactionPolicy, redaction_policy
from regulator.fsm import ConnectionConfig

pytestmark = pytest.mark.anyio

LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2VjcmV0"
SECRETS = {
    "password": "PASSWORD-1",
    "listenKey": LISTEN_KEY,
    "jwt": JWT,
    "session": "SESSION-2",
    "token (percent-encoded)": "tok/en+3",
    "apiKey": "APIKEY-4",
    "X-MBX-APIKEY": "MBXKEY-5",
    "Authorization": "BEARER-6",
    "webhook token": "HOOKTOKEN-7",
}


class _NotFound(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook?token={SECRETS['webhook token']}"
    server.shutdown()
    server.server_close()


def _url(port: int) -> str:
    return (
        f"wss://trader:{SECRETS['password']}@127.0.0.1:{port}/ws/{LISTEN_KEY}/{JWT}"
        f"?session={SECRETS['session']}&token=tok%2Fen%2B3&apiKey={SECRETS['apiKey']}&x=1"
    )


def _leaks(text: str) -> list[str]:
    spellings = {**SECRETS, "token (decoded)": "tok/en+3", "token (raw)": "tok%2Fen%2B3"}
    return [name for name, secret in spellings.items() if secret in text]


async def test_no_secret_leaves_by_any_channel(
    certs: Certs, hook_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, httpx's INFO request lines included
    notices: list[str] = []
    config = ConnectionConfig(
        initial_delay=0.05,
        max_delay=0.1,
        jitter=0.0,
        handshake_timeout=2.0,
        alarm_failures=1,
        alarm_window=30.0,
        max_retries=3,
    )
    headers = {"X-MBX-APIKEY": SECRETS["X-MBX-APIKEY"], "Authorization": SECRETS["Authorization"]}
    with HostileServer(certs.server_context(), "bad_accept") as server:
        ws = ResilientWebSocket(
            _url(server.port),
            config=config,
            ssl_context=certs.client_context(),
            headers=headers,
            notifiers=[
                CallbackNotifier(lambda notice: notices.append(json.dumps(notice.as_dict()))),
                WebhookNotifier(hook_url, retries=0),
            ],
        )
        exporter = MetricsExporter()
        exporter.register(ws, name=ws.url)  # a careless host labels by the raw URL
        async with ws:
            with anyio.fail_after(10):
                while not ws.machine.history:
                    await anyio.sleep(0.001)
            # scraped between attempts: a closed connection leaves the exporter's output
            metrics = "\n".join(
                f"{sample.name}{sample.labels}"
                for family in exporter.collect()
                for sample in family.samples
            )
            with anyio.fail_after(20), pytest.raises(ConnectionClosedError) as caught:
                async for _ in ws:
                    pass
            with anyio.fail_after(10):
                while ws.notifier_failures < 1:
                    await anyio.sleep(0.01)
    assert server.upgrades >= 1
    assert "wss://***@127.0.0.1" in metrics  # the label is there, masked
    assert any("notifier_failed" in r.getMessage() for r in caplog.records)
    assert any(r.name == "httpx" for r in caplog.records)  # httpx did log its request line
    channels = {
        "logs": "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records),
        "stats": json.dumps(ws.get_connection_stats(), default=str),
        "records": "\n".join(f"{r.reason} {r.detail}" for r in ws.machine.history),
        "exception": f"{caught.value} {caught.value.reason}",
        "notices": "\n".join(notices),
        "metrics": metrics,
        "name": ws.name + ws.safe_url,
    }
    leaked = {channel: _leaks(text) for channel, text in channels.items() if _leaks(text)}
    assert leaked == {}


def test_a_bad_secret_header_value_is_named_but_never_shown() -> None:
    with pytest.raises(ValueError, match=r"headers\['Authorization'\]: must contain no CR") as e:
        ResilientWebSocket("wss://127.0.0.1:1/", headers={"Authorization": "Bearer s3cr3t\n"})
    assert "s3cr3t" not in str(e.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://u:pw@h/x", "wss://***@h/x"),
        ("wss://h/x?jwt=abc&session=def&x=1", "wss://h/x?jwt=***&session=***&x=1"),
        ("wss://h/x?api%4Bey=abc", "wss://h/x?apiKey=***"),
        (f"wss://h/ws/{LISTEN_KEY}", "wss://h/ws/***"),
        (f"wss://h/{JWT}/x", "wss://h/***/x"),
        ("wss://h/x?passwd=abc&signature=def", "wss://h/x?passwd=***&signature=***"),
    ],
)
def test_the_policy_masks_each_kind_of_url_secret(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_policy_is_extensible_by_the_host() -> None:
    policy = RedactionPolicy()
    assert policy.url("wss://h/acct-12345?tenant=acme") == "wss://h/acct-12345?tenant=acme"
    policy.add_names("tenant")
    policy.add_pattern(r"^acct-[0-9]+$")
    assert policy.url("wss://h/acct-12345?tenant=acme") == "wss://h/***?tenant=***"
    assert policy.text("failed: tenant=acme at wss://h/acct-12345") == (
        "failed: tenant=*** at wss://h/***"
    )
    assert redaction_policy.url("wss://h/x?tenant=acme").endswith("tenant=acme")  # separate
