"""Reading a scaler checkpoint: every value checked before anything changes (R5.3).

``GradScaler.load_state_dict`` trusts its input: a NaN or zero scale loads and turns every
weight to NaN at the next step, and a missing key fails half-way through. Here a checkpoint
is read into a :class:`LoadedState` first; only a fully valid one is applied, so a bad file
raises :class:`InvalidCheckpointError` and leaves the scaler as it was.
"""

from __future__ import annotations

import math
import reprlib
import struct
from typing import Any

import attrs

from ...fsm import ConfigError, RegulatorError, ScalerConfig
from ...fsm._scaler import SCALER_STATES, Anomaly, ScalerCounters, ScalerMachine

__all__ = ["InvalidCheckpointError", "LoadedState", "read_checkpoint"]

_F32 = struct.Struct("f")
#: The keys ``GradScaler.state_dict()`` writes; ``"regulator"`` is ours (a guarded checkpoint).
TORCH_KEYS = ("scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker")


class InvalidCheckpointError(RegulatorError, ValueError):
    """A scaler checkpoint was rejected; the scaler is unchanged.

    ``problems`` lists each as ``key: rule (got value)``.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        head = f"scaler checkpoint rejected, {count} problem{'s' if count != 1 else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


@attrs.frozen
class LoadedState:
    """A checked checkpoint, ready to apply."""

    scale: float
    growth_tracker: int
    config: ScalerConfig
    machine: ScalerMachine | None  # None: a plain GradScaler checkpoint
    torch_numbers: dict[str, Any]  # what GradScaler.load_state_dict will set


#: What a snapshot holds (``ScalerMachine.snapshot()``), checked field by field before
#: ``ScalerMachine.restore`` sees it, so that a bad one is named and never fails inside.
_SNAPSHOT_KEYS = ("version", "state", "initial_scale", "counters", "history")
_COUNTERS = tuple(ScalerCounters.__slots__)
_ANOMALY_FIELDS = tuple(field.name for field in attrs.fields(Anomaly))
_ANOMALY_KINDS = ("over_threshold", "reset", "overflow_halved", "collapse")
#: int32: torch keeps the growth tracker in an int32 tensor
_INT32_MAX = 2**31 - 1
#: counters are plain ints; the bound keeps them printable (a huge int has no decimal repr)
_COUNTER_MAX = 2**63 - 1
_MESSAGE_MAX = 1000

_ECHO = reprlib.Repr()
_ECHO.maxstring = 60
_ECHO.maxother = 60
_ECHO.maxlist = _ECHO.maxtuple = _ECHO.maxdict = _ECHO.maxset = 4
_ECHO.maxlevel = 2


def _echo(value: object) -> str:
    """A short, safe repr of an untrusted value for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"<an int of {value.bit_length()} bits>"  # repr() fails past 4300 digits
    try:
        return _ECHO.repr(value)
    except Exception:  # a hostile __repr__ or an int nested too deep for repr()
        return f"<a {type(value).__name__}>"


def _unknown(path: str, key: object, extra: str = "") -> str:
    """An unexpected key: named in the path when it is a plain name, else echoed after it
    (a key such as ":" or "a: b" in the path would make the message say something else)."""
    if isinstance(key, str) and key.isascii() and key.isidentifier():
        return f"{path}.{key}: unknown key{extra}"
    return f"{path}: unknown key {_echo(key)}{extra}"


def _float32(value: float) -> float:
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:
        return math.inf


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: object) -> float | None:
    """``value`` as a finite float, or None (not a number, NaN, inf, an int past float)."""
    if not _is_number(value):
        return None
    assert isinstance(value, int | float)
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _check_scale(value: object, key: str = "scale") -> str | None:
    if not _is_number(value):
        return f"{key}: must be a number (got {_echo(value)})"
    number = _as_float(value)
    if number is None or number <= 0:
        return f"{key}: must be a finite number > 0 (got {_echo(value)})"
    as_f32 = _float32(number)
    if not math.isfinite(as_f32) or as_f32 == 0:
        return f"{key}: must be representable in float32, not {as_f32!r} there (got {_echo(value)})"
    return None


def _check_int(value: object, key: str, maximum: int) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        return f"{key}: must be an integer in [0, {maximum}] (got {_echo(value)})"
    return None


def _check_types(state: dict[str, Any]) -> list[str]:
    problems = []
    for key in TORCH_KEYS:
        if key not in state:
            problems.append(f"{key}: missing (a GradScaler checkpoint has {', '.join(TORCH_KEYS)})")
    if problems:
        return problems
    message = _check_scale(state["scale"])
    if message:
        problems.append(message)
    for key in ("growth_factor", "backoff_factor"):
        value = state[key]
        if _as_float(value) is None:
            problems.append(f"{key}: must be a finite number (got {_echo(value)})")
    for key in ("growth_interval", "_growth_tracker"):
        message = _check_int(state[key], key, _INT32_MAX)
        if message:
            problems.append(message)
    return problems


def read_checkpoint(state: object, config: ScalerConfig) -> LoadedState:
    """Check ``state`` (a ``state_dict()``) against ``config``; raise on any problem.

    A guarded checkpoint (it has ``"regulator"``) restores torch's numbers with its lifecycle,
    as ``GradScaler`` does; they must pass the config's rules. A plain ``GradScaler``
    checkpoint gives the scale and growth tracker only: the configured growth and backoff stay.
    """
    if not isinstance(state, dict):
        raise InvalidCheckpointError([f"$: must be a dict (got {type(state).__name__})"])
    if not state:
        raise InvalidCheckpointError(
            ["$: empty (a disabled GradScaler saves {}); nothing to load into an enabled one"]
        )
    problems = _check_types(state)
    if problems:
        raise InvalidCheckpointError(problems)
    snapshot = state.get("regulator")
    new_config = config
    if snapshot is not None:
        try:
            new_config = attrs.evolve(
                config,
                growth_factor=float(state["growth_factor"]),
                backoff_factor=float(state["backoff_factor"]),
                growth_interval=state["growth_interval"],
            )
        except ConfigError as exc:
            problems += [p.removeprefix("scaler.") for p in exc.problems]
    machine = None
    if snapshot is not None:
        snapshot_problems = _snapshot_problems(snapshot, new_config)
        problems += snapshot_problems
        if not problems:
            machine = ScalerMachine.restore(snapshot, new_config)
    if problems:
        raise InvalidCheckpointError(problems)
    torch_numbers = {
        key: state[key] if snapshot is not None else getattr(config, key)
        for key in ("growth_factor", "backoff_factor", "growth_interval")
    }
    return LoadedState(
        scale=_float32(float(state["scale"])),
        growth_tracker=int(state["_growth_tracker"]),
        config=new_config,
        machine=machine,
        torch_numbers=torch_numbers,
    )


def _snapshot_problems(snapshot: object, config: ScalerConfig) -> list[str]:
    """Every problem of a lifecycle snapshot, each naming its key and value."""
    if not isinstance(snapshot, dict):
        return [f"regulator: must be a dict, a scaler lifecycle snapshot (got {_echo(snapshot)})"]
    problems = [
        _unknown("regulator", key, f" (a snapshot has {', '.join(_SNAPSHOT_KEYS)})")
        for key in snapshot
        if key not in _SNAPSHOT_KEYS
    ]
    problems += [f"regulator.{key}: missing" for key in _SNAPSHOT_KEYS if key not in snapshot]
    if "version" in snapshot and (type(snapshot["version"]) is not int or snapshot["version"] != 1):
        problems.append(f"regulator.version: must be 1 (got {_echo(snapshot['version'])})")
    if "state" in snapshot and (
        not isinstance(snapshot["state"], str) or snapshot["state"] not in SCALER_STATES
    ):
        problems.append(
            f"regulator.state: must be one of {', '.join(SCALER_STATES)}"
            f" (got {_echo(snapshot['state'])})"
        )
    if "initial_scale" in snapshot:
        initial = snapshot["initial_scale"]
        message = _check_scale(initial, "regulator.initial_scale")
        if message is None and float(initial) < config.min_scale:
            message = (
                f"regulator.initial_scale: must be >= min_scale {config.min_scale!r}"
                f" (got {_echo(initial)})"
            )
        if message:
            problems.append(message)
    if "counters" in snapshot:
        problems += _fields_problems(snapshot["counters"], "regulator.counters", _COUNTERS)
    if "history" in snapshot:
        history = snapshot["history"]
        if not isinstance(history, list):
            problems.append(f"regulator.history: must be a list (got {_echo(history)})")
        else:
            for index, record in enumerate(history):
                problems += _fields_problems(record, f"regulator.history[{index}]", _ANOMALY_FIELDS)
    return problems


def _fields_problems(record: object, path: str, names: tuple[str, ...]) -> list[str]:
    """A counters dict or an anomaly record: exactly ``names``, each value checked."""
    if not isinstance(record, dict):
        return [f"{path}: must be a dict (got {_echo(record)})"]
    problems = [_unknown(path, key) for key in record if key not in names]
    for name in names:
        key = f"{path}.{name}"
        if name not in record:
            problems.append(f"{key}: missing")
            continue
        value = record[name]
        if name == "scale":
            message = _check_scale(value, key)
        elif name == "kind":
            message = (
                None
                if isinstance(value, str) and value in _ANOMALY_KINDS
                else f"{key}: must be one of {', '.join(_ANOMALY_KINDS)} (got {_echo(value)})"
            )
        elif name == "message":
            message = (
                None
                if isinstance(value, str) and len(value) <= _MESSAGE_MAX
                else f"{key}: must be a string of at most {_MESSAGE_MAX} characters"
                f" (got {_echo(value)})"
            )
        else:
            message = _check_int(value, key, _COUNTER_MAX)
        if message:
            problems.append(message)
    return problems
