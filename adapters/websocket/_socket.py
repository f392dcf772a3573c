"""``ResilientWebSocket``: the connection machine driving a real socket (httpx-ws on anyio).

The adapter moves data and classifies exceptions; every decision (when to retry, how long to
wait, when to ping, when a pong is overdue, when to alarm) is the machine's. One supervisor task
runs the lifecycle; per connection, httpx-ws's reader (replaced by ``RegulatorSession``'s) and
short pong waiters run in a task group that ends with the connection; notifiers run in the
adapter's task group. Leaving ``async with`` cancels them all and closes the socket with 1000.
A consumer waiting in ``receive()`` with nothing buffered reads the socket in its own task
(``RegulatorSession.consumer_read``); the reader task reads while it is away.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from httpx_ws import aconnect_ws

from ...fsm import (
    ConnectionAction,
    ConnectionConfig,
    ConnectionEvent,
    ConnectionFailed,
    ConnectionHealthy,
    ConnectionMachine,
    FailureRecord,
    GiveUp,
    HandshakeSucceeded,
    PatternDetected,
    PongReceived,
    RaiseAlarm,
    ResolveAlarm,
    RestoreSubscriptions,
    SendPing,
    Start,
    Stop,
    Tick,
    TransportConnected,
    format_kv,
    load_config,
)
from ...fsm._diagram import mermaid
from ...fsm._simulator import check_machine_class
from .._counts import copy_counts
from ._buffer import MessageBuffer, OverflowPolicy
from ._classify import MAX_RETRY_AFTER, classify_exception
from ._clock import AnyioClock, Clock
from ._errors import ConnectionClosedError, NotLiveError
from ._guards import InsecureContext, SendBlocked
from ._inputs import check_count, check_headers, check_seconds, check_url
from ._logfields import action_log_fields, iso_utc
from ._notifiers import Notice, Notifier
from ._redact import guard_third_party_logs, redact_url, redaction_policy
from ._redirect import follow
from ._session import RegulatorSession
from ._support import abandon_task_group, exit_task_group, tls_context, tls_problem
from ._transport import TrackingTransport

__all__ = ["ResilientWebSocket"]

LOGGER_NAME = "regulator.connection"
#: Most characters of a failure's reason and of its stack text kept (issue 27: a server's
#: header or reason phrase may be 100 KB; it is named, never repeated whole).
MAX_REASON = 1024
MAX_DETAIL = 16384


class ResilientWebSocket:
    """A WebSocket client that reconnects by the rules of :class:`ConnectionMachine`.

    Args:
        url: ``wss://`` (or ``ws://``) URL; secrets in it are redacted in logs and stats.
        config: the connection rules (backoff, heartbeat, deadlines, alarm).
        ssl_context: trust settings; default certifi. Verification cannot be disabled.
        on_connect: awaited with this object after every (re)connect, before messages flow:
            restore subscriptions here (R1.4).
        notifiers: async callables told about alarms, resolutions and pattern reports.
        buffer_size, overflow_policy: the bounded buffer between socket and consumer
            (``drop_oldest``, ``fail`` or ``block``; see ``regulator.adapters.websocket._buffer``);
            its size bound is ``config.buffer_bytes``.
        max_message_bytes: a message growing past this fails the connection as ``protocol``.
        headers: extra HTTP headers of the upgrade request.
        clock: time source (default: the event loop's).
        rng: jitter source.
        name: a label for logs (default: the redacted URL).
        before_attempt: awaited before every connection attempt, after any backoff: a host
            paces attempts across connections here (``BinanceStream`` keeps the exchange's
            per-IP budget this way).
        on_action: called (synchronously, inline) with every action the machine returns:
            state changes with their reasons, waits, alarms. Keep it cheap.
        wall_clock: wall-clock seconds since the epoch (default ``time.time``): failure
            records, log lines and notices carry it beside the monotonic time (R3.1), and the
            pattern detector finds "minute 17 of every hour" on it (R3.5).
        follow_redirects: a 3xx answer to the upgrade is fatal by default (the reason names
            its Location); True follows the Location at the next attempt (with backoff, so a
            redirect loop cannot spin), never from wss to ws (fatal) and without the secret
            headers (``X-MBX-APIKEY``, ``Authorization``, ...) when it leads to another origin.
        machine_class: the rules' machine: a host's :class:`ConnectionMachine` subclass
            (its public hooks: ``retry_delay``, ``decide_failure`` ...; docs/connection.md).
    """

    def __init__(
        self,
        url: str,
        *,
        config: ConnectionConfig | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_connect: Callable[[ResilientWebSocket], Awaitable[None]] | None = None,
        notifiers: Sequence[Notifier] = (),
        buffer_size: int = 10_000,
        overflow_policy: OverflowPolicy = "drop_oldest",
        max_message_bytes: int = 1 << 20,
        headers: dict[str, str] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        name: str | None = None,
        notify_timeout: float = 10.0,
        logger: logging.Logger | None = None,
        before_attempt: Callable[[], Awaitable[None]] | None = None,
        on_action: Callable[[ResilientWebSocket, ConnectionAction], None] | None = None,
        wall_clock: Callable[[], float] | None = None,
        follow_redirects: bool = False,
        machine_class: type[ConnectionMachine] = ConnectionMachine,
    ) -> None:
        # Everything is checked before anything starts: a bad argument changes nothing.
        check_machine_class(machine_class)
        check_count("max_message_bytes", max_message_bytes)
        check_count("buffer_size", buffer_size)
        check_seconds("notify_timeout", notify_timeout)
        secure = check_url(url)
        self.headers = check_headers(headers)
        self.url = url
        self.safe_url = redact_url(url)
        self.name = name or self.safe_url
        self.config = config or load_config().connection
        self._tls = tls_context(ssl_context) if secure else None
        # a write that cannot finish within the pong timeout means the peer stopped reading
        self.write_timeout = self.config.pong_timeout
        guard_third_party_logs()
        self.on_connect = on_connect
        self.notifiers = list(notifiers)
        self.max_message_bytes = max_message_bytes
        self.clock: Clock = clock or AnyioClock()
        self.machine = machine_class(self.config, rng=rng)
        self.notify_timeout = notify_timeout
        self.before_attempt = before_attempt
        self.on_action = on_action
        self.wall_clock: Callable[[], float] = wall_clock or time.time
        self.follow_redirects = follow_redirects
        self._past_secrets: set[str] = set()  # of URLs and headers left behind by redirects
        # the failure being handled and its redacted traceback, for the log lines it causes
        self._failing: tuple[BaseException, str] | None = None
        self._log = logger or logging.getLogger(LOGGER_NAME)
        self._buffer: MessageBuffer[str | bytes] = MessageBuffer(
            buffer_size, overflow_policy, self.config.buffer_bytes
        )
        self._tg: TaskGroup | None = None
        self._session: RegulatorSession | None = None
        self._generation = 0
        self._inbox_send: MemoryObjectSendStream[tuple[Any, ...]] | None = None
        self._inbox: MemoryObjectReceiveStream[tuple[Any, ...]] | None = None
        self._closed_error: ConnectionClosedError | None = None
        # counters the stats expose (plain attributes: the per-message path stays cheap)
        self.messages_received = 0
        self.last_message_monotonic: float | None = None  # time.monotonic(): any thread reads it
        self.connected_since: float | None = None
        self.unsolicited_pongs = 0
        self.pings_answered = 0  # the server's pings, answered by the reader
        self.notifier_failures = 0
        session_class = type("BoundSession", (RegulatorSession,), {"sink": self})
        self._session_class: type[RegulatorSession] = session_class

    # -- the context -----------------------------------------------------------------
    async def __aenter__(self) -> ResilientWebSocket:
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[tuple[Any, ...]](100)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            self._tg.start_soon(self._supervise)
        except BaseException as exc:  # leave the task group whole, on either backend
            tg, self._tg = self._tg, None
            await abandon_task_group(tg, exc)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            return await exit_task_group(self._tg, exc_info)
        finally:
            self._tg = None
            if self.machine.state != "closed":
                self._handle(Stop(now=self.clock.now(), reason="stopped by host"))
            self._buffer.close()
            if self._inbox_send is not None and self._inbox is not None:
                self._inbox_send.close()
                self._inbox.close()

    def __aiter__(self) -> ResilientWebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        try:  # the per-message path: a buffered message is taken without a coroutine
            return self._buffer.get_nowait()
        except anyio.WouldBlock:
            pass
        try:
            return await self._next()
        except anyio.EndOfStream:
            if self._closed_error is not None:
                raise self._closed_error from None
            raise StopAsyncIteration from None

    async def _next(self) -> str | bytes:
        # Nothing buffered: read the socket in this task when the session allows it (no hop
        # through the reader task: the message is decoded where it is wanted), else wait for
        # the buffer; see "the read turn" in ``_session``.
        buffer = self._buffer
        while True:  # the caller found nothing to take
            if buffer.closed:
                raise anyio.EndOfStream
            session = self._session
            if session is None or buffer.paused:
                await buffer.wait()
            elif session.consumer_may_read():
                await session.consumer_read()
            else:
                await session.consumer_wait(buffer.wait)
            try:
                return buffer.get_nowait()
            except anyio.WouldBlock:
                pass

    async def receive(self) -> str | bytes:
        """The next message (same as one step of ``async for``)."""
        return await self.__anext__()

    async def receive_many(self) -> list[str | bytes]:
        """The next message and every other one buffered now, in order (waits as
        :meth:`receive` does; raises ``StopAsyncIteration`` at the end as ``async for``
        ends): for a consumer that handles a read's messages in one call."""
        first = await self.__anext__()
        return self._buffer.take_all([first])

    async def send(self, data: str | bytes) -> None:
        """Send a text or binary message on the live connection."""
        session = self._session
        if session is None or self.machine.state != "live":
            raise NotLiveError(f"send: the connection is {self.machine.state}, not live")
        try:
            if isinstance(data, str):
                await session.send_text(data)
            else:
                await session.send_bytes(data)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            if isinstance(exc, SendBlocked):  # only this sender knows: fail the connection
                self.reader_failed(session, exc)
            # otherwise it is closing under us: the reader reports the failure itself
            raise NotLiveError(
                f"send: the connection was lost ({type(exc).__name__}: {self._redact(str(exc))})"
            ) from exc

    @property
    def state(self) -> str:
        return self.machine.state

    @property
    def messages_dropped(self) -> int:
        return self._buffer.dropped

    def mark_healthy(self) -> None:
        """Vouch that the live connection is healthy before ``stable_after`` has passed (e.g.
        its subscriptions are verified): the reconnect counter resets (R1.4) and an alarm
        resolves (R1.3). Ignored unless live."""
        if self.machine.state == "live":
            self._handle(ConnectionHealthy(now=self.clock.now(), wall_time=self.wall_clock()))

    def diagram(self) -> str:
        """The connection machine as Mermaid text, the current state highlighted."""
        return mermaid(self.machine)

    # -- SessionSink (called by the session's reader) ------------------------------------------
    async def deliver_many(self, messages: list[str | bytes]) -> None:
        # The per-message path: the messages of one read share a clock read; each is counted
        # as it enters the buffer (a ``fail`` mid-batch leaves the rest uncounted: exact).
        self.last_message_monotonic = time.monotonic()
        buffer = self._buffer
        offer = buffer.offer
        for message in messages:
            self.messages_received += 1
            if not offer(message):  # full: the overflow policy decides, maybe waiting
                await buffer.put(message)

    def take_messages(self, events: list[Any], only_messages: bool) -> int:
        # The consumer's own read: the messages at the head of ``events`` that fit, without an
        # await (what does not fit, and anything from a control frame on, goes to the reader).
        # A read of messages only that all fit enters the buffer in one call.
        buffer = self._buffer
        if only_messages and buffer.offer_all(events):
            taken = len(events)
        else:
            offer = buffer.offer
            taken = 0
            for event in events:
                kind = type(event)
                if (kind is not str and kind is not bytes) or not offer(event):
                    break
                taken += 1
        if taken:
            self.messages_received += taken
            self.last_message_monotonic = time.monotonic()
        return taken

    def wake_consumer(self) -> None:
        self._buffer.wake()

    def reader_failed(self, session: RegulatorSession, exc: BaseException) -> None:
        if session is self._session and self._inbox_send is not None:
            self._inbox_send.send_nowait(("failed", self._generation, exc))

    def unsolicited_pong(self) -> None:
        self.unsolicited_pongs += 1

    def ping_answered(self) -> None:
        self.pings_answered += 1

    # -- the machine ----------------------------------------------------------------------
    def _handle(self, event: ConnectionEvent) -> list[ConnectionAction]:
        machine = self.machine
        failures = machine.failures
        actions = machine.handle(event)
        if machine.failures != failures and self._failing is None:
            # A failure the machine decided itself (a missed pong, a handshake past its
            # deadline): the same WARNING line as a failure the adapter saw, before its actions.
            for record in machine.history[failures - machine.failures :]:
                self._decided_failure(record)
            try:
                self._do(actions)
            finally:
                self._failing = None
        else:
            self._do(actions)
        return actions

    def _decided_failure(self, record: FailureRecord) -> None:
        """Log the failure line of a failure the machine decided (R3.1: state, reconnect
        counter, monotonic and wall time). Its ``exc_info`` is a TimeoutError (a deadline has
        no stack); the alarm or give-up lines the failure causes carry it too."""
        exc = TimeoutError(record.reason)
        self._failing = (exc, f"TimeoutError: {record.reason}")
        wall = record.wall_time if record.wall_time is not None else self.wall_clock()
        self._log_failure(
            logging.WARNING,
            format_kv(
                event="failure",
                name=self.name,
                kind=record.kind,
                reason=record.reason,
                state=record.state,
                attempt=record.attempt,
                # the counter as it stood before this failure, as _failed logs it
                reconnects=max(0, record.consecutive - 1),
                at=round(record.at, 3),
                wall=iso_utc(wall),
            ),
        )

    def _do(self, actions: list[ConnectionAction]) -> None:
        for action in actions:
            self._log_action(action)
            if self.on_action is not None:
                self.on_action(self, action)
            if isinstance(action, RaiseAlarm):
                self._notify(action.alarm)
            elif isinstance(action, ResolveAlarm):
                self._notify(action.resolution)
            elif isinstance(action, PatternDetected):
                self._notify(action.report)
            elif isinstance(action, GiveUp):
                self._closed_error = ConnectionClosedError(action.kind, action.reason)

    def _log_action(self, action: ConnectionAction) -> None:
        logged = action_log_fields(action, self.name)
        if logged is not None:
            level, fields = logged
            if level >= logging.ERROR and self._failing is not None:
                # an ERROR caused by a failure (alarm, give-up) carries its stack too (R3.1)
                self._log_failure(level, format_kv(**fields))
            else:
                self._log.log(level, format_kv(**fields))

    def _notify(self, notice: Notice) -> None:
        if self._tg is None:
            return
        for notifier in self.notifiers:
            self._tg.start_soon(self._run_notifier, notifier, notice)

    async def _run_notifier(self, notifier: Notifier, notice: Notice) -> None:
        try:
            with anyio.fail_after(self.notify_timeout):
                await notifier(notice)
        except Exception as exc:  # a broken notifier never breaks the connection
            self.notifier_failures += 1
            # a webhook's URL carries its token, and httpx puts the URL in its messages
            secrets = redaction_policy.secrets_of(
                getattr(notifier, "url", None), getattr(notifier, "headers", None)
            )
            error = redaction_policy.text(f"{type(exc).__name__}: {exc}", secrets, limit=1024)
            self._log.warning(
                format_kv(
                    event="notifier_failed",
                    name=self.name,
                    notifier=type(notifier).__name__,
                    error=self._redact(error),
                )
            )

    def _redact(self, text: str, limit: int | None = None) -> str:
        """``text`` with this socket's secrets (URL, headers) and anything secret-looking masked
        (at most ``limit`` characters of it)."""
        # computed per call (failures are rare): a host may extend the policy at any time
        secrets = redaction_policy.secrets_of(self.url, self.headers)
        return redaction_policy.text(text, [*secrets, *self._past_secrets], limit=limit)

    def _failed(self, exc: BaseException, now: float) -> None:
        if self.machine.state not in ("connecting", "handshaking", "live"):
            return
        found = classify_exception(exc)
        # The one place a URL's secrets can enter: everything downstream (the machine's
        # records and reasons, logs, stats, alarms) is built from these redacted strings.
        # Bounded: a server's string (a header, a reason phrase) may be 100 KB (issue 27).
        reason = self._redact(found.reason, limit=MAX_REASON)
        detail = self._redact(found.detail, limit=MAX_DETAIL)
        kind = found.kind
        if found.location is not None:
            kind, refused = self._redirected(found.location)
            if refused is not None:
                reason = f"{reason} (refused: {refused})"
        if found.retry_after_capped is not None:
            # a Retry-After not finite, negative, absurd or unreadable: never an endless wait
            self._log.warning(
                format_kv(
                    event="retry_after_capped",
                    name=self.name,
                    sent=found.retry_after_capped,
                    used=found.retry_after,
                    max=MAX_RETRY_AFTER,
                )
            )
        wall = self.wall_clock()
        # R3.1: the stack (exc_info: every handler formats it), the state, the reconnect
        # counter (consecutive failures so far, R1.4) and the time, monotonic and wall (UTC).
        self._failing = (exc, detail)
        self._log_failure(
            logging.WARNING,
            format_kv(
                event="failure",
                name=self.name,
                kind=kind,
                reason=reason,
                state=self.machine.state,
                attempt=self.machine.attempt,
                reconnects=self.machine.consecutive_failures,
                at=round(now, 3),
                wall=iso_utc(wall),
            ),
        )
        try:
            self._handle(
                ConnectionFailed(
                    now=now,
                    kind=kind,
                    reason=reason,
                    detail=detail,
                    retry_after=found.retry_after,
                    wall_time=wall,
                )
            )
        finally:
            self._failing = None

    def _log_failure(self, level: int, message: str) -> None:
        """Log ``message`` with the failure being handled as ``exc_info``, its text redacted:
        handlers format ``exc_text`` when it is set, so no URL secret reaches a log file."""
        if self._failing is None:
            self._log.log(level, message)
            return
        if not self._log.isEnabledFor(level):
            return
        exc, redacted = self._failing
        record = self._log.makeRecord(
            self._log.name,
            level,
            __file__,
            0,
            message,
            (),
            (type(exc), exc, exc.__traceback__),
        )
        record.exc_text = redacted
        self._log.handle(record)

    def _redirected(self, location: str) -> tuple[str, str | None]:
        """A 3xx to the upgrade: ``(kind, why it is refused)``. Fatal unless the host opted
        into following it; never from wss to ws, never with secret headers to another
        origin (see ``_redirect``)."""
        if not self.follow_redirects:
            return "fatal", None
        hop = follow(self.url, location, self.headers)
        if hop.target is None:
            return "fatal", hop.refused
        # what this socket knew as secret stays masked in everything it writes later
        self._past_secrets.update(redaction_policy.secrets_of(self.url, self.headers))
        if hop.dropped:
            self._log.warning(
                format_kv(
                    event="redirect_headers_dropped",
                    name=self.name,
                    headers=",".join(hop.dropped),
                    to=redact_url(hop.target),
                )
            )
        self.url = hop.target
        self.safe_url = redact_url(hop.target)
        self.headers = hop.headers
        return "protocol", None  # retried with backoff: a redirect loop cannot spin

    def _anyio_deadline(self, deadline: float | None) -> float:
        if deadline is None:
            return math.inf
        return anyio.current_time() + (deadline - self.clock.now())

    # -- the supervisor --------------------------------------------------------------------------
    async def _supervise(self) -> None:
        if self.before_attempt is not None:
            await self.before_attempt()
        self._handle(Start(now=self.clock.now(), wall_time=self.wall_clock()))
        while True:
            state = self.machine.state
            if state == "closed":
                break
            if state in ("backing_off", "alarmed"):
                deadline = self.machine.next_deadline
                assert deadline is not None
                await self.clock.sleep_until(deadline)
                if self.before_attempt is not None:
                    await self.before_attempt()
                self._handle(Tick(now=max(self.clock.now(), deadline), wall_time=self.wall_clock()))
            elif state == "connecting":
                await self._connect_once()
            else:  # pragma: no cover - every other state is left inside _connect_once
                raise AssertionError(f"supervisor in state {state}")
        self._buffer.close()

    async def _trace(self, name: str, info: dict[str, Any]) -> None:
        if name == "connection.connect_tcp.complete" and self.machine.state == "connecting":
            self._handle(TransportConnected(now=self.clock.now()))

    async def _connect_once(self) -> None:
        self._generation += 1
        generation = self._generation
        deadline = self.machine.next_deadline
        failure: BaseException | None = None
        timeout = httpx.Timeout(self.config.handshake_timeout)
        scope = anyio.CancelScope(deadline=self._anyio_deadline(deadline))
        transport = TrackingTransport(self._tls)
        try:
            # The context is the caller's and mutable: checked again before every attempt, so
            # verification switched off after construction fails the attempt, never connects.
            problem = tls_problem(self._tls) if self._tls is not None else None
            if problem is not None:
                raise InsecureContext(problem)
            # One deadline around the whole of aconnect_ws bounds TCP + TLS + upgrade (R1.5);
            # httpx-ws offers no other way that does not corrupt the cancel-scope stack.
            with scope:
                async with (
                    httpx.AsyncClient(transport=transport, timeout=timeout) as client,
                    aconnect_ws(
                        self.url,
                        client,
                        keepalive_ping_interval_seconds=None,  # the machine pings
                        session_class=self._session_class,
                        # a copy: httpx-ws 0.9 adds the handshake's headers (a fresh
                        # Sec-WebSocket-Key each attempt) to the dict it is given
                        headers=dict(self.headers),
                        extensions={"trace": self._trace},
                    ) as session,
                ):
                    scope.deadline = math.inf
                    await self._live(session, generation)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            failure = exc
        finally:
            self._session = None
            self._buffer.resume()  # never leave the consumer paused after a connection
            await transport.close_streams()
        now = self.clock.now()
        if self.machine.state == "live":  # the block ended without the reader saying why
            self._failed(failure or ConnectionResetError("connection ended"), now)
        elif self.machine.state in ("connecting", "handshaking"):
            if failure is not None:
                self._failed(failure, now)
            else:  # the handshake deadline cancelled the attempt (R1.5)
                due = self.machine.next_deadline
                wall = self.wall_clock()
                self._handle(Tick(now=max(now, due if due is not None else now), wall_time=wall))

    async def _live(self, session: RegulatorSession, generation: int) -> None:
        now = self.clock.now()
        if self.machine.state == "connecting":  # no trace event (e.g. a reused connection)
            self._handle(TransportConnected(now=now))
        self._session = session
        self._buffer.pause()  # nothing reaches the consumer before on_connect has run (R1.4)
        actions = self._handle(HandshakeSucceeded(now=now, wall_time=self.wall_clock()))
        self.connected_since = now
        async with anyio.create_task_group() as tg:
            await self._perform(actions, session, tg, generation)
            while self.machine.state == "live":
                item = None
                assert self._inbox is not None
                with anyio.CancelScope(deadline=self._anyio_deadline(self.machine.next_deadline)):
                    item = await self._inbox.receive()
                now = self.clock.now()
                if item is None:
                    actions = self._handle(Tick(now=now, wall_time=self.wall_clock()))
                elif item[1] != generation:
                    continue  # from an earlier connection
                elif item[0] == "failed":
                    self._failed(item[2], now)
                    actions = []
                elif item[0] == "pong":
                    actions = self._handle(PongReceived(now=now))
                await self._perform(actions, session, tg, generation)
            tg.cancel_scope.cancel()
        self.connected_since = None

    async def _perform(
        self,
        actions: list[ConnectionAction],
        session: RegulatorSession,
        tg: TaskGroup,
        generation: int,
    ) -> None:
        for action in actions:
            if isinstance(action, RestoreSubscriptions):
                if self.on_connect is not None:
                    await self.on_connect(self)
                self._buffer.resume()
            elif isinstance(action, SendPing):
                # In a task of its own: a ping waiting for the write lock (a host's send stuck
                # on a full send buffer) must not stop this loop, whose next deadline is the
                # pong's (R1.2 holds whatever the host does).
                tg.start_soon(self._ping, session, generation)

    async def _ping(self, session: RegulatorSession, generation: int) -> None:
        try:
            pong = await session.ping()
        except Exception as exc:
            self.reader_failed(session, exc)
            return
        await pong.wait()
        if self._inbox_send is not None:
            self._inbox_send.send_nowait(("pong", generation))

    # -- statistics --------------------------------------------------------------------------------
    def counter_totals(self) -> dict[str, Any]:
        """The monotonic counters (attempts, successes, failures, alarms, failures by kind,
        backoff histogram, messages): plain attribute reads, safe from another thread (the
        metrics exporter's)."""
        m = self.machine
        return {
            "attempts": m.attempts,
            "successes": m.successes,
            "failures": m.failures,
            "alarms_raised": m.alarms_raised,
            "alarms_resolved": m.alarms_resolved,
            "failures_by_kind": copy_counts(m.failures_by_kind),
            "delay_counts": list(m.delay_counts),
            "delay_sum": m.delay_sum,
            "messages_received": self.messages_received,
            "messages_dropped": self._buffer.dropped,
            "messages_delivered": self._buffer.delivered,
            "messages_failed": self._buffer.failed,
        }

    def get_connection_stats(self) -> dict[str, Any]:
        """Counters users of the old client read (R5.1): state, url, messages, reconnects."""
        now = self.clock.now()
        stats = self.machine.stats(now=now)
        rtt = stats["last_rtt"]
        last = self.last_message_monotonic
        return {
            "name": self.name,
            "state": stats["state"],
            "healthy": stats["healthy"],
            "url": self.safe_url,
            "connected_since": self.connected_since,
            "messages_received": self.messages_received,
            "messages_dropped": self._buffer.dropped,
            # received == delivered + dropped + failed + buffered, under every policy
            "messages_delivered": self._buffer.delivered,
            "messages_failed": self._buffer.failed,
            "messages_buffered": len(self._buffer),
            # in the adapter clock's time base, like connected_since
            "last_message_at": None if last is None else now - (time.monotonic() - last),
            "rtt_ms": None if rtt is None else rtt * 1000.0,
            "unsolicited_pongs": self.unsolicited_pongs,
            "notifier_failures": self.notifier_failures,
            "wall_time": iso_utc(self.wall_clock()),
            "reconnect_statistics": {
                "total_attempts": stats["total_attempts"],
                "successes": stats["successes"],
                "failures": stats["failures"],
                "failed_attempts": stats["failed_attempts"],
                "drops": stats["drops"],
                "success_rate": stats["success_rate"],
                "failures_by_kind": stats["failures_by_kind"],
                "consecutive_failures": stats["consecutive_failures"],
                "alarm_count": stats["alarm_count"],
                "alarms_resolved": stats["alarms_resolved"],
                "last_delay": stats["last_delay"],
            },
            "time_in_state": stats["time_in_state"],
            "failure_history": stats["history"],
            "patterns": stats["patterns"],
        }
