"""The reusable property suites judged by mutation, and by transition coverage.

Each mutant breaks exactly one rule of one machine (tests/_mutants.py); the suite, run at the
documented settings (``max_examples=50, stateful_step_count=50``), derandomized and without
a database, must fail on it, on the defaults and on host configurations. The default
configuration's suite must also exercise every declared transition.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from typing import Any

import pytest
from _mutants import CONNECTION_MUTANTS, SCALER_MUTANTS
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from regulator.fsm import ConnectionConfig, ConnectionMachine, ScalerConfig
from regulator.fsm._scaler import ScalerMachine
from regulator.specs import (
    connection_lifecycle_spec,
    coverage_report,
    declared_transitions,
    next_transition,
    scaler_lifecycle_spec,
)

#: The documented settings, made deterministic. A mutant is judged on the first failing
#: example: shrinking would only make the report prettier.
DOCUMENTED = settings(
    max_examples=50,
    stateful_step_count=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
    print_blob=False,
)

CONNECTION_CONFIGS = {
    "defaults": ConnectionConfig(),
    "host: stable_after 5, alarm_failures 2": ConnectionConfig(
        stable_after=5.0, alarm_failures=2, initial_delay=0.5, max_delay=20.0, ping_interval=15.0
    ),
}
SCALER_CONFIGS: dict[str, tuple[ScalerConfig, float]] = {
    "defaults": (ScalerConfig(), 2.0**16),
    "fast growth, low threshold": (
        ScalerConfig(growth_factor=2.0, growth_interval=3, max_scale_threshold=2.0**10),
        2.0**8,
    ),
}


@pytest.fixture(autouse=True, scope="module")
def _every_regulator_module_loaded() -> None:
    """Hypothesis mixes literal constants of the loaded local modules into what it draws, so
    a derandomized example depends on which modules earlier tests happened to import (a
    mutant killed when this file ran alone survived in the full suite). Loading every
    module of `regulator` first makes the examples the same in any run of this commit."""
    import regulator

    for info in pkgutil.walk_packages(regulator.__path__, "regulator."):
        if not info.name.endswith(".__main__"):  # that one runs the command line
            importlib.import_module(info.name)


def _fails(spec: type[RuleBasedStateMachine]) -> bool:
    try:
        run_state_machine_as_test(spec, settings=DOCUMENTED)
    except AssertionError:  # a broken rule; any other error is a bug in the harness
        return True
    return False


def test_the_suites_pass_on_the_real_machines() -> None:
    """No mutant's kill is an artefact: the unbroken machines pass at the same settings."""
    for config in CONNECTION_CONFIGS.values():
        assert not _fails(connection_lifecycle_spec(config))
    for scaler_config, initial in SCALER_CONFIGS.values():
        assert not _fails(scaler_lifecycle_spec(scaler_config, initial_scale=initial))


def _kill_all(mutants: dict[str, Any], build: Any) -> tuple[list[str], float]:
    survivors = []
    started = time.perf_counter()
    for name, mutant in mutants.items():
        with pytest.MonkeyPatch.context() as mp:
            if not _fails(build(mutant(mp))):
                survivors.append(name)
    return survivors, time.perf_counter() - started


@pytest.mark.slow
@pytest.mark.spec("R1.1", "R1.2", "R1.3", "R1.4", "R1.5", "R3.3")
@pytest.mark.parametrize("config_name", CONNECTION_CONFIGS)
def test_the_connection_suite_kills_every_mutant(config_name: str) -> None:
    """Every single-rule break of ConnectionMachine fails the suite on this config."""
    config = CONNECTION_CONFIGS[config_name]
    survivors, elapsed = _kill_all(
        CONNECTION_MUTANTS, lambda cls: connection_lifecycle_spec(config, machine_class=cls)
    )
    print(f"connection / {config_name}: {len(CONNECTION_MUTANTS)} mutants in {elapsed:.1f} s")
    assert survivors == []


@pytest.mark.slow
@pytest.mark.spec("R2.1", "R2.2", "R2.3", "R2.4")
@pytest.mark.parametrize("config_name", SCALER_CONFIGS)
def test_the_scaler_suite_kills_every_mutant(config_name: str) -> None:
    """Every single-rule break of ScalerMachine fails the suite on this config."""
    config, initial = SCALER_CONFIGS[config_name]
    survivors, elapsed = _kill_all(
        SCALER_MUTANTS,
        lambda cls: scaler_lifecycle_spec(config, initial_scale=initial, machine_class=cls),
    )
    print(f"scaler / {config_name}: {len(SCALER_MUTANTS)} mutants in {elapsed:.1f} s")
    assert survivors == []


def test_the_default_suites_exercise_every_declared_transition() -> None:
    """At the documented settings, on the defaults, every (source, event, target) is hit."""
    connection = connection_lifecycle_spec(ConnectionConfig())
    run_state_machine_as_test(connection, settings=DOCUMENTED)
    assert connection.transitions.missed == frozenset(), coverage_report(connection)
    scaler = scaler_lifecycle_spec(ScalerConfig(), initial_scale=2.0**16)
    run_state_machine_as_test(scaler, settings=DOCUMENTED)
    assert scaler.transitions.missed == frozenset(), coverage_report(scaler)


def test_a_host_subclass_is_what_the_suite_checks() -> None:
    """machine_class is the class driven, and the report names it."""
    made: list[ConnectionMachine] = []

    class HostMachine(ConnectionMachine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    spec = connection_lifecycle_spec(ConnectionConfig(), machine_class=HostMachine)
    run_state_machine_as_test(spec, settings=DOCUMENTED)
    assert made
    assert coverage_report(spec).startswith("HostMachine: ")


def test_next_transition_walks_a_shortest_path_to_an_untaken_transition() -> None:
    """From idle with only start taken, the path to connecting's transitions starts with it."""
    declared = declared_transitions(ConnectionMachine)
    taken = {t for t in declared if t[0] == "idle"}
    step = next_transition(declared, taken, "idle")
    assert step == ("idle", "start", "connecting")
    assert next_transition(declared, set(declared), "idle") is None
    assert ScalerMachine.__name__ in coverage_report(scaler_lifecycle_spec())


def test_a_host_guard_with_injected_arguments_passes_on_the_engine() -> None:
    """A guard written the python-statemachine way (injected ``event`` and ``source`` beside
    the event's ``decision``) runs on the compiled engine, as in production, and passes."""

    class HostGuards(ConnectionMachine):
        # the engine injects callback arguments by name: another signature on purpose
        def alarm_raised(  # type: ignore[override]
            self, event: Any, source: Any, decision: Any
        ) -> bool:
            return bool(decision.target == "alarmed" and str(event) == "fail" and source.id)

    assert HostGuards.engine == "compiled"
    assert not _fails(connection_lifecycle_spec(ConnectionConfig(), machine_class=HostGuards))
