"""torch's constructor defaults, marked so an explicit argument can be told from a default.

``GuardedGradScaler("cuda", init_scale=2.**16)`` means "I want torch's number" and wins over
the config; ``GuardedGradScaler("cuda")`` means "whatever the config says" (R2.2's 1.2 and
2000). Both show ``init_scale=65536.0`` in the signature, so the two cannot differ by value:
the default is a float (int) subclass that compares, prints and computes as the number and is
recognised by its type.
"""

from __future__ import annotations

__all__ = ["TorchDefault", "TorchDefaultInt", "is_default"]


class TorchDefault(float):
    """A float default of ``torch.amp.GradScaler``'s signature (not passed by the caller)."""

    def __repr__(self) -> str:
        return float.__repr__(self)


class TorchDefaultInt(int):
    """An int default of ``torch.amp.GradScaler``'s signature (not passed by the caller)."""

    def __repr__(self) -> str:
        return int.__repr__(self)


def is_default(value: object) -> bool:
    # None: regulator 0.1's spelling of "not given" (its keywords defaulted to None)
    return value is None or type(value) in (TorchDefault, TorchDefaultInt)


INIT_SCALE = TorchDefault(2.0**16)
GROWTH_FACTOR = TorchDefault(2.0)
BACKOFF_FACTOR = TorchDefault(0.5)
GROWTH_INTERVAL = TorchDefaultInt(2000)
