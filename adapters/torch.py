"""The torch adapter: a guarded AMP ``GradScaler`` and input checks (extra ``torch``).

.. code-block:: python

    from regulator.adapters.torch import GuardedGradScaler, check_finite
"""

from ._finite import NonFiniteInputError as NonFiniteInputError
from ._finite import check_finite as check_finite
from ._finite import non_finite_fields as non_finite_fields
from ._grad_scaler import GuardedGradScaler as GuardedGradScaler
from ._grad_scaler import trainable_parameters as trainable_parameters

__all__ = [
    "GuardedGradScaler",
    "NonFiniteInputError",
    "check_finite",
    "non_finite_fields",
    "trainable_parameters",
]
