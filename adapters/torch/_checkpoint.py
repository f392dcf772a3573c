"""Reading a scaler checkpoint: every value checked before anything changes (R5.3).

``GradScaler.load_state_dict`` trusts its input: a NaN or zero scale loads and turns every
weight to NaN at the next step, and a missing key fails half-way through. Here a checkpoint
is read into a :class:`LoadedState` first; only a fully valid one is applied, so a bad file
raises :class:`InvalidCheckpointError` and leaves the scaler as it was.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import attrs

from ...fsm import ConfigError, RegulatorError, ScalerConfig
from ...fsm._scaler import ScalerMachine

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


def _float32(value: float) -> float:
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:
        return math.inf


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_scale(value: object) -> str | None:
    if not _is_number(value):
        return f"scale: must be a number (got {value!r})"
    assert isinstance(value, int | float)
    if not math.isfinite(value) or value <= 0:
        return f"scale: must be a finite number > 0 (got {value!r})"
    as_f32 = _float32(value)
    if not math.isfinite(as_f32) or as_f32 == 0:
        return f"scale: must be representable in float32, not {as_f32!r} there (got {value!r})"
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
        if not _is_number(value) or not math.isfinite(value):
            problems.append(f"{key}: must be a finite number (got {value!r})")
    for key in ("growth_interval", "_growth_tracker"):
        value = state[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            problems.append(f"{key}: must be an integer >= 0 (got {value!r})")
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
        try:
            machine = _restore(snapshot, new_config)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            problems.append(f"regulator: not a scaler lifecycle snapshot ({exc})")
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


def _restore(snapshot: object, config: ScalerConfig) -> ScalerMachine:
    if not isinstance(snapshot, dict):
        raise TypeError(f"must be a dict, got {type(snapshot).__name__}")
    counters = snapshot.get("counters")
    if not isinstance(counters, dict):
        raise TypeError(f"counters must be a dict, got {counters!r}")
    for name, value in counters.items():
        if name == "scale":
            if _check_scale(value) is not None:
                raise ValueError(f"counters.scale: must be a finite float32 > 0, got {value!r}")
        elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"counters.{name}: must be an integer >= 0, got {value!r}")
    initial = snapshot.get("initial_scale")
    if _check_scale(initial) is not None:
        raise ValueError(f"initial_scale: must be a finite float32 > 0, got {initial!r}")
    return ScalerMachine.restore(snapshot, config)
