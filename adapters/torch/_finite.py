"""Non-finite input checks (R3.4): find NaN/Inf in training data before it reaches the model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from ...fsm import RegulatorError

__all__ = [
    "FLOAT16_MAX",
    "NonFiniteInputError",
    "check_finite",
    "fp16_overflow_fields",
    "non_finite_fields",
]


class NonFiniteInputError(RegulatorError, ValueError):
    """A batch holds NaN or Inf values.

    Attributes name the batch index, the field (``x``, ``[0]``, ``features.price``) and the
    counts, so the offending row can be found.
    """

    def __init__(self, batch_index: int, field: str, nan_count: int, inf_count: int) -> None:
        self.batch_index = batch_index
        self.field = field
        self.nan_count = nan_count
        self.inf_count = inf_count
        super().__init__(
            f"batch {batch_index}, field {field!r}: {nan_count} NaN and {inf_count} Inf values"
        )


#: float16's largest finite value: a float32 input above it overflows under fp16 autocast.
FLOAT16_MAX = 65504.0


def _is_number(value: Any) -> bool:
    # numpy's float64 is a float; bool is an int but never data to check
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_array(value: Any) -> bool:
    # numpy arrays without importing numpy (this wing imports only torch and regulator.fsm)
    return type(value).__module__ == "numpy" and hasattr(value, "__array_interface__")


def _tensors(value: Any, path: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield path or "<tensor>", value
    elif _is_array(value):
        if value.dtype.kind in "fc":  # integer, bool and object arrays cannot hold NaN/Inf
            yield path or "<array>", torch.from_numpy(value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        if value and all(_is_number(item) for item in value):
            # a sequence of plain numbers: one field, checked in float64 (no rounding to inf)
            yield path or "<sequence>", torch.tensor(value, dtype=torch.float64)
            return
        for index, item in enumerate(value):
            yield from _tensors(item, f"{path}[{index}]")
    elif isinstance(value, float) and path:
        yield path, torch.tensor(value, dtype=torch.float64)


def _floating(batch: Any) -> Iterator[tuple[str, torch.Tensor]]:
    for field, tensor in _tensors(batch, ""):
        if tensor.is_floating_point() or tensor.is_complex():
            yield field, tensor


def non_finite_fields(batch: Any) -> list[tuple[str, int, int]]:
    """``(field, nan_count, inf_count)`` for every floating field of ``batch`` with any.

    Fields are tensors, numpy arrays and sequences of numbers, nested in tuples, lists and
    dicts (``x``, ``[0]``, ``features.price``).
    """
    found = []
    for field, tensor in _floating(batch):
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nans = int(torch.isnan(tensor).sum())
        found.append((field, nans, int((~finite).sum()) - nans))
    return found


def fp16_overflow_fields(batch: Any) -> list[str]:
    """Fields holding finite values beyond float16's range (> 65504 in magnitude).

    Finite in float32, they become inf once fp16 autocast casts them: every step overflows.
    """
    found = []
    for field, tensor in _floating(batch):
        if tensor.dtype in (torch.float16, torch.bfloat16) or tensor.is_complex():
            continue  # already half precision, or no single magnitude to compare
        magnitude = tensor.detach().abs()
        if bool((magnitude[torch.isfinite(magnitude)] > FLOAT16_MAX).any()):
            found.append(field)
    return found


def check_finite(data: Any) -> int:
    """Raise :class:`NonFiniteInputError` at the first batch holding NaN/Inf (R3.4).

    ``data`` is one batch (a tensor, a numpy array, a sequence of numbers, or a tuple/list/dict
    of those) or any iterable of batches (a DataLoader, a list of batches). Returns the number
    of batches checked. Run it once before training; it reads every value, so it costs one
    pass over the data.
    """
    batches: Iterable[Any]
    if (
        isinstance(data, torch.Tensor | Mapping | tuple)
        or _is_array(data)
        or (
            isinstance(data, list)
            and data
            and (isinstance(data[0], torch.Tensor) or _is_array(data[0]) or _is_number(data[0]))
        )
    ):
        batches = [data]
    else:
        batches = data
    count = 0
    for index, batch in enumerate(batches):
        problems = non_finite_fields(batch)
        if problems:
            field, nans, infs = problems[0]
            raise NonFiniteInputError(index, field, nans, infs)
        count += 1
    return count
