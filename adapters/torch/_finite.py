"""Non-finite input checks (R3.4): find NaN/Inf in training data before it reaches the model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from ...fsm import RegulatorError

__all__ = ["NonFiniteInputError", "check_finite", "non_finite_fields"]


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


def _tensors(value: Any, path: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield path or "<tensor>", value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{path}[{index}]")


def non_finite_fields(batch: Any) -> list[tuple[str, int, int]]:
    """``(field, nan_count, inf_count)`` for every floating tensor of ``batch`` with any."""
    found = []
    for field, tensor in _tensors(batch, ""):
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue  # integer tensors cannot hold NaN/Inf
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        nans = int(torch.isnan(tensor).sum())
        found.append((field, nans, int((~finite).sum()) - nans))
    return found


def check_finite(data: Any) -> int:
    """Raise :class:`NonFiniteInputError` at the first batch holding NaN/Inf (R3.4).

    ``data`` is a tensor, a tuple/list/dict of tensors (one batch), or any iterable of batches
    (a DataLoader, a list of batches). Returns the number of batches checked. Run it once
    before training; it reads every value, so it costs one pass over the data.
    """
    batches: Iterable[Any]
    if isinstance(data, torch.Tensor | Mapping | tuple) or (
        isinstance(data, list) and data and isinstance(data[0], torch.Tensor)
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
