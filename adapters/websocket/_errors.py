"""The errors a host catches from the socket."""

from __future__ import annotations

from ...fsm import RegulatorError

__all__ = ["ConnectionClosedError", "NotLiveError"]


class ConnectionClosedError(RegulatorError):
    """The machine closed: a fatal failure or exhausted retries (``kind``, ``reason``)."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(f"connection closed for good ({kind}): {reason}")


class NotLiveError(RegulatorError):
    """``send()`` was called while the connection is not live."""
