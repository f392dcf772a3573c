"""Optuna on the guarded scaler (extra ``optuna``).

.. code-block:: python

    from regulator.adapters.optuna import ScalerTrial
"""

from ._optuna import SCALER_ATTRS as SCALER_ATTRS
from ._optuna import ScalerTrial as ScalerTrial
from ._optuna import scaler_attributes as scaler_attributes

__all__ = ["SCALER_ATTRS", "ScalerTrial", "scaler_attributes"]
