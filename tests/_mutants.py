"""Mutants for the property suites: each breaks exactly one rule of one machine.

A mutant is a function that takes a ``pytest.MonkeyPatch`` and returns the machine class the
suite is to check (a subclass that breaks the rule, or the machine itself with a module
function patched for the duration).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from regulator.fsm import (
    ConnectionConfig,
    ConnectionMachine,
    Disconnect,
    RestoreSubscriptions,
    ScalerConfig,
    _connection,
)
from regulator.fsm._mirror import replay_torch_update
from regulator.fsm._scaler import ScalerAction, ScalerMachine

ConnectionMutant = Callable[[pytest.MonkeyPatch], type[ConnectionMachine]]
ScalerMutant = Callable[[pytest.MonkeyPatch], type[ScalerMachine]]


def _connection_config(**change: Callable[[ConnectionConfig], Any]) -> ConnectionMutant:
    """The machine runs on the host's config with one field changed."""

    def mutant(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
        class Mutant(ConnectionMachine):
            def __init__(self, config: ConnectionConfig | None = None, **kw: Any) -> None:
                cfg = config if config is not None else ConnectionConfig()
                new = {name: f(cfg) for name, f in change.items()}
                super().__init__(attrs.evolve(cfg, **new), **kw)

        return Mutant

    return mutant


def _backoff(**change: Callable[[ConnectionConfig], Any]) -> ConnectionMutant:
    """``backoff_delay`` computes with one parameter changed."""

    def mutant(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
        original = _connection.backoff_delay

        def broken(config: ConnectionConfig, n: int, unit: float = 0.5) -> float:
            new = {name: f(config) for name, f in change.items()}
            return original(attrs.evolve(config, **new), n, unit)

        mp.setattr(_connection, "backoff_delay", broken)
        return ConnectionMachine

    return mutant


def _no_counter_reset(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
    class Mutant(ConnectionMachine):
        def _recover(self, now: float) -> list[Any]:
            kept = self.consecutive_failures
            actions = super()._recover(now)
            self.consecutive_failures = kept
            return actions

    return Mutant


def _no_subscription_restore(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
    class Mutant(ConnectionMachine):
        def _live(self, now: float) -> list[Any]:
            return [a for a in super()._live(now) if not isinstance(a, RestoreSubscriptions)]

    return Mutant


def _alarm_every_failure(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
    class Mutant(ConnectionMachine):
        def decide_failure(self, event: Any) -> Any:
            decision = super().decide_failure(event)
            return attrs.evolve(decision, new_alarm=decision.target == "alarmed")

    return Mutant


def _alarm_never_resolved(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
    class Mutant(ConnectionMachine):
        def _recover(self, now: float) -> list[Any]:
            active = self.alarm_active
            self.alarm_active = False
            actions = super()._recover(now)
            self.alarm_active = active
            return actions

    return Mutant


def _late_handshake_deadline(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
    class Mutant(ConnectionMachine):
        def _connect_action(self, now: float) -> Any:
            action = super()._connect_action(now)
            self.attempt_deadline = now + 1.5 * self.config.handshake_timeout
            return attrs.evolve(action, deadline=self.attempt_deadline)

    return Mutant


def _late_first_ping(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
    class Mutant(ConnectionMachine):
        def _live(self, now: float) -> list[Any]:
            actions = super()._live(now)
            self.next_ping_at = now + 1.5 * self.config.ping_interval
            return actions

    return Mutant


def _window_edge_inside(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
    class Mutant(ConnectionMachine):
        def failures_in_window(self, now: float) -> int:
            horizon = now - self.config.alarm_window
            return sum(1 for t in self._window if t >= horizon)  # R1.3 window: >, not >=

    return Mutant


def _no_disconnect_on_failure(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
    class Mutant(ConnectionMachine):
        def _fail(self, event: Any) -> list[Any]:
            return [a for a in super()._fail(event) if not isinstance(a, Disconnect)]

    return Mutant


def _injected_guard_ignores_live(mp: pytest.MonkeyPatch) -> type[ConnectionMachine]:
    """A host's guard written the python-statemachine way (injected ``source`` and the
    event's ``decision``) with a bug: a connection dropped from live never alarms."""

    class Mutant(ConnectionMachine):
        # the engine injects callback arguments by name: another signature on purpose
        def alarm_raised(  # type: ignore[override]
            self, event: Any, source: Any, decision: Any
        ) -> bool:
            return bool(decision.target == "alarmed" and source.id != "live")

    return Mutant


CONNECTION_MUTANTS: dict[str, ConnectionMutant] = {
    "no Disconnect on failure": _no_disconnect_on_failure,
    "host guard with injected arguments: no alarm from live (R1.3)": (_injected_guard_ignores_live),
    "backoff factor + 0.5": _backoff(backoff_factor=lambda c: c.backoff_factor + 0.5),
    "cap x 2": _backoff(max_delay=lambda c: c.max_delay * 2),
    "jitter x 2": _backoff(jitter=lambda c: min(c.jitter * 2, 0.99)),
    "counter never reset (R1.4)": _no_counter_reset,
    "no subscription restore (R1.4)": _no_subscription_restore,
    "alarm threshold + 1 (R1.3)": _connection_config(alarm_failures=lambda c: c.alarm_failures + 1),
    "alarm threshold - 1 (R1.3)": _connection_config(
        alarm_failures=lambda c: max(c.alarm_failures - 1, 0)
    ),
    "alarm window / 2 (R1.3)": _connection_config(alarm_window=lambda c: c.alarm_window / 2),
    "alarm window x 2 (R1.3)": _connection_config(alarm_window=lambda c: c.alarm_window * 2),
    "alarm window edge inside (R1.3: >= for >)": _window_edge_inside,
    "alarm on every failure while alarmed (R1.3 once per episode)": _alarm_every_failure,
    "alarm never resolved (R1.3)": _alarm_never_resolved,
    "handshake deadline x 1.5 (R1.5)": _late_handshake_deadline,
    "first ping late (R1.2)": _late_first_ping,
    "ping interval x 2 (R1.2)": _connection_config(ping_interval=lambda c: c.ping_interval * 2),
    "pong timeout x 2 (R1.2)": _connection_config(pong_timeout=lambda c: c.pong_timeout * 2),
    "history size + 1 (R3.3)": _connection_config(history_size=lambda c: c.history_size + 1),
    "stable_after x 2 (R1.4 healthy)": _connection_config(
        stable_after=lambda c: c.stable_after * 2 + 1
    ),
}


def _scaler_config(**change: Callable[[ScalerConfig], Any]) -> ScalerMutant:
    def mutant(mp: pytest.MonkeyPatch) -> type[ScalerMachine]:
        class Mutant(ScalerMachine):
            def __init__(self, config: ScalerConfig | None = None, **kw: Any) -> None:
                cfg = config if config is not None else ScalerConfig()
                new = {name: f(cfg) for name, f in change.items()}
                super().__init__(attrs.evolve(cfg, **new), **kw)

        return Mutant

    return mutant


def _initial_scale_boundary(mp: pytest.MonkeyPatch) -> type[ScalerMachine]:
    def broken(self: ScalerConfig, trainable_parameters: int | None) -> float:
        if self.init_scale_strategy == "fixed" or trainable_parameters is None:
            return self.init_scale
        if trainable_parameters <= self.small_model_params:  # R2.1 says <
            return self.small_model_scale
        if trainable_parameters <= self.large_model_params:
            return self.medium_model_scale
        return self.large_model_scale

    mp.setattr(ScalerConfig, "initial_scale_for", broken)
    return ScalerMachine


def _large_boundary(mp: pytest.MonkeyPatch) -> type[ScalerMachine]:
    def broken(self: ScalerConfig, trainable_parameters: int | None) -> float:
        if self.init_scale_strategy == "fixed" or trainable_parameters is None:
            return self.init_scale
        if trainable_parameters < self.small_model_params:
            return self.small_model_scale
        if trainable_parameters < self.large_model_params:  # R2.1 says up to large inclusive
            return self.medium_model_scale
        return self.large_model_scale

    mp.setattr(ScalerConfig, "initial_scale_for", broken)
    return ScalerMachine


def _reset_to_full(mp: pytest.MonkeyPatch) -> type[ScalerMachine]:
    class Mutant(ScalerMachine):
        def reset_target(self) -> float:
            cfg = self.config
            cap = min(self.initial_scale, cfg.max_scale_threshold)  # 100 %, not reset_fraction
            return max(min(cap, self.counters.scale), cfg.min_scale)

    return Mutant


def _silent_exceed(mp: pytest.MonkeyPatch) -> type[ScalerMachine]:
    class Mutant(ScalerMachine):
        def _exceed(self) -> tuple[ScalerAction, ...]:
            self._go("exceed")
            return ()

    return Mutant


def _never_over_threshold(mp: pytest.MonkeyPatch) -> type[ScalerMachine]:
    class Mutant(ScalerMachine):
        def _exceed(self) -> tuple[ScalerAction, ...]:
            return ()

    return Mutant


def _update_rule(**change: Callable[[float], float]) -> ScalerMutant:
    """The host mirror's update rule (R2.2) computes with one of torch's numbers changed."""

    def mutant(mp: pytest.MonkeyPatch) -> type[ScalerMachine]:
        class Mutant(ScalerMachine):
            @staticmethod
            def scale_update(
                scale: float,
                tracker: int,
                overflowed: bool,
                growth_factor: float,
                backoff_factor: float,
                growth_interval: int,
            ) -> tuple[float, int]:
                numbers = {
                    "growth_factor": growth_factor,
                    "backoff_factor": backoff_factor,
                    "growth_interval": growth_interval,
                }
                numbers.update({name: f(numbers[name]) for name, f in change.items()})
                return replay_torch_update(
                    scale,
                    tracker,
                    overflowed,
                    numbers["growth_factor"],
                    numbers["backoff_factor"],
                    int(numbers["growth_interval"]),
                )

        return Mutant

    return mutant


def _tracker_kept_on_overflow(mp: pytest.MonkeyPatch) -> type[ScalerMachine]:
    class Mutant(ScalerMachine):
        @staticmethod
        def scale_update(
            scale: float,
            tracker: int,
            overflowed: bool,
            growth_factor: float,
            backoff_factor: float,
            growth_interval: int,
        ) -> tuple[float, int]:
            new, zeroed = replay_torch_update(
                scale, tracker, overflowed, growth_factor, backoff_factor, growth_interval
            )
            return new, (tracker if overflowed else zeroed)

    return Mutant


SCALER_MUTANTS: dict[str, ScalerMutant] = {
    "growth factor x 1.25 (R2.2: 1.2 back to 1.5)": _update_rule(growth_factor=lambda g: g * 1.25),
    "growth interval / 2 (R2.2: 2000 back to 1000)": _update_rule(
        growth_interval=lambda n: max(n // 2, 1)
    ),
    "growth one step late (R2.2)": _update_rule(growth_interval=lambda n: n + 1),
    "backoff factor squared (R2.2 torch's rule)": _update_rule(backoff_factor=lambda b: b * b),
    "growth tracker kept on overflow (R2.2 torch's rule)": _tracker_kept_on_overflow,
    "initial scale boundary <= small (R2.1)": _initial_scale_boundary,
    "initial scale boundary < large (R2.1)": _large_boundary,
    "reset to 100 % of initial (R2.3)": _reset_to_full,
    "reset fraction / 2 (R2.3)": _scaler_config(reset_fraction=lambda c: c.reset_fraction / 2),
    "reset after one more epoch (R2.3)": _scaler_config(
        reset_after_epochs=lambda c: c.reset_after_epochs + 1
    ),
    "over-threshold warning missing (R2.3)": _silent_exceed,
    "over-threshold rule removed (R2.3)": _never_over_threshold,
    "extra halving one batch late (R2.4)": _scaler_config(
        overflow_halving_batches=lambda c: c.overflow_halving_batches + 1
    ),
    "no extra halving (R2.4)": _scaler_config(overflow_halving_batches=lambda c: 10**9),
    "floor halved": _scaler_config(min_scale=lambda c: c.min_scale / 2),
    "collapse one step late": _scaler_config(collapse_after=lambda c: c.collapse_after + 1),
    "history size + 1": _scaler_config(history_size=lambda c: c.history_size + 1),
}
