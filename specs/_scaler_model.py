"""A plain reference model of the scaler rules, and a Hypothesis state machine that checks
:class:`regulator.fsm.ScalerMachine` against it.

The scale each step hands the machine is torch's update rule (R2.2), replayed twice and
compared: by the model's own ``torch_update`` (on an overflow the scale is multiplied by
``backoff_factor`` and the growth tracker zeroed; after ``growth_interval`` clean steps it is
multiplied by ``growth_factor`` when the result is finite), and by the machine's
``scale_update``, the rule the torch adapter's host mirror applies. A host checks its own
configuration with::

    from regulator.specs import scaler_lifecycle_spec
    TestMyScaler = scaler_lifecycle_spec(my_scaler_config, initial_scale=2.0**16).TestCase

``machine_class`` checks a host's own subclass of the machine instead.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from ..fsm import ScalerConfig
from ..fsm._scaler import Anomaly, ScalerMachine, SetScale
from ._coverage import next_transition
from ._machine_spec import MachineSpec, machine_spec

__all__ = [
    "ScalerModel",
    "initial_scale_by_size",
    "scaler_configs",
    "scaler_lifecycle_spec",
    "torch_update",
]

_F32 = struct.Struct("f")


def f32(value: float) -> float:
    """Round to float32, as torch stores the scale."""
    try:
        return float(_F32.unpack(_F32.pack(value))[0])
    except OverflowError:
        return math.inf


def torch_update(
    scale: float, tracker: int, overflowed: bool, cfg: ScalerConfig
) -> tuple[float, int]:
    """torch's ``_amp_update_scale_`` on float32, replayed on the host."""
    if overflowed:
        return f32(scale * cfg.backoff_factor), 0
    tracker += 1
    if tracker == cfg.growth_interval:  # exactly, as torch's kernel
        grown = f32(scale * cfg.growth_factor)
        return (grown if math.isfinite(grown) else scale), 0
    return scale, tracker


@attrs.define
class ScalerModel:
    """The scaler rules, executed the plain way."""

    cfg: ScalerConfig
    initial: float
    state: str = "warmup"
    scale: float = 0.0
    streak: int = 0
    floor_streak: int = 0
    epochs_over: int = 0
    halvings: int = 0
    resets: int = 0
    collapses: int = 0
    warnings: list[str] = attrs.Factory(list)

    def step(self, overflowed: bool, scale: float) -> float:
        """Apply one step whose torch-updated scale is ``scale``; return the final scale."""
        cfg = self.cfg
        before = self.scale
        self.scale = scale
        if self.state == "reset":
            self.state = "stable"
        if overflowed:
            self.streak += 1
            self.floor_streak = self.floor_streak + 1 if before <= cfg.min_scale else 0
            if self.streak >= cfg.overflow_halving_batches:  # R2.4
                self.scale = max(scale / 2, cfg.min_scale)
                self.state = "overflow_halved"
                self.halvings += 1
                self.streak = 0
                self.warnings.append("overflow_halved")
            elif scale < cfg.min_scale:
                self.scale = cfg.min_scale
            if self.floor_streak >= cfg.collapse_after:
                self.collapses += 1
                self.floor_streak = 0
                self.warnings.append("collapse")
            elif self.state == "over_threshold" and self.scale <= cfg.max_scale_threshold:
                self.state = "stable"
            return self.scale
        self.streak = self.floor_streak = 0
        if self.state in ("warmup", "overflow_halved"):
            self.state = "stable"
        if self.state == "stable" and self.scale > cfg.max_scale_threshold:  # R2.3
            self.state = "over_threshold"
            self.warnings.append("over_threshold")
        elif self.state == "over_threshold" and self.scale <= cfg.max_scale_threshold:
            self.state = "stable"
        return self.scale

    def resync(self, scale: float) -> None:
        """The host tells the scale read back from the device."""
        self.scale = scale
        if self.state == "stable" and scale > self.cfg.max_scale_threshold:  # R2.3
            self.state = "over_threshold"
            self.warnings.append("over_threshold")
        elif self.state == "over_threshold" and scale <= self.cfg.max_scale_threshold:
            self.state = "stable"

    def end_epoch(self) -> float:
        if self.state != "over_threshold":
            self.epochs_over = 0
            return self.scale
        self.epochs_over += 1
        if self.cfg.auto_reset and self.epochs_over >= self.cfg.reset_after_epochs:  # R2.3
            # R2.3 as read in docs/scaler.md: under the threshold, never above the scale
            cap = self.cfg.reset_fraction * min(self.initial, self.cfg.max_scale_threshold)
            self.scale = max(min(cap, self.scale), self.cfg.min_scale)
            self.state = "reset"
            self.resets += 1
            self.epochs_over = 0
            self.warnings.append("reset")
        return self.scale


def scaler_configs() -> st.SearchStrategy[ScalerConfig]:
    """Valid scaler configs with small intervals, so growth and resets happen in a short run."""

    def build(minimum: float, threshold_span: float, **rest: Any) -> ScalerConfig:
        return ScalerConfig(min_scale=minimum, max_scale_threshold=minimum * threshold_span, **rest)

    return st.builds(
        build,
        minimum=st.sampled_from([1.0, 0.5, 2.0**-4, 128.0]),
        threshold_span=st.floats(1.0, 2.0**20),
        growth_factor=st.sampled_from([1.2, 2.0, 1.5, 1.001]),
        backoff_factor=st.sampled_from([0.5, 0.25, 0.9]),
        growth_interval=st.integers(1, 6),
        reset_after_epochs=st.integers(1, 4),
        reset_fraction=st.sampled_from([0.5, 1.0, 0.1]),
        overflow_halving_batches=st.integers(1, 6),
        auto_reset=st.booleans(),
        collapse_after=st.integers(1, 8),
        history_size=st.integers(1, 5),
    )


def initial_scale_by_size(cfg: ScalerConfig, parameters: int | None) -> float:
    """R2.1 as written: fewer than small -> small scale, up to large inclusive -> medium."""
    if cfg.init_scale_strategy == "fixed" or parameters is None:
        return cfg.init_scale
    if parameters < cfg.small_model_params:
        return cfg.small_model_scale
    if parameters > cfg.large_model_params:
        return cfg.large_model_scale
    return cfg.medium_model_scale


def _default_model(cfg: ScalerConfig, initial: float) -> ScalerModel:
    return ScalerModel(cfg, initial, scale=initial)


def scaler_lifecycle_spec(
    config: ScalerConfig | None = None,
    *,
    initial_scale: float | None = None,
    machine_class: type[ScalerMachine] = ScalerMachine,
    model: Callable[[ScalerConfig, float], ScalerModel] | None = None,
) -> type[MachineSpec]:
    """A :func:`~regulator.specs.machine_spec` suite checking ScalerMachine against
    :class:`ScalerModel`.

    ``machine_class`` is the machine checked (a host's own subclass); ``model(config,
    initial_scale)`` builds the reference model (default: :class:`ScalerModel`; a host that
    changes a rule in its subclass passes a model with the same change). Every rule is reachable
    in a short example on any valid config: a rule runs clean steps up to the next growth at
    once, and another sets the scale near the threshold, the floor or the initial scale
    through ``resync`` (what a host does with the scale read back from the device).
    """
    build_model = model if model is not None else _default_model

    class ScalerLifecycle(MachineSpec):
        """The scaler's rules, added to :class:`~regulator.specs.MachineSpec` by
        :func:`~regulator.specs.machine_spec`: steps with torch's update, resyncs, epoch
        ends, their actions; the base checks state, twin and coverage."""

        twin_class: ClassVar[type[ScalerMachine]]

        def __init__(self) -> None:
            super().__init__()
            self.machine: ScalerMachine | None = None
            self.twin: ScalerMachine | None = None
            self.model: ScalerModel | None = None
            self.scale = 0.0
            self.tracker = 0

        @precondition(lambda self: self.machine is None)
        @rule(
            cfg=scaler_configs() if config is None else st.just(config),
            initial=st.sampled_from([2.0**16, 2.0**14, 2.0**12, 2.0**40, 4.0, 1.0])
            if initial_scale is None
            else st.just(initial_scale),
        )
        def setup(self, cfg: ScalerConfig, initial: float) -> None:
            initial = max(initial, cfg.min_scale)
            self.begin(
                machine_class(cfg, initial_scale=initial),
                self.twin_class(cfg, initial_scale=initial),
                build_model(cfg, initial),
            )
            self.scale = initial

        def _same(self, got: Any, twin_got: Any) -> Any:
            """The compiled engine and python-statemachine's send() agree, step by step."""
            assert got == twin_got, (got, twin_got)
            assert self.machine is not None and self.twin is not None
            assert self.twin.state == self.machine.state
            return got

        @property
        def _t(self) -> ScalerMachine:
            """The twin on python-statemachine's send()."""
            assert self.twin is not None
            return self.twin

        def _both(self) -> tuple[ScalerMachine, ScalerModel]:
            assert self.machine is not None and self.model is not None
            return self.machine, self.model

        def _apply(self, actions: Any) -> None:
            for action in actions or ():
                if isinstance(action, SetScale):
                    self.scale = action.value
                    self.tracker = 0

        @precondition(lambda self: self.machine is not None)
        @rule(overflowed=st.booleans(), repeat=st.integers(1, 8))
        def steps(self, overflowed: bool, repeat: int) -> None:
            machine, model = self._both()
            for _ in range(repeat):
                self._torch_step(machine, model.cfg, overflowed)
                warnings_before = len(model.warnings)
                expected = model.step(overflowed, self.scale)
                actions = self._same(
                    machine.step(overflowed, self.scale), self._t.step(overflowed, self.scale)
                )
                self._apply(actions)
                new_warnings = model.warnings[warnings_before:]
                anomalies = [a.kind for a in actions or () if isinstance(a, Anomaly)]
                assert anomalies == new_warnings, (anomalies, new_warnings)
                assert self.scale == expected, (self.scale, expected)

        def _torch_step(self, machine: ScalerMachine, cfg: ScalerConfig, overflowed: bool) -> None:
            """torch's update of the scale after one step (R2.2): the machine's rule (what the
            host mirror applies) must agree with the model's own ``torch_update``."""
            expected = torch_update(self.scale, self.tracker, overflowed, cfg)
            mirrored = machine.scale_update(
                self.scale,
                self.tracker,
                overflowed,
                cfg.growth_factor,
                cfg.backoff_factor,
                cfg.growth_interval,
            )
            assert mirrored == expected, ("R2.2 update rule", self.scale, self.tracker, mirrored)
            self.scale, self.tracker = expected

        @precondition(lambda self: self.machine is not None)
        @rule(until=st.sampled_from(["halving", "collapse"]))
        def overflow_run(self, until: str) -> None:
            """Exactly enough consecutive overflows for the extra halving (R2.4) or for a
            collapse at the floor, in one rule, whatever the config's counts."""
            _, model = self._both()
            cfg = model.cfg
            count = cfg.overflow_halving_batches if until == "halving" else cfg.collapse_after
            self.steps(True, count - model.streak if until == "halving" else count)

        @precondition(lambda self: self.machine is not None)
        @rule(picks=st.lists(st.integers(0, 8), min_size=1, max_size=12))
        def walk_declared_transitions(self, picks: list[int]) -> None:
            """Model-based test paths: a few steps along a shortest path of
            declared transitions to one this example has not taken yet (an extra halving
            while over the threshold is as close as a calibration)."""
            _, model = self._both()
            for pick in picks:
                choice = next_transition(self.transitions.declared, self.taken, model.state, pick)
                if choice is None:
                    return
                self.taken.add(choice)  # also when a guard sends it elsewhere: no loop
                event = choice[1]
                if event in ("calibrated", "settle", "resume"):
                    self.steps(False, 1)
                elif event == "exceed":
                    self.resync("threshold", 2.0)
                elif event == "recover":
                    self.resync("threshold", 0.5)
                elif event == "reset_scale":
                    self.end_epoch(True)
                elif event == "halve":
                    if model.state == "over_threshold":  # stay over it through the streak
                        cfg = model.cfg
                        rise = (1 / cfg.backoff_factor) ** (cfg.overflow_halving_batches + 1)
                        self.resync("threshold", rise)
                    self.overflow_run("halving")
                else:
                    return  # an event a host's subclass added: not driven here

        @precondition(lambda self: self.machine is not None)
        @rule()
        def grow(self) -> None:
            """Clean steps up to and including the next growth, in one rule (R2.2)."""
            machine, model = self._both()
            remaining = model.cfg.growth_interval - self.tracker
            self.steps(False, 1)
            if remaining > 2:
                # after one clean step nothing changes until the growth: counters only
                for _ in range(remaining - 2):
                    self._torch_step(machine, model.cfg, False)
                    twin_step = self._t.step(False, self.scale)
                    assert self._same(machine.step(False, self.scale), twin_step) is None
            if remaining > 1:
                self.steps(False, 1)

        @precondition(lambda self: self.machine is not None)
        @rule(
            near=st.sampled_from(["threshold", "floor", "initial"]),
            factor=st.sampled_from([1.0, 1.001, 0.999, 2.0, 0.5, 1.25, 64.0]),
        )
        def resync(self, near: str, factor: float) -> None:
            """The host resyncs the scale to a value near the threshold, the floor or the
            initial scale (R2.3, the floor)."""
            machine, model = self._both()
            base = {
                "threshold": model.cfg.max_scale_threshold,
                "floor": model.cfg.min_scale,
                "initial": model.initial,
            }[near]
            value = f32(max(base * factor, model.cfg.min_scale))
            if not math.isfinite(value):
                return
            machine.resync(value)
            self._t.resync(value)
            self._same(machine.state, self._t.state)
            model.resync(value)
            self.scale = value

        @precondition(lambda self: self.machine is not None)
        @rule(parameters=st.sampled_from(["small", "large"]), offset=st.sampled_from([-1, 0, 1]))
        def initial_scale_for(self, parameters: str, offset: int) -> None:
            """R2.1: the initial scale by model size, at the boundaries."""
            _, model = self._both()
            cfg = attrs.evolve(model.cfg, init_scale_strategy="by_model_size")
            count = max(
                0,
                (cfg.small_model_params if parameters == "small" else cfg.large_model_params)
                + offset,
            )
            assert cfg.initial_scale_for(count) == initial_scale_by_size(cfg, count)

        @precondition(lambda self: self.machine is not None)
        @rule(until_reset=st.booleans())
        def end_epoch(self, until_reset: bool) -> None:
            """One epoch end, or as many as an R2.3 reset needs, whatever the config's count."""
            machine, model = self._both()
            count = max(model.cfg.reset_after_epochs - model.epochs_over, 1) if until_reset else 1
            for _ in range(count):
                warnings_before = len(model.warnings)
                expected = model.end_epoch()
                actions = self._same(machine.end_epoch(), self._t.end_epoch())
                self._apply(actions)
                anomalies = [a.kind for a in actions if isinstance(a, Anomaly)]
                assert anomalies == model.warnings[warnings_before:]
                assert self.scale == expected

        @invariant()
        def agrees_with_the_model(self) -> None:
            if self.machine is None or self.model is None:
                return
            stats = self.machine.statistics()
            assert self.machine.state == self.model.state
            assert stats["current_scale"] == self.model.scale == self.scale
            assert (stats["halvings"], stats["resets"], stats["collapses"]) == (
                self.model.halvings,
                self.model.resets,
                self.model.collapses,
            )
            assert stats["consecutive_overflows"] == self.model.streak
            assert stats["over_threshold_epochs"] == self.model.epochs_over
            size = self.model.cfg.history_size
            assert [a.kind for a in self.machine.history] == self.model.warnings[-size:]

        @invariant()
        def scale_never_below_the_floor(self) -> None:
            if self.machine is None or self.model is None:
                return
            assert self.scale >= self.model.cfg.min_scale
            assert len(self.machine.history) <= self.model.cfg.history_size

    # events={}: the rules above drive every event through the machine's typed methods
    spec = machine_spec(machine_class, model=build_model, events={}, rules=ScalerLifecycle)
    spec.__name__ = spec.__qualname__ = "ScalerLifecycle"
    return spec
