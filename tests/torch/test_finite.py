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


# -- memory and odd inputs -------------------------------------------------------------------

_MEMORY_PROBE = r"""
import json, math, torch
from regulator.adapters.torch import NonFiniteInputError, check_finite, fp16_overflow_fields

def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))

def extra(fn):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = status("VmRSS")
    fn()
    return status("VmHWM") - before

n = 16 * 2**20  # 64 MiB of float32
finite = torch.ones(n)
one_nan = torch.ones(n)
one_nan[n // 2] = math.nan
big = torch.ones(n)
big[7] = 1e5
strided = torch.ones(4096, 2 * 4096)[:, ::2]  # 64 MiB of values, not contiguous

def raises():
    try:
        check_finite(one_nan)
    except NonFiniteInputError:
        return
    raise AssertionError("no error")

out = {
    "finite": extra(lambda: check_finite(finite)),
    "one_nan": extra(raises),
    "fp16_range": extra(lambda: fp16_overflow_fields(big) == ["<tensor>"] or 1 / 0),
    "strided": extra(lambda: check_finite(strided)),
    "tensor": n * 4,
}
print(json.dumps(out))
"""


@pytest.mark.spec("R3.4")
def test_check_finite_needs_at_most_a_quarter_of_the_tensor_in_extra_memory() -> None:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    quarter = measured.pop("tensor") // 4
    for case, extra in measured.items():
        assert extra <= quarter, (case, extra, quarter)


@pytest.mark.spec("R3.4")
def test_odd_inputs_are_a_clear_error_naming_batch_and_field() -> None:
    from regulator.adapters.torch import UncheckableInputError

    # an int beyond float64 is inf in any float tensor: counted as one
    with pytest.raises(NonFiniteInputError, match=r"batch 0, field '<sequence>': 0 NaN and 1 Inf"):
        check_finite([1.0, 10**400])
    with pytest.raises(NonFiniteInputError, match=r"batch 1, field 'x': 0 NaN and 1 Inf"):
        check_finite([{"x": [1.0, 2.0]}, {"x": [-(10**5000), 2.0]}])
    cycle: list[object] = [torch.ones(2)]
    cycle.append(cycle)
    with pytest.raises(UncheckableInputError, match=r"batch 0, field '\[1\]': contains itself"):
        check_finite(cycle)
    loop: dict[str, object] = {"a": {"b": torch.ones(1)}}
    loop["a"]["c"] = loop  # type: ignore[index]
    with pytest.raises(UncheckableInputError, match=r"batch 2, field 'a\.c': contains itself"):
        check_finite([{"x": torch.ones(1)}, {"x": torch.ones(1)}, loop])
    deep: list[object] = [torch.ones(1)]
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(
        UncheckableInputError, match=r"batch 0, field '(\[0\]){100}': nested deeper"
    ):
        check_finite((deep,))
    for text in ("abc", b"abc", bytearray(b"abc")):
        with pytest.raises(UncheckableInputError, match=r"batch 0, field '<data>': .* not a batch"):
            check_finite(text)
    with pytest.raises(
        UncheckableInputError, match=r"batch 1, field '<batch>': str is not a batch"
    ):
        check_finite([{"x": torch.ones(1)}, "oops"])
    with pytest.raises(UncheckableInputError, match=r"neither a batch nor batches"):
        check_finite(object())
    # text inside a batch is metadata, not data: skipped
    assert check_finite([{"symbol": "BTCUSDT", "raw": b"\x00", "x": torch.ones(2)}]) == 1
    assert check_finite(2.5) == 1
    with pytest.raises(NonFiniteInputError, match=r"batch 0, field '<sequence>': 1 NaN"):
        check_finite(float("nan"))
    # a shared (not cyclic) sub-batch is fine
    shared = [torch.ones(1)]
    assert check_finite([(shared, shared)]) == 1
