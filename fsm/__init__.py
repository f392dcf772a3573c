"""regulator.fsm: the pure machines, their events and actions, and the configuration.

Nothing here does I/O, reads a clock, or imports anyio or torch; adapters do that.
"""

from ._config import BinanceConfig as BinanceConfig
from ._config import ConnectionConfig as ConnectionConfig
from ._config import RegulatorConfig as RegulatorConfig
from ._config import ScalerConfig as ScalerConfig
from ._config import config_reference_markdown as config_reference_markdown
from ._config import field_docs as field_docs
from ._config_loader import config_from_mapping as config_from_mapping
from ._config_loader import config_json_schema as config_json_schema
from ._config_loader import config_to_toml as config_to_toml
from ._config_loader import load_config as load_config
from ._connection import CONNECTION_STATES as CONNECTION_STATES
from ._connection import DELAY_BUCKETS as DELAY_BUCKETS
from ._connection import ConnectionMachine as ConnectionMachine
from ._connection import FailureDecision as FailureDecision
from ._connection import backoff_delay as backoff_delay
from ._connection_events import Alarm as Alarm
from ._connection_events import AlarmResolved as AlarmResolved
from ._connection_events import Connect as Connect
from ._connection_events import ConnectionAction as ConnectionAction
from ._connection_events import ConnectionEvent as ConnectionEvent
from ._connection_events import ConnectionFailed as ConnectionFailed
from ._connection_events import ConnectionHealthy as ConnectionHealthy
from ._connection_events import Disconnect as Disconnect
from ._connection_events import FailureKind as FailureKind
from ._connection_events import FailureRecord as FailureRecord
from ._connection_events import GiveUp as GiveUp
from ._connection_events import HandshakeSucceeded as HandshakeSucceeded
from ._connection_events import PatternDetected as PatternDetected
from ._connection_events import PongReceived as PongReceived
from ._connection_events import RaiseAlarm as RaiseAlarm
from ._connection_events import ResolveAlarm as ResolveAlarm
from ._connection_events import RestoreSubscriptions as RestoreSubscriptions
from ._connection_events import SendPing as SendPing
from ._connection_events import Start as Start
from ._connection_events import StateChanged as StateChanged
from ._connection_events import Stop as Stop
from ._connection_events import Tick as Tick
from ._connection_events import TransportConnected as TransportConnected
from ._connection_events import Wait as Wait
from ._diagram import DiagramError as DiagramError
from ._diagram import render_diagram as render_diagram
from ._errors import ConfigError as ConfigError
from ._errors import IllegalEventError as IllegalEventError
from ._errors import RegulatorError as RegulatorError
from ._errors import ScaleCollapseError as ScaleCollapseError
from ._logfmt import format_kv as format_kv
from ._logfmt import parse_kv as parse_kv
from ._machine import EngineFallbackWarning as EngineFallbackWarning
from ._machine import Machine as Machine
from ._patterns import PatternReport as PatternReport
from ._patterns import detect_patterns as detect_patterns
from ._scaler import SCALER_STATES as SCALER_STATES
from ._scaler import ScalerMachine as ScalerMachine
from ._simulator import BUILTIN_SCHEDULES as BUILTIN_SCHEDULES
from ._simulator import Fault as Fault
from ._simulator import Schedule as Schedule
from ._simulator import SimulationResult as SimulationResult
from ._simulator import load_schedule as load_schedule
from ._simulator import simulate as simulate

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_SCHEDULES",
    "CONNECTION_STATES",
    "DELAY_BUCKETS",
    "SCALER_STATES",
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
    "config_json_schema",
    "config_reference_markdown",
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
