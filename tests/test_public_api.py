"""The public surface is pinned: removing or renaming a name is a deliberate act."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import regulator.fsm

FSM_PUBLIC = sorted(
    [
        "BUILTIN_SCHEDULES",
        "CONNECTION_STATES",
        "DELAY_BUCKETS",
        "Alarm",
        "AlarmResolved",
        "BinanceConfig",
        "ConfigError",
        "Connect",
        "ConnectionAction",
        "ConnectionConfig",
        "ConnectionEvent",
        "ConnectionFailed",
        "ConnectionHealthy",
        "ConnectionMachine",
        "DiagramError",
        "Disconnect",
        "EngineFallbackWarning",
        "FailureDecision",
        "FailureKind",
        "FailureRecord",
        "Fault",
        "GiveUp",
        "HandshakeSucceeded",
        "IllegalEventError",
        "Machine",
        "PatternDetected",
        "PatternReport",
        "PongReceived",
        "RaiseAlarm",
        "RegulatorConfig",
        "RegulatorError",
        "ResolveAlarm",
        "RestoreSubscriptions",
        "SCALER_STATES",
        "ScaleCollapseError",
        "ScalerConfig",
        "ScalerMachine",
        "Schedule",
        "SendPing",
        "SimulationResult",
        "Start",
        "StateChanged",
        "Stop",
        "Tick",
        "TransportConnected",
        "Wait",
        "backoff_delay",
        "config_from_mapping",
        "config_reference_markdown",
        "config_json_schema",
        "config_to_toml",
        "detect_patterns",
        "field_docs",
        "format_kv",
        "load_config",
        "load_schedule",
        "parse_kv",
        "render_diagram",
        "simulate",
    ]
)


@pytest.mark.spec("R5.1")
def test_fsm_surface_is_pinned() -> None:
    assert sorted(regulator.fsm.__all__) == FSM_PUBLIC
    for name in FSM_PUBLIC:
        assert getattr(regulator.fsm, name) is not None


@pytest.mark.parametrize("package", ["regulator.fsm", "regulator.adapters", "regulator.specs"])
def test_every_exported_name_exists_and_private_modules_declare_all(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        assert hasattr(module, name), name
    assert module.__all__ == sorted(module.__all__) or package == "regulator.fsm"


def test_version() -> None:
    from importlib.metadata import version

    assert regulator.fsm.__version__ == version("regulator")


WEBSOCKET_PUBLIC = sorted(
    [
        "AnyioClock",
        "BufferFull",
        "CallbackNotifier",
        "Classified",
        "Clock",
        "ConnectionClosedError",
        "LoggingNotifier",
        "Notice",
        "NotLiveError",
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
)
TORCH_PUBLIC = sorted(
    [
        "GuardedGradScaler",
        "GuardedShardedGradScaler",
        "InvalidCheckpointError",
        "NonFiniteInputError",
        "UncheckableInputError",
        "check_finite",
        "fp16_overflow_fields",
        "non_finite_fields",
        "trainable_parameters",
    ]
)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("regulator.adapters.websocket", WEBSOCKET_PUBLIC),
        ("regulator.adapters.torch", TORCH_PUBLIC),
        ("regulator.adapters.prometheus", ["MetricsExporter", "start_metrics_server"]),
        (
            "regulator.adapters.binance",
            sorted(
                [
                    "DEFAULT_BASE_URL",
                    "DEFAULT_REST_URL",
                    "AttemptBudget",
                    "BinanceRequestError",
                    "BinanceStream",
                    "Budget",
                    "FileBudget",
                    "Gap",
                    "OrderBook",
                    "OrderBookError",
                    "RedisBudget",
                    "RequestPacer",
                    "RequestTimeout",
                    "RestClient",
                    "RestError",
                    "SharedBudget",
                    "StoreUnavailable",
                    "StreamTracker",
                    "WeightBudget",
                    "budget_from_url",
                    "event_identity",
                    "shared_attempt_budget",
                    "shared_budget",
                    "validate_streams",
                ]
            ),
        ),
        ("regulator.adapters.optuna", ["SCALER_ATTRS", "ScalerTrial", "scaler_attributes"]),
        ("regulator.adapters.lightning", ["ScalerCallback", "scaler_metrics"]),
        (
            "regulator.specs.exchange",
            ["ConnectionRecord", "Exchange", "FaultProxy", "MarketConfig"],
        ),
    ],
)
def test_adapter_surfaces_are_pinned(module: str, names: list[str]) -> None:
    exported = importlib.import_module(module)
    assert sorted(exported.__all__) == names
    for name in names:
        assert getattr(exported, name) is not None


def test_importing_adapters_pulls_in_no_optional_dependency() -> None:
    import subprocess
    import sys

    code = (
        "import sys, regulator.adapters\n"
        "assert not {'torch', 'httpx', 'anyio'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_readme_api_table_names_every_export() -> None:
    """README's API section lists exactly what regulator.fsm and regulator.specs export."""
    import re
    from pathlib import Path

    import regulator.specs

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## API") : readme.index("## Configuration")]
    listed = set(re.findall(r"`([A-Za-z_]\w*)`", section))
    exported = set(regulator.fsm.__all__) | set(regulator.specs.__all__)
    assert exported - listed == set(), "exported but not in the README's API table"
    stale = {n for n in listed - exported if n[0].isupper() or "_" in n}
    assert stale <= {"StateMachine"}, "in the README's API table but not exported"


@pytest.mark.spec("R5.1")
def test_fast_action_constructors_build_what_the_classes_build() -> None:
    # The machine builds its frequent actions without their generated __init__ (half the
    # cost, fsm/_connection_events._maker): the same frozen objects, field for field.
    from regulator.fsm import _connection_events as events

    cases: list[tuple[Any, Any, dict[str, Any]]] = [
        (
            events.make_state_changed,
            events.StateChanged,
            {"at": 1.5, "source": "a", "target": "b", "reason": "r"},
        ),
        (events.make_connect, events.Connect, {"attempt": 3, "deadline": 31.5}),
        (events.make_restore, events.RestoreSubscriptions, {"attempt": 2}),
        (events.make_send_ping, events.SendPing, {"pong_deadline": 9.0}),
        (events.make_disconnect, events.Disconnect, {"reason": "ssl: mac"}),
        (events.make_wait, events.Wait, {"delay": 1.0, "until": 2.0, "attempt": 4}),
    ]
    for make, cls, fields in cases:
        made, built = make(*fields.values()), cls(**fields)
        assert type(made) is cls and made == built and hash(made) == hash(built)
        assert repr(made) == repr(built)
        with pytest.raises(AttributeError):  # still frozen
            made.__setattr__(next(iter(fields)), None)
    with pytest.raises(TypeError, match=r"Tick\.now"):  # a converter: refused
        events._maker(events.Tick)
