"""The CPU half of ``make gpu-check`` (tests/gpu/gpu_check.py), on a short schedule."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from regulator.fsm import ScalerConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "gpu"))
import gpu_check


@pytest.mark.spec("R2.3")
@pytest.mark.spec("R2.4")
def test_the_gpu_check_passes_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # the same checks on a schedule 10x shorter: threshold, halvings, a reset in 300 steps
    monkeypatch.setattr(gpu_check, "EPOCH", 50)
    monkeypatch.setattr(gpu_check, "PERIOD", 200)
    monkeypatch.setattr(gpu_check, "RUN_AT", 120)
    monkeypatch.setattr(gpu_check, "SINGLE", 41)
    monkeypatch.setattr(
        gpu_check,
        "CONFIG",
        ScalerConfig(
            growth_interval=10, growth_factor=2.0, max_scale_threshold=3000.0, reset_after_epochs=2
        ),
    )
    assert gpu_check.main(["--device", "cpu", "--steps", "300", "--blocks", "2"]) == 0
    table = capsys.readouterr().out
    assert "FAIL" not in table
    assert table.count("PASS") == 11  # 3 paths x 3 checks, syncs, timing
    # the schedule reaches every anomaly: over_threshold, overflow_halved, reset
    assert "(over_threshold, overflow_halved, reset)" in table
