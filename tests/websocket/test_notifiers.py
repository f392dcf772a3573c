"""Notifiers: the webhook against a real local HTTP server, logging, payloads."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from regulator.adapters.websocket import LoggingNotifier, WebhookNotifier, notice_payload
from regulator.fsm import Alarm, AlarmResolved

pytestmark = pytest.mark.anyio

ALARM = Alarm(
    at=12.0,
    failures_in_window=4,
    window=300.0,
    threshold=3,
    last_kind="ssl",
    last_reason="DECRYPTION_FAILED_OR_BAD_RECORD_MAC",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Hook:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                hook.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(hook.statuses.pop(0) if hook.statuses else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def hook() -> Iterator[Hook]:
    running = Hook([500])
    running.thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.mark.spec("R1.3")
async def test_webhook_posts_json_and_retries_once(hook: Hook) -> None:
    await WebhookNotifier(hook.url, timeout=2.0, retry_delay=0.01, source="eth-feed")(ALARM)
    assert len(hook.bodies) == 2  # a 500, then the retry
    body = hook.bodies[-1]
    assert body["type"] == "alarm" and body["source"] == "eth-feed"
    assert body["failures_in_window"] == 4 and body["last_reason"] == ALARM.last_reason


async def test_webhook_gives_up_after_its_retry(hook: Hook) -> None:
    hook.statuses[:] = [503, 503]
    with pytest.raises(Exception, match="503"):
        await WebhookNotifier(hook.url, timeout=2.0, retry_delay=0.01)(ALARM)
    assert len(hook.bodies) == 2


async def test_logging_notifier_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "regulator.connection")
    await LoggingNotifier()(ALARM)
    await LoggingNotifier()(
        AlarmResolved(at=20.0, raised_at=12.0, duration=8.0, failures_since_raised=1)
    )
    levels = [(r.levelname, r.getMessage().split()[0]) for r in caplog.records]
    assert levels == [("ERROR", "event=notify_alarm"), ("INFO", "event=notify_resolved")]


def test_payloads_are_json() -> None:
    json.dumps(notice_payload(ALARM))
    assert notice_payload(ALARM)["type"] == "alarm"


@pytest.mark.spec("R3.1")
def test_payload_carries_wall_time_as_iso_8601_utc() -> None:
    import attrs

    alarm = attrs.evolve(ALARM, wall_at=1_767_572_220.25)
    payload = notice_payload(alarm, source="eth")
    assert payload["wall_at"] == 1_767_572_220.25
    assert payload["wall_at_iso"] == "2026-01-05T00:17:00.250Z"
    assert notice_payload(ALARM)["wall_at_iso"] is None  # a host that passes no wall time
