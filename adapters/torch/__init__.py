"""The torch wing (extra ``torch``): a guarded AMP ``GradScaler`` and input checks.

What it binds
-------------
``regulator.fsm.ScalerMachine`` to ``torch.amp.GradScaler``: ``GuardedGradScaler`` is a
subclass (torch's constructor, the guard's extras keyword-only) that keeps torch's arithmetic
on the device and feeds the machine only what a step already brings to the host (the found-inf
flag torch reads to decide whether to skip ``optimizer.step()``), so it adds no host-device
sync per step. ``GuardedShardedGradScaler`` does the same over FSDP's ``ShardedGradScaler``
(found-inf all-reduced across ranks). ``check_finite`` checks the input data before training
(R3.4). Forward hooks on the model hold the scaler and the output weakly (``_hooks.py``).

May import: ``regulator.fsm`` and torch. Never another wing, the command line or the demo.

Data flow
---------
::

    model forward  --> output hook (only while an anomaly may come): a weak reference to
                       the output; input hook (check_inputs): NaN/Inf, float16's range
    scale(loss) / unscale_ / step        torch's own kernels, on the device
        _maybe_opt_step reads found_inf  --> kept on the host, no extra sync
        fused optimizer's found-inf check --> its flag is the ledger's slot (_fused_check.py)
    update()   --> a step the host did not see (fused optimizer, skipped step()): the halving
                   and floor on the device, the found-inf flag kept (_device_steps.py);
                   folded in and replayed at the next read of the lifecycle (one read,
                   _unseen.py)
               --> common step: torch's update + three counters (the fast path)
               --> otherwise: float32 host mirror of the scale --> ScalerMachine (plain
               counters; a send() only when the lifecycle changes) --> SetScale / Anomaly
               --> one in-place write of the device scale, one log line (_diagnostics.py)
    end_epoch() --> one sync: mirror checked against the device --> EpochSummary, log (R2.5)
    load_state_dict() --> _checkpoint.read_checkpoint (every key checked) --> applied whole

.. code-block:: python

    from regulator.adapters.torch import GuardedGradScaler, check_finite

    scaler = GuardedGradScaler("cuda", model=model)   # torch's constructor, extras by keyword
"""

from ._checkpoint import InvalidCheckpointError as InvalidCheckpointError
from ._finite import NonFiniteInputError as NonFiniteInputError
from ._finite import UncheckableInputError as UncheckableInputError
from ._finite import check_finite as check_finite
from ._finite import fp16_overflow_fields as fp16_overflow_fields
from ._finite import non_finite_fields as non_finite_fields
from ._grad_scaler import GuardedGradScaler as GuardedGradScaler
from ._grad_scaler import trainable_parameters as trainable_parameters
from ._sharded import GuardedShardedGradScaler as GuardedShardedGradScaler

__all__ = [
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
