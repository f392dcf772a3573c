"""regulator.specs: reference models and Hypothesis state machines a host can reuse.

Needs the ``specs`` extra (Hypothesis). See ``connection_lifecycle_spec`` and
``scaler_lifecycle_spec`` for how a host runs them against its own configuration.
"""

from ._connection_model import CONNECTION_TABLE as CONNECTION_TABLE
from ._connection_model import ConnectionModel as ConnectionModel
from ._connection_model import connection_configs as connection_configs
from ._connection_model import connection_lifecycle_spec as connection_lifecycle_spec
from ._coverage import TransitionRecorder as TransitionRecorder
from ._coverage import coverage_report as coverage_report
from ._coverage import declared_transitions as declared_transitions
from ._coverage import next_transition as next_transition
from ._machine_spec import MachineSpec as MachineSpec
from ._machine_spec import ReferenceModel as ReferenceModel
from ._machine_spec import machine_spec as machine_spec
from ._scaler_model import ScalerModel as ScalerModel
from ._scaler_model import scaler_configs as scaler_configs
from ._scaler_model import scaler_lifecycle_spec as scaler_lifecycle_spec
from ._scaler_model import torch_update as torch_update

__all__ = [
    "CONNECTION_TABLE",
    "ConnectionModel",
    "MachineSpec",
    "ReferenceModel",
    "ScalerModel",
    "TransitionRecorder",
    "connection_configs",
    "connection_lifecycle_spec",
    "coverage_report",
    "declared_transitions",
    "machine_spec",
    "next_transition",
    "scaler_configs",
    "scaler_lifecycle_spec",
    "torch_update",
]
