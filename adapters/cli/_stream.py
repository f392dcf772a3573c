"""``regulator stream``: print a Binance stream's events and its lifecycle until Ctrl-C.

Events go to stdout, one strict JSON object per line (RFC 8259: pipe them anywhere; a
non-finite number a server sent, which JSON cannot hold, is written as the string ``"NaN"``,
``"Infinity"`` or ``"-Infinity"``); state changes, failures, alarms, rotations and gaps go to
stderr as the library's ``key=value`` log lines, one line per record: a failure's stack is
printed only with ``-v`` and always written to ``--log-file``. When the exchange cannot be
reached before the first connection, stderr says so in plain words.
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import anyio

from ...fsm import ConfigError, ConnectionAction, RegulatorConfig, StateChanged, load_config
from ...fsm._logfmt import escape_controls
from ..binance._stream import DEFAULT_BASE_URL, BinanceStream, validate_streams
from ..websocket._errors import ConnectionClosedError
from ..websocket._inputs import check_url
from ..websocket._redact import redact_url, redaction_policy

__all__ = ["run_stream"]

_UNREACHABLE = ("network", "timeout", "ssl")


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float as the string JSON readers agree on."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_line(event: Any) -> str:
    """One strict JSON line (no NaN/Infinity literals; ASCII, so no raw control character
    or line separator either)."""
    try:
        return json.dumps(event, separators=(",", ":"), allow_nan=False)
    except ValueError:  # rare: only a server that sent NaN pays for the second pass
        return json.dumps(_finite(event), separators=(",", ":"), allow_nan=False)


class ConsoleFormatter(logging.Formatter):
    """One line per record on the console: the message with controls escaped, and the stack
    of a failure only when ``verbose`` (the record keeps it, R3.1: --log-file writes it)."""

    def __init__(self, verbose: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose:
            return "\n".join(escape_controls(line) for line in super().format(record).split("\n"))
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return escape_controls(super().format(record))
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


class _Watcher:
    """Turns the first failures before any connection into one clear sentence."""

    def __init__(self, url: str, err: TextIO) -> None:
        self.url = redact_url(url)  # a listenKey or user:password never reaches the terminal
        self.err = err
        self.ever_live = False
        self.told = False
        self.stream: BinanceStream | None = None

    def __call__(self, leg: str, action: ConnectionAction) -> None:
        if not isinstance(action, StateChanged):
            return
        if action.target == "live":
            self.ever_live = True
        elif action.source in ("connecting", "handshaking") and not self.ever_live:
            socket = self.stream.connection if self.stream is not None else None
            history = socket.machine.history if socket is not None else ()
            kind = history[-1].kind if history else ""  # the failure just recorded
            if kind in _UNREACHABLE and not self.told:
                self.told = True
                host = urlsplit(self.url).netloc.rsplit("@", 1)[-1] or self.url
                then = (
                    "Giving up."
                    if action.target == "closed"
                    else "Retrying with backoff; Ctrl-C stops."
                )
                print(
                    f"regulator stream: cannot reach {escape_controls(host)}"
                    f" ({escape_controls(action.reason)})."
                    f" Is this machine online, and is the exchange reachable from it? {then}"
                    " --url picks another endpoint.",
                    file=self.err,
                    flush=True,
                )


def _client_context(ca: str | None) -> ssl.SSLContext | None:
    """The trust store of ``--ca``, or ConfigError naming the file and what is wrong with it."""
    if ca is None:
        return None
    try:
        return ssl.create_default_context(cafile=ca)
    except FileNotFoundError:
        raise ConfigError([f"--ca: must be an existing PEM file (got {ca!r})"]) from None
    except IsADirectoryError:
        raise ConfigError([f"--ca: must be a PEM file, not a folder (got {ca!r})"]) from None
    except OSError as exc:
        raise ConfigError(
            [f"--ca: must be a readable PEM file ({exc.strerror}) (got {ca!r})"]
        ) from None
    except ssl.SSLError:
        raise ConfigError(
            [f"--ca: must hold PEM CA certificates; none could be loaded (got {ca!r})"]
        ) from None


async def _run(
    streams: list[str],
    url: str,
    config: RegulatorConfig,
    context: ssl.SSLContext | None,
    count: int | None,
    duration: float | None,
    metrics_port: int | None,
    out: TextIO,
    err: TextIO,
) -> int:
    watcher = _Watcher(url, err)
    stream = BinanceStream(
        streams,
        base_url=url,
        config=config.connection,
        binance=config.binance,
        ssl_context=context,
        on_action=watcher,
        name="stream",
    )
    watcher.stream = stream
    server: Any = None
    if metrics_port is not None:
        from ..prometheus import start_metrics_server

        try:
            exporter, server = start_metrics_server(metrics_port)
        except OSError as exc:
            raise ConfigError(
                [
                    f"--metrics-port: must be a free port we may listen on ({exc.strerror})"
                    f" (got {metrics_port})"
                ]
            ) from None
        exporter.register(stream, name="stream")
        print(f"metrics on http://127.0.0.1:{server.server_port}/metrics", file=err, flush=True)
    printed = 0
    try:
        with anyio.move_on_after(duration if duration is not None else float("inf")):
            async with stream:
                async for event in stream:
                    out.write(json_line(event) + "\n")
                    out.flush()
                    printed += 1
                    if count is not None and printed >= count:
                        break
    except ConnectionClosedError as exc:
        print(
            "regulator stream: gave up:",
            escape_controls(
                redaction_policy.text(str(exc), redaction_policy.secrets_of(url), limit=1024)
            ),
            file=err,
            flush=True,
        )
        if not watcher.ever_live and not watcher.told:
            print(
                f"regulator stream: never connected to {escape_controls(watcher.url)};"
                " is it reachable?",
                file=err,
                flush=True,
            )
        return 1
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    print(f"regulator stream: stopped after {printed} events", file=err, flush=True)
    return 0


def run_stream(
    streams: list[str],
    *,
    url: str | None,
    config_file: str | None,
    ca: str | None,
    count: int | None,
    duration: float | None,
    metrics_port: int | None,
    max_retries: int | None,
    verbose: bool = False,
    log_file: Path | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    problems = []
    try:
        names = validate_streams(streams)
    except ValueError as exc:
        problems += str(exc).split("; ")
    if count is not None and count < 1:
        problems.append(f"--count: must be >= 1 (got {count})")
    if duration is not None and not duration > 0:
        problems.append(f"--duration: must be > 0 seconds (got {duration})")
    if max_retries is not None and max_retries < 0:
        problems.append(f"--max-retries: must be >= 0 (got {max_retries})")
    base = (url or DEFAULT_BASE_URL).rstrip("/")
    try:
        check_url(f"{base}/stream")
    except ValueError as exc:
        problems.append(f"--url: {str(exc).removeprefix('url: ')}")
    try:
        context = _client_context(ca)
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        for problem in problems:
            print(f"error: {escape_controls(problem)[:500]}", file=err)
        return 2
    config = load_config(config_file)
    if max_retries is not None:
        import attrs

        config = attrs.evolve(
            config, connection=attrs.evolve(config.connection, max_retries=max_retries)
        )
    handler: logging.Handler = logging.StreamHandler(err)
    handler.setFormatter(ConsoleFormatter(verbose))
    handlers = [handler]
    if log_file is not None:
        try:
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            print(f"error: --log-file: must be writable ({exc.strerror})", file=err)
            return 2
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        handlers.append(file_handler)
    loggers = [logging.getLogger(n) for n in ("regulator.connection", "regulator.binance")]
    for logger in loggers:
        for h in handlers:
            logger.addHandler(h)
        logger.setLevel(logging.INFO)
    try:
        return anyio.run(
            _run,
            names,
            (url or DEFAULT_BASE_URL),
            config,
            context,
            count,
            duration,
            metrics_port,
            out,
            err,
        )
    except KeyboardInterrupt:
        print("regulator stream: interrupted", file=err)
        return 130
    finally:
        for logger in loggers:
            for h in handlers:
                logger.removeHandler(h)
        for h in handlers[1:]:
            h.close()
