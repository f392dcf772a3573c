"""Non-finite input checks (R3.4): find NaN/Inf in training data before it reaches the model."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch

from ...fsm import RegulatorError

__all__ = [
    "FLOAT16_MAX",
    "MAX_DEPTH",
    "NonFiniteInputError",
    "UncheckableInputError",
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


#: Nesting deeper than this is not a batch (and would overflow Python's stack).
MAX_DEPTH = 100
#: Elements checked at once: the masks of one piece are its only extra memory (a bool per
#: element), so a tensor's check needs at most a quarter of its size beyond it (R3.4).
PIECE = 1 << 16
_FIELD_ECHO = 60


def _is_number(value: Any) -> bool:
    # numpy's float64 is a float; bool is an int but never data to check
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_array(value: Any) -> bool:
    # numpy arrays without importing numpy (this wing imports only torch and regulator.fsm)
    return type(value).__module__ == "numpy" and hasattr(value, "__array_interface__")


def _as_float(value: int | float) -> float:
    """A number as float64 sees it: an int beyond its range is +-inf (as it trains)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _numbers(values: Iterable[int | float]) -> torch.Tensor:
    return torch.tensor([_as_float(v) for v in values], dtype=torch.float64)


def _key(key: Any) -> str:
    text = key if isinstance(key, str) else repr(key)
    return text if len(text) <= _FIELD_ECHO else text[: _FIELD_ECHO - 3] + "..."


class UncheckableInputError(RegulatorError, ValueError):
    """Not data: a cycle, nesting past :data:`MAX_DEPTH`, text where a batch should be."""

    def __init__(self, batch_index: int, field: str, problem: str) -> None:
        self.batch_index = batch_index
        self.field = field
        super().__init__(f"batch {batch_index}, field {field!r}: {problem}")


def _tensors(value: Any, batch_index: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    """Every checkable field of one batch, in order, with its path (``x``, ``[0]``, ``a.b``).

    Iterative (a deep batch cannot overflow Python's stack); a container met again on its
    own path is a cycle. Text and bytes hold no numbers: skipped inside a batch.
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    on_path: set[int] = set()
    exit_marker = object()
    while stack:
        item, path, depth = stack.pop()
        if item is exit_marker:
            on_path.discard(depth)  # the exit marker carries the container's id as "depth"
            continue
        if isinstance(item, torch.Tensor):
            yield path or "<tensor>", item
        elif _is_array(item):
            if item.dtype.kind in "fc":  # integer, bool and object arrays cannot hold NaN/Inf
                yield path or "<array>", torch.from_numpy(item)
        elif isinstance(item, Mapping | list | tuple):
            where = path or "<batch>"
            if id(item) in on_path:
                raise UncheckableInputError(batch_index, where, "contains itself (a cycle)")
            if depth >= MAX_DEPTH:
                raise UncheckableInputError(
                    batch_index, where, f"nested deeper than {MAX_DEPTH} levels"
                )
            if not isinstance(item, Mapping) and item and all(_is_number(v) for v in item):
                # a sequence of plain numbers: one field, checked in float64
                yield path or "<sequence>", _numbers(item)
                continue
            on_path.add(id(item))
            stack.append((exit_marker, "", id(item)))
            if isinstance(item, Mapping):
                children = [
                    (v, f"{path}.{_key(k)}" if path else _key(k), depth + 1)
                    for k, v in item.items()
                ]
            else:
                children = [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(item)]
            stack.extend(reversed(children))
        elif _is_number(item) and path and isinstance(item, float):
            yield path, _numbers([item])


def _floating(batch: Any, batch_index: int = 0) -> Iterator[tuple[str, torch.Tensor]]:
    for field, tensor in _tensors(batch, batch_index):
        if tensor.is_floating_point() or tensor.is_complex():
            yield field, tensor


def _pieces(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    """Views of ``tensor`` of at most :data:`PIECE` elements (no copy)."""
    if tensor.numel() <= PIECE:
        yield tensor
    elif tensor.is_contiguous():
        yield from torch.split(tensor.view(-1), PIECE)
    else:
        rows = max(1, PIECE // max(1, tensor[0].numel()))
        for part in torch.split(tensor, rows):
            if rows == 1 and part.numel() > PIECE:
                yield from _pieces(part[0])
            else:
                yield part


def _non_finite_counts(tensor: torch.Tensor) -> tuple[int, int]:
    """(NaN, Inf) counts, piece by piece; one read of the device when all are finite."""
    tensor = tensor.detach()
    bad = torch.zeros((), dtype=torch.int64, device=tensor.device)
    for piece in _pieces(tensor):
        bad += torch.isfinite(piece).logical_not_().sum()
    total = int(bad)
    if not total:
        return 0, 0
    nans = torch.zeros((), dtype=torch.int64, device=tensor.device)
    for piece in _pieces(tensor):
        nans += torch.isnan(piece).sum()
    nan_count = int(nans)
    return nan_count, total - nan_count


def non_finite_fields(batch: Any, batch_index: int = 0) -> list[tuple[str, int, int]]:
    """``(field, nan_count, inf_count)`` for every floating field of ``batch`` with any.

    Fields are tensors, numpy arrays and sequences of numbers, nested in tuples, lists and
    dicts (``x``, ``[0]``, ``features.price``). Checked piece by piece: the extra memory is
    one piece's masks, whatever the tensor's size. A batch that is not data (a cycle, nesting
    past :data:`MAX_DEPTH`) raises :class:`UncheckableInputError` naming the field.
    """
    found = []
    for field, tensor in _floating(batch, batch_index):
        nans, infs = _non_finite_counts(tensor)
        if nans or infs:
            found.append((field, nans, infs))
    return found


def fp16_overflow_fields(batch: Any) -> list[str]:
    """Fields holding finite values beyond float16's range (> 65504 in magnitude).

    Finite in float32, they become inf once fp16 autocast casts them: every step overflows.
    """
    found = []
    for field, tensor in _floating(batch):
        if tensor.dtype in (torch.float16, torch.bfloat16) or tensor.is_complex():
            continue  # already half precision, or no single magnitude to compare
        hits = torch.zeros((), dtype=torch.int64, device=tensor.device)
        for piece in _pieces(tensor.detach()):
            magnitude = piece.abs()
            hits += magnitude.gt(FLOAT16_MAX).logical_and_(torch.isfinite(piece)).sum()
        if int(hits):
            found.append(field)
    return found


def check_finite(data: Any) -> int:
    """Raise :class:`NonFiniteInputError` at the first batch holding NaN/Inf (R3.4).

    ``data`` is one batch (a tensor, a numpy array, a sequence of numbers, or a tuple/list/dict
    of those) or any iterable of batches (a DataLoader, a list of batches). Returns the number
    of batches checked. Run it once before training; it reads every value, so it costs one
    pass over the data, and at most a quarter of a tensor's size in extra memory.

    Input that is not data raises :class:`UncheckableInputError` (a ``ValueError``) naming
    the batch and field: text or bytes where a batch should be, a container holding itself,
    nesting deeper than :data:`MAX_DEPTH`. An int beyond float64's range counts as Inf (it
    becomes one in any float tensor).
    """
    if isinstance(data, str | bytes | bytearray):
        raise UncheckableInputError(
            0, "<data>", f"{type(data).__name__} is not a batch (got {_key(data)})"
        )
    if _is_number(data):
        data = [data]
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
        try:
            batches = iter(data)
        except TypeError:
            raise UncheckableInputError(
                0, "<data>", f"a {type(data).__name__} is neither a batch nor batches"
            ) from None
    count = 0
    for index, batch in enumerate(batches):
        if isinstance(batch, str | bytes | bytearray):
            raise UncheckableInputError(
                index, "<batch>", f"{type(batch).__name__} is not a batch (got {_key(batch)})"
            )
        problems = non_finite_fields(batch, index)
        if problems:
            field, nans, infs = problems[0]
            raise NonFiniteInputError(index, field, nans, infs)
        count += 1
    return count
