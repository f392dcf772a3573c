"""The WebSocket wing (extra ``ws``): the connection machine bound to httpx-ws, asyncio or trio.

What it binds
-------------
``regulator.fsm.ConnectionMachine`` to a real socket: httpx opens the TCP/TLS connection and
performs the HTTP upgrade, httpx-ws (with our session, ``_session.py``) writes frames and our
reader, with its own decoder (``_frames.py``), reads them. The machine decides the
lifecycle; this wing only does what its actions say.

May import: ``regulator.fsm``, the shared ``adapters/_*`` helpers, anyio, httpx, httpx-ws,
wsproto, certifi. Never another wing,
the command line or the demo.

Data flow
---------
::

    network --bytes--> _transport (counts, keeps the SSL reason) --> _session's reader
        --> _frames (decodes server frames: messages, ping/pong/close, or a close code)
        --> _socket.ResilientWebSocket: message --> _buffer (bounded) --> host's ``async for``
                                        fault   --> _classify --> ConnectionFailed --> machine
    machine --actions (Connect, Wait, SendPing, RaiseAlarm, ...)--> _socket does them
                                        RaiseAlarm/ResolveAlarm --> _notifiers (log, webhook)

Every URL, header or text that leaves the wing (logs, notices, reasons, stats, exceptions)
goes through the one redaction policy (``adapters/_redact.py``, ``redaction_policy``);
every log line's fields come from ``_logfields``. ``_clock`` (the injectable clock), ``_errors``
and ``_support`` (task groups, the TLS context) are shared with the Binance wing.

.. code-block:: python

    from regulator.adapters.websocket import ResilientWebSocket
"""

from ._buffer import BufferFull as BufferFull
from ._buffer import OverflowPolicy as OverflowPolicy
from ._classify import Classified as Classified
from ._classify import classify_exception as classify_exception
from ._clock import AnyioClock as AnyioClock
from ._clock import Clock as Clock
from ._errors import ConnectionClosedError as ConnectionClosedError
from ._errors import NotLiveError as NotLiveError
from ._notifiers import CallbackNotifier as CallbackNotifier
from ._notifiers import LoggingNotifier as LoggingNotifier
from ._notifiers import Notice as Notice
from ._notifiers import Notifier as Notifier
from ._notifiers import WebhookNotifier as WebhookNotifier
from ._notifiers import notice_payload as notice_payload
from ._redact import RedactionPolicy as RedactionPolicy
from ._redact import redact_url as redact_url
from ._redact import redaction_policy as redaction_policy
from ._socket import ResilientWebSocket as ResilientWebSocket
from ._support import tls_context as tls_context

__all__ = [
    "AnyioClock",
    "BufferFull",
    "CallbackNotifier",
    "Classified",
    "Clock",
    "ConnectionClosedError",
    "LoggingNotifier",
    "NotLiveError",
    "Notice",
    "Notifier",
    "OverflowPolicy",
    "RedactionPolicy",
    "ResilientWebSocket",
    "WebhookNotifier",
    "classify_exception",
    "notice_payload",
    "redact_url",
    "redaction_policy",
    "tls_context",
]
