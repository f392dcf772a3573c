"""ScalerMachine, rule by rule, with no torch."""

from __future__ import annotations

import json
import sys

import pytest
from regulator.fsm import IllegalEventError, ScalerConfig
from regulator.fsm._scaler import SCALER_STATES, Anomaly, EpochSummary, ScalerMachine, SetScale


def kinds(actions: object) -> list[str]:
    return [a.kind for a in actions or () if isinstance(a, Anomaly)]  # type: ignore[attr-defined]


def test_fsm_does_not_import_torch() -> None:
    ScalerMachine()
    assert "torch" not in sys.modules or "regulator.adapters.torch" in sys.modules


def test_warmup_ends_at_the_first_clean_step() -> None:
    m = ScalerMachine(initial_scale=2.0**16)
    assert m.step(True, 2.0**15) is None and m.state == "warmup"
    assert m.step(False, 2.0**15) is None and m.state == "stable"


@pytest.mark.spec("R2.3")
def test_over_threshold_then_reset_at_the_third_epoch_end() -> None:
    m = ScalerMachine(ScalerConfig(), initial_scale=2.0**16)
    m.step(False, 90_000.0)
    assert kinds(m.step(False, 108_000.0)) == ["over_threshold"]
    assert m.state == "over_threshold"
    assert m.step(False, 108_000.0) is None  # warned once, on entry
    assert kinds(m.end_epoch()) == [] and kinds(m.end_epoch()) == []
    actions = m.end_epoch()
    assert SetScale(value=32768.0, reason="reset") in actions
    assert kinds(actions) == ["reset"]
    assert isinstance(actions[0], EpochSummary) and actions[0].state == "reset"
    assert m.state == "reset"
    m.step(False, 32768.0)
    assert m.state == "stable"


@pytest.mark.spec("R2.3")
def test_a_run_started_over_the_threshold_resets_below_it() -> None:
    # 0.5 x 2^40 would still be far over the threshold: the target is capped at 0.5 x threshold
    m = ScalerMachine(ScalerConfig(), initial_scale=2.0**40)
    m.step(False, 2.0**40)
    assert m.state == "over_threshold"
    for _ in range(2):
        m.end_epoch()
    actions = m.end_epoch()
    assert SetScale(value=50_000.0, reason="reset") in actions
    m.step(False, 50_000.0)
    assert m.state == "stable" and m.counters.scale <= ScalerConfig().max_scale_threshold


@pytest.mark.spec("R2.3")
def test_the_reset_target_never_exceeds_the_current_scale_nor_falls_below_the_floor() -> None:
    cfg = ScalerConfig(reset_fraction=1.0, max_scale_threshold=1000.0, min_scale=600.0)
    m = ScalerMachine(cfg, initial_scale=2.0**16)
    m.counters.scale = 900.0
    assert m.reset_target() == 900.0  # never above the scale it replaces
    m.counters.scale = 2e5
    assert m.reset_target() == 1000.0  # reset_fraction 1 caps at the threshold, not over it
    floor = ScalerConfig(reset_fraction=0.1, min_scale=2.0**14, large_model_scale=2.0**14)
    assert ScalerMachine(floor, initial_scale=2.0**16).reset_target() == 2.0**14


@pytest.mark.spec("R2.3")
def test_epochs_over_threshold_must_be_consecutive() -> None:
    m = ScalerMachine(ScalerConfig(), initial_scale=2.0**16)
    m.step(False, 2e5)
    m.end_epoch()
    m.end_epoch()
    m.step(True, 50_000.0)  # an overflow brings it back under
    assert m.state == "stable"
    m.end_epoch()
    m.step(False, 2e5)
    m.end_epoch()
    m.end_epoch()
    assert m.state == "over_threshold"  # 2 consecutive, not 4 in all
    assert m.statistics()["resets"] == 0


@pytest.mark.spec("R2.4")
def test_five_consecutive_overflows_halve_and_restart_the_streak() -> None:
    m = ScalerMachine(ScalerConfig(), initial_scale=2.0**16)
    m.step(False, 2.0**16)
    scale = 2.0**16
    for _ in range(4):
        scale /= 2
        assert m.step(True, scale) is None
    actions = m.step(True, scale / 2)
    assert actions is not None
    assert actions[0] == SetScale(value=scale / 4, reason="overflow_halved")
    assert kinds(actions) == ["overflow_halved"]
    assert m.state == "overflow_halved" and m.counters.streak == 0
    for _ in range(4):
        assert m.step(True, 100.0) is None
    assert kinds(m.step(True, 100.0)) == ["overflow_halved"]  # five more: again
    m.step(False, 50.0)
    assert m.state == "stable"


def test_send_is_not_called_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    m = ScalerMachine(initial_scale=1024.0)
    m.step(False, 1024.0)
    calls = []
    monkeypatch.setattr(m, "send", lambda *a, **k: calls.append(a))
    for _ in range(1000):
        m.step(False, 1024.0)
        m.step(True, 512.0)
    assert calls == []


def test_illegal_events_raise_and_change_nothing() -> None:
    m = ScalerMachine(initial_scale=1024.0)
    before = m.snapshot()
    with pytest.raises(IllegalEventError, match=r"'settle' cannot be handled in state 'warmup'"):
        m._go("settle")
    assert m.snapshot() == before


def test_initial_scale_below_the_floor_is_rejected() -> None:
    with pytest.raises(ValueError, match="initial_scale: must be >= min_scale"):
        ScalerMachine(ScalerConfig(min_scale=8.0, init_scale=8.0), initial_scale=4.0)


def test_snapshot_is_json_and_restores() -> None:
    m = ScalerMachine(initial_scale=2.0**16)
    m.step(False, 2e5)
    m.end_epoch()
    data = json.loads(json.dumps(m.snapshot()))
    restored = ScalerMachine.restore(data)
    assert restored.state == "over_threshold"
    assert restored.snapshot() == m.snapshot()
    with pytest.raises(ValueError, match=r"snapshot\.state"):
        ScalerMachine.restore({**data, "state": "exploded"})


def test_every_state_is_in_the_diagram() -> None:
    text = format(ScalerMachine(), "mermaid")
    for state in SCALER_STATES:
        assert f"as {state}" in text
