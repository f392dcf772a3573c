"""The WebSocket adapter (extra ``ws``): the connection machine on httpx-ws, asyncio or trio.

.. code-block:: python

    from regulator.adapters.websocket import ResilientWebSocket
"""

from ._buffer import BufferFull as BufferFull
from ._buffer import OverflowPolicy as OverflowPolicy
from ._classify import Classified as Classified
from ._classify import classify_exception as classify_exception
from ._notifiers import CallbackNotifier as CallbackNotifier
from ._notifiers import LoggingNotifier as LoggingNotifier
from ._notifiers import Notice as Notice
from ._notifiers import Notifier as Notifier
from ._notifiers import WebhookNotifier as WebhookNotifier
from ._notifiers import notice_payload as notice_payload
from ._redact import redact_url as redact_url
from ._websocket import AnyioClock as AnyioClock
from ._websocket import Clock as Clock
from ._websocket import ConnectionClosedError as ConnectionClosedError
from ._websocket import NotLiveError as NotLiveError
from ._websocket import ResilientWebSocket as ResilientWebSocket
from ._websocket import tls_context as tls_context

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
    "ResilientWebSocket",
    "WebhookNotifier",
    "classify_exception",
    "notice_payload",
    "redact_url",
    "tls_context",
]
