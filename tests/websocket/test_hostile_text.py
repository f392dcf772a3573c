"""No string a server or a user writes can freeze the library (issue 27 item 1): redaction and
log formatting are linear in their input, measured on adversarial strings from 1 KB to 1 MB,
and through a real TLS server on 127.0.0.1 (asyncio and trio) no server string (a 101's
Upgrade header, a 302's Location, a reason phrase httpx logs, a webhook's 500 reason) holds
the event loop for 50 ms."""

from __future__ import annotations

import gc
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from _faultbed import Certs, ConnectionSettings
from _hostile import accept_for
from hypothesis import given, settings
from hypothesis import strategies as st
from regulator.adapters.binance._stream import validate_streams
from regulator.adapters.binance._tracker import kline_interval_ms
from regulator.adapters.websocket import ResilientWebSocket, WebhookNotifier
from regulator.adapters.websocket._inputs import check_headers
from regulator.adapters.websocket._redact import RedactionPolicy, redaction_policy
from regulator.adapters.websocket._socket import MAX_REASON
from regulator.fsm import ConnectionConfig, format_kv, parse_kv

FAST = ConnectionSettings(
    initial_delay=0.02,
    max_delay=0.05,
    jitter=0.0,
    ping_interval=30.0,
    pong_timeout=5.0,
    handshake_timeout=5.0,
)

# -- adversarial shapes: each defeats a naive pattern (nested or overlapping quantifiers, a run
# rescanned from each of its positions, a separator run backtracked into) ------------------------
SHAPES: dict[str, Callable[[int], str]] = {
    "key*n (the issue's)": lambda n: "key" * (n // 3),
    "one word, then =": lambda n: "k" * (n - 1) + "=",
    "apikey=apikey=...": lambda n: "apikey=" * (n // 7),
    "a secret name, spaces, no value": lambda n: "token" + " " * (n - 6) + ":",
    "bearer, spaces": lambda n: "auth=bearer" + " " * (n - 11),
    "scheme chars, no ://": lambda n: "a+." * (n // 3),
    "a:/ repeated": lambda n: "a:/" * (n // 3),
    "one URL, many segments": lambda n: "wss://h/" + "key/" * (n // 4),
    "URLs back to back": lambda n: "a://" * (n // 4),
    "a query of secret names": lambda n: "http://h/?" + "key=1&" * (n // 6),
    "JWT-like": lambda n: "eyJ" + "a." * (n // 2),
    "controls": lambda n: "\x1b\r\u2028\x85" * (n // 4),
}


def _seconds(fn: Callable[[], object], repeat: int) -> float:
    """The least CPU time of this thread over ``repeat`` runs: other processes on a loaded
    machine do not count (wall time would)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def _assert_linear(fn: Callable[[str], object], shape: Callable[[int], str]) -> None:
    """From 1 KB to 1 MB the time grows like the length: 1 MB costs at most 6x the linear
    extrapolation from 32 KB (slack for caches and the allocator; a quadratic pattern costs
    1000x, the issue's 10^4x and more)."""
    for n in (1_000, 32_000):  # small sizes: warm, and no freeze at all

        def warm(n: int = n) -> object:
            return fn(shape(n))

        assert _seconds(warm, 1) < 1.0
    small = _seconds(lambda: fn(shape(32_000)), 3)
    big_text = shape(1_000_000)
    big = _seconds(lambda: fn(big_text), 1)
    assert big <= 6 * (1_000_000 / 32_000) * small + 0.05, (big, small)


@pytest.mark.spec("R3.1")
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_redaction_is_linear_on_adversarial_text(shape: Callable[[int], str]) -> None:
    _assert_linear(redaction_policy.text, shape)


LOG_SHAPES = {k: SHAPES[k] for k in ("key*n (the issue's)", "controls", "a:/ repeated")}
LOG_SHAPES["quotes and backslashes"] = lambda n: '\\"= ' * (n // 4)


@pytest.mark.spec("R5.2")
@pytest.mark.parametrize("shape", LOG_SHAPES.values(), ids=LOG_SHAPES.keys())
def test_log_formatting_and_parsing_are_linear(shape: Callable[[int], str]) -> None:
    _assert_linear(lambda s: parse_kv(format_kv(event="failure", reason=s)), shape)


def test_a_host_extended_policy_stays_linear() -> None:
    policy = RedactionPolicy()
    policy.add_names("tenant", "acct")
    _assert_linear(policy.text, lambda n: "tenantacct" * (n // 10))


def test_a_megabyte_path_segment_is_masked_unread() -> None:
    policy = RedactionPolicy()
    policy.add_pattern(r"^(a+)+$")  # a host's own catastrophic pattern never sees it
    segment = "a" * 1_000_000 + "!"
    start = time.perf_counter()
    assert policy.url(f"wss://h/{segment}/x") == "wss://h/***/x"
    assert time.perf_counter() - start < 1.0


# -- a differential test: the linear matcher masks what the old (exponential) one did ----------
_OLD_NAMES = ("key", "token", "secret", "auth", "session")


def _old_pairs(text: str) -> str:
    """The pre-issue-27 pattern (nested quantifiers around the secret word): the reference
    for what is masked, on texts short enough for it."""
    pattern = re.compile(
        r"(?P<name>[A-Za-z0-9_\-]*(?:" + "|".join(_OLD_NAMES) + r")[A-Za-z0-9_\-]*)"
        r"(?P<sep>\s*[=:]\s*|\"\s*:\s*\"|'\s*:\s*')"
        r"(?P<value>(?:(?:bearer|basic|token|digest)\s+)?[^\s&,;'\"]+)",
        re.I,
    )
    return pattern.sub(
        lambda m: (
            m.group(0)
            if m.group("value").strip("*") == ""
            else f"{m.group('name')}{m.group('sep')}***"
        ),
        text,
    )


_PIECES = st.sampled_from(
    [
        "key",
        "Token",
        "secret",
        "a",
        "x-",
        "_",
        "=",
        ":",
        " ",
        "\t",
        '"',
        "'",
        "&",
        ",",
        "***",
        "bearer ",
        "Basic ",
        "1",
        "auth",
        "session",
        "id",
        "\n",
        "é",
        "==",
    ]
)


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(_PIECES, max_size=14))
def test_the_linear_matcher_masks_what_the_old_one_did(pieces: list[str]) -> None:
    text = "".join(pieces)
    policy = RedactionPolicy(names=_OLD_NAMES, patterns=())
    assert policy._mask_pairs(text) == _old_pairs(text)


# -- through a real TLS server: the event loop is never held -------------------------------------
class LoopWatch:
    """The most CPU time the event loop's thread spent between two of its ticks. CPU time of
    this thread (not wall time), so other processes on a loaded machine do not count, and
    the server's own threads do not either."""

    def __init__(self) -> None:
        self.worst = 0.0

    async def run(self) -> None:
        while True:
            before = time.thread_time()
            await anyio.sleep(0.001)
            self.worst = max(self.worst, time.thread_time() - before)


class TextServer:
    """A raw TLS HTTP server on 127.0.0.1: connection ``i`` gets ``answers[i]`` (the last one
    repeats), a function of the request's Sec-WebSocket-Key; after the answer it holds the
    socket open until the test ends."""

    def __init__(self, context: ssl.SSLContext, answers: list[Callable[[str], bytes]]) -> None:
        self.context = context
        self.answers = answers
        self.served = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TextServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            answer = self.answers[min(self.served, len(self.answers) - 1)]
            self.served += 1
            threading.Thread(target=self._serve, args=(raw, answer), daemon=True).start()

    def _serve(self, raw: socket.socket, answer: Callable[[str], bytes]) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    request += chunk
                key = ""
                for line in request.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "sec-websocket-key":
                        key = value.strip()
                conn.sendall(answer(key))
                self.stopping.wait()
        except (OSError, ssl.SSLError):
            return


# server strings up to what httpx's parser accepts in one head (h11 bounds it near 100 KB)
SERVER_SIZES = (900, 1_350, 16_000, 60_000)
SERVER_SHAPES = [SHAPES["key*n (the issue's)"], SHAPES["apikey=apikey=..."], SHAPES["a:/ repeated"]]
SERVER_STRINGS = [shape(n) for n in SERVER_SIZES for shape in SERVER_SHAPES]


def _upgrade_with(value: str) -> Callable[[str], bytes]:
    def answer(key: str) -> bytes:
        return (
            "HTTP/1.1 101 Switching Protocols\r\n"
            f"Upgrade: {value}\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(key)}\r\n\r\n"
        ).encode()

    return answer


def _redirect_to(value: str) -> Callable[[str], bytes]:
    def answer(key: str) -> bytes:
        return (
            f"HTTP/1.1 302 Found\r\nLocation: https://127.0.0.1/{value}\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    return answer


def _reason(value: str, status: str = "101") -> Callable[[str], bytes]:
    def answer(key: str) -> bytes:
        if status != "101":
            return f"HTTP/1.1 {status} {value}\r\nContent-Length: 0\r\n\r\n".encode()
        return (
            f"HTTP/1.1 101 {value}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_for(key)}\r\n\r\n"
        ).encode()

    return answer


async def _watched(run: Callable[[], Any]) -> float:
    # What earlier tests left (megabyte strings, Hypothesis' objects) is collected and frozen
    # first: a full collection of it in the loop's thread is not a server string's doing.
    gc.collect()
    gc.freeze()
    watch = LoopWatch()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch.run)
            await run()
            tg.cancel_scope.cancel()
    finally:
        gc.unfreeze()
    return watch.worst


class Records:
    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def __iter__(self) -> Iterator[logging.LogRecord]:
        return iter(self.caplog.records)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Records:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="httpx")  # httpx logs the reason phrase at INFO
    return Records(caplog)


def _one_line_each(records: Records) -> None:
    for record in records:
        message = record.getMessage()
        assert len(message.splitlines()) <= 1, message[:200]
        assert len(message) < 8_192, (record.name, len(message))


@pytest.mark.anyio
@pytest.mark.spec("R3.1")
async def test_no_upgrade_header_holds_the_loop(certs: Certs, records: Records) -> None:
    # one socket, one string per attempt: a bad 101 is retried
    with TextServer(certs.server_context(), [_upgrade_with(s) for s in SERVER_STRINGS]) as server:
        ws = ResilientWebSocket(
            f"wss://127.0.0.1:{server.port}/ws/stream",
            config=ConnectionConfig(
                **ConnectionSettings({**FAST, "max_retries": None, "history_size": 100})
            ),
            ssl_context=certs.client_context(),
        )

        async def run() -> None:
            async with ws:
                with anyio.fail_after(60):
                    while ws.machine.failures < len(SERVER_STRINGS):
                        await anyio.sleep(0.01)

        worst = await _watched(run)
    assert worst < 0.050, f"the event loop was held {worst * 1000:.0f} ms"
    reasons = [r.reason for r in ws.machine.history]
    assert len(reasons) >= len(SERVER_STRINGS)
    for reason in reasons:
        assert "Upgrade" in reason
        assert len(reason) <= MAX_REASON + 40
    assert any("more characters" in r for r in reasons)  # named, never repeated whole
    _one_line_each(records)


async def _one_socket_each(
    certs: Certs, texts: list[str], answer: Callable[[str], Callable[[str], bytes]], until: str
) -> list[ResilientWebSocket]:
    done = []
    for text in texts:
        with TextServer(certs.server_context(), [answer(text)]) as server:
            ws = ResilientWebSocket(
                f"wss://127.0.0.1:{server.port}/ws/stream",
                config=ConnectionConfig(**FAST),
                ssl_context=certs.client_context(),
            )

            async def run(ws: ResilientWebSocket = ws) -> None:
                async with ws:
                    with anyio.fail_after(20):
                        while ws.state != until:
                            await anyio.sleep(0.01)

            worst = await _watched(run)
        assert worst < 0.050, f"the event loop was held {worst * 1000:.0f} ms ({len(text)} B)"
        done.append(ws)
    return done


# the sizes, and the largest head httpx accepts
FEW_STRINGS = SERVER_STRINGS[:3] + SERVER_STRINGS[-3:]


@pytest.mark.anyio
@pytest.mark.spec("R3.1")
async def test_no_redirect_location_holds_the_loop(certs: Certs, records: Records) -> None:
    sockets = await _one_socket_each(certs, FEW_STRINGS, _redirect_to, "closed")
    for ws in sockets:
        (record,) = ws.machine.history
        assert record.kind == "fatal" and "redirected to" in record.reason
        assert len(record.reason) <= MAX_REASON + 40
    _one_line_each(records)


@pytest.mark.anyio
@pytest.mark.spec("R3.1")
async def test_a_reason_phrase_httpx_logs_never_holds_the_loop(
    certs: Certs, records: Records
) -> None:
    await _one_socket_each(certs, FEW_STRINGS, _reason, "live")
    logged = [r.getMessage() for r in records if r.name == "httpx"]
    assert any("101" in m for m in logged)
    _one_line_each(records)


@pytest.mark.anyio
@pytest.mark.spec("R3.1")
async def test_a_webhooks_500_reason_never_holds_the_loop(certs: Certs, records: Records) -> None:
    text = SHAPES["key*n (the issue's)"](60_000)
    with (
        TextServer(certs.server_context(), [_upgrade_with("nope")]) as ws_server,
        TextServer(certs.server_context(), [_reason(text, "500")]) as hook,
    ):
        notifier = WebhookNotifier(
            f"https://127.0.0.1:{hook.port}/hook?token=s3cr3t",
            retries=0,
            verify=certs.client_context(),
        )
        ws = ResilientWebSocket(
            f"wss://127.0.0.1:{ws_server.port}/ws/stream",
            config=ConnectionConfig(
                **ConnectionSettings({**FAST, "max_retries": None, "alarm_failures": 0})
            ),
            ssl_context=certs.client_context(),
            notifiers=[notifier],
        )

        async def run() -> None:
            async with ws:
                with anyio.fail_after(30):
                    while ws.notifier_failures < 1:
                        await anyio.sleep(0.01)

        worst = await _watched(run)
    assert worst < 0.050, f"the event loop was held {worst * 1000:.0f} ms"
    failed = [
        parse_kv(r.getMessage()) for r in records if "event=notifier_failed" in r.getMessage()
    ]
    assert failed
    assert "500" in failed[0]["error"] and "more characters" in failed[0]["error"]
    assert "s3cr3t" not in failed[0]["error"]
    _one_line_each(records)


def _refused(check: Callable[[str], object]) -> Callable[[str], object]:
    def run(text: str) -> object:
        try:
            return check(text)
        except ValueError as exc:
            return str(exc)

    return run


# the other patterns applied to server or user text (anchored single runs): linear too
OTHER_PATTERNS: dict[str, tuple[Callable[[str], object], Callable[[int], str]]] = {
    "stream name, many @": (_refused(lambda s: validate_streams([s])), lambda n: "a@" * (n // 2)),
    "stream name, no @": (_refused(lambda s: validate_streams([s])), lambda n: "a" * n + " "),
    "kline interval": (kline_interval_ms, lambda n: "1" * (n - 1) + "x"),
    "header name": (_refused(lambda s: check_headers({s: "v"})), lambda n: "a" * n + " "),
}


@pytest.mark.parametrize(("check", "shape"), OTHER_PATTERNS.values(), ids=OTHER_PATTERNS.keys())
def test_every_other_pattern_on_outside_text_is_linear(
    check: Callable[[str], object], shape: Callable[[int], str]
) -> None:
    _assert_linear(check, shape)
