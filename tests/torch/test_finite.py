"""R3.4 complete: numpy arrays, sequences of numbers, keyword inputs, float16's range."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from _amp import amp_step, batch
from regulator.adapters.torch import (
    GuardedGradScaler,
    NonFiniteInputError,
    check_finite,
    fp16_overflow_fields,
)
from regulator.fsm import parse_kv
from torch import nn

LOGGER = "regulator.scaler"


@pytest.mark.spec("R3.4")
def test_check_finite_reads_numpy_arrays_and_sequences_of_numbers() -> None:
    assert check_finite(np.ones((4, 3))) == 1
    assert check_finite([1.0, 2.5, 3]) == 1  # one batch of plain numbers
    assert check_finite([[1.0, 2.0], [3.0, 4.0]]) == 2  # two batches
    with pytest.raises(NonFiniteInputError, match=r"batch 0, field '<array>': 1 NaN and 0 Inf"):
        check_finite(np.array([1.0, np.nan]))
    with pytest.raises(NonFiniteInputError, match=r"batch 0, field '<sequence>': 0 NaN and 1 Inf"):
        check_finite([1.0, float("inf")])
    rows = [{"price": np.array([1.0, 2.0]), "volume": [3.0, 4.0]} for _ in range(3)]
    rows.append({"price": np.array([1.0, 2.0]), "volume": [float("nan"), 4.0]})
    with pytest.raises(NonFiniteInputError, match=r"batch 3, field 'volume': 1 NaN"):
        check_finite(rows)
    assert check_finite([np.arange(3), np.array(["a"], dtype=object)]) == 1  # nothing to check


class Keyed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, *, bias: torch.Tensor | None = None) -> torch.Tensor:
        out: torch.Tensor = self.lin(x)
        return out if bias is None else out + bias


@pytest.mark.spec("R3.4")
def test_check_inputs_checks_keyword_arguments_of_the_forward() -> None:
    model = Keyed()
    scaler = GuardedGradScaler("cpu", model=model, check_inputs=True)
    x = torch.ones(2, 8)
    model(x, bias=torch.zeros(2, 1))
    with pytest.raises(NonFiniteInputError, match=r"field '\[1\]\.bias': 1 NaN and 0 Inf"):
        model(x, bias=torch.tensor([[float("nan")], [0.0]]))
    assert scaler.state == "warmup"


@pytest.mark.spec("R3.4")
def test_values_beyond_float16_under_fp16_autocast_are_a_warning_naming_the_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    assert fp16_overflow_fields({"ok": torch.ones(2), "big": torch.tensor([7e4])}) == ["big"]
    model = Keyed()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, check_inputs=True)
    x, y = batch(0, n=4)
    x[1, 2] = 1e5  # finite in float32, inf once autocast casts it to float16
    model(x)  # outside autocast: nothing to say
    for _ in range(2):
        amp_step(model, opt, scaler, (x, y))
    lines = [r for r in caplog.records if "event=fp16_range" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "WARNING"  # once per field
    assert parse_kv(lines[0].getMessage())["field"] == "[0]"
