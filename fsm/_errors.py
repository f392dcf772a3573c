"""The exceptions of :mod:`regulator.fsm`.

Every error a user can trigger by bad input or a bad call names what was wrong, the value it
got, and the rule it broke.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "IllegalEventError",
    "RegulatorError",
    "ScaleCollapseError",
]


class RegulatorError(Exception):
    """Base class of every exception raised by regulator."""


class ConfigError(RegulatorError, ValueError):
    """A configuration was rejected.

    ``problems`` lists every problem found at once, each as ``path: rule (got value)``, for
    example ``connection.initial_delay: must be > 0 (got -1.0)``.
    """

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        count = len(self.problems)
        head = f"{count} configuration problem{'s' if count != 1 else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class IllegalEventError(RegulatorError):
    """An event was sent to a machine in a state that does not accept it.

    The machine is left exactly as it was before the call.
    """

    def __init__(self, machine: str, event: object, state: str) -> None:
        self.machine = machine
        self.event = event
        self.state = state
        super().__init__(f"{machine}: event {event!r} cannot be handled in state {state!r}")


class ScaleCollapseError(RegulatorError, FloatingPointError):
    """Training steps keep overflowing with the loss scale already at its floor.

    The scale is not the problem any more: the loss or the gradients are diverging (too high a
    learning rate, bad data, an unstable layer). ``diagnostics`` holds the same key/value facts
    that were logged.
    """

    def __init__(self, message: str, diagnostics: dict[str, object]) -> None:
        self.diagnostics = diagnostics
        super().__init__(message)
