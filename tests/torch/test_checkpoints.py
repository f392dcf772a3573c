"""Scaler checkpoints: bad ones change nothing, plain ones keep the configured rules (R5.3)."""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import re
from typing import Any

import pytest
import torch
from _amp import amp_step, batch, mlp
from hypothesis import given
from hypothesis import strategies as st
from regulator.adapters.torch import GuardedGradScaler, InvalidCheckpointError
from regulator.fsm import ScalerConfig, parse_kv

LOGGER = "regulator.scaler"


def trained(**kwargs: Any) -> GuardedGradScaler:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = GuardedGradScaler("cpu", model=model, **kwargs)
    for i in range(3):
        amp_step(model, opt, scaler, batch(i), poison=i == 1)
    return scaler


def _without(state: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != key}


def _bad_snapshot(state: dict[str, Any], **counters: Any) -> dict[str, Any]:
    snapshot = dict(state["regulator"])
    snapshot["counters"] = {**snapshot["counters"], **counters}
    return {**state, "regulator": snapshot}


BAD: list[tuple[str, Any, str]] = [
    (
        "nan scale",
        lambda s: {**s, "scale": math.nan},
        r"scale: must be a finite number > 0 \(got nan\)",
    ),
    ("inf scale", lambda s: {**s, "scale": math.inf}, r"scale: .* \(got inf\)"),
    ("zero scale", lambda s: {**s, "scale": 0.0}, r"scale: .* \(got 0\.0\)"),
    ("negative scale", lambda s: {**s, "scale": -4.0}, r"scale: .* \(got -4\.0\)"),
    (
        "float64-only scale",
        lambda s: {**s, "scale": 1e39},
        r"scale: must be representable in float32",
    ),
    ("tiny scale", lambda s: {**s, "scale": 1e-50}, r"scale: must be representable in float32"),
    ("string scale", lambda s: {**s, "scale": "big"}, r"scale: must be a number \(got 'big'\)"),
    ("missing key", lambda s: _without(s, "_growth_tracker"), r"_growth_tracker: missing"),
    (
        "float interval",
        lambda s: {**s, "growth_interval": 2.5},
        r"growth_interval: must be an integer",
    ),
    (
        "bad growth",
        lambda s: {**s, "growth_factor": 0.5},
        r"growth_factor: must be > 1 \(got 0\.5\)",
    ),
    (
        "bad lifecycle",
        lambda s: _bad_snapshot(s, scale=math.nan),
        r"regulator\.counters\.scale: must be a finite number > 0 \(got nan\)",
    ),
    (
        "unknown counter",
        lambda s: _bad_snapshot(s, bogus=1),
        r"regulator\.counters\.bogus: unknown",
    ),
    (
        "history a string",
        lambda s: {**s, "regulator": {**s["regulator"], "history": "oops"}},
        r"regulator\.history: must be a list \(got 'oops'\)",
    ),
    (
        "huge tracker",
        lambda s: {**s, "_growth_tracker": 10**5000},
        r"_growth_tracker: must be an integer in \[0, 2147483647\] \(got <an int of 16610 bits>\)",
    ),
    ("not a dict", lambda s: [s], r"\$: must be a dict"),
]


@pytest.mark.spec("R5.3")
@pytest.mark.parametrize(("case", "corrupt", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_checkpoint_raises_one_clear_error_and_changes_nothing(
    case: str, corrupt: Any, message: str
) -> None:
    source = trained(init_scale=4096.0, growth_interval=2)
    target = trained(init_scale=256.0)
    before = (target.state_dict(), target.get_scale(), target.state, target.config)
    device_before = target._scale.item()  # type: ignore[union-attr]
    with pytest.raises(InvalidCheckpointError, match=message):
        target.load_state_dict(corrupt(source.state_dict()))
    assert (target.state_dict(), target.get_scale(), target.state, target.config) == before
    assert target._scale.item() == device_before  # type: ignore[union-attr]


@pytest.mark.spec("R5.3")
@pytest.mark.spec("R2.2")
def test_a_plain_checkpoint_keeps_the_configured_growth_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    plain = torch.amp.GradScaler("cpu", init_scale=2048.0, growth_factor=2.0, growth_interval=3)
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    for i in range(4):
        amp_step(model, opt, plain, batch(i))
    scaler = GuardedGradScaler("cpu", model=model, config=ScalerConfig(growth_interval=1000))
    scaler.load_state_dict(plain.state_dict())
    assert scaler.get_scale() == plain.get_scale() == 4096.0
    assert scaler._get_growth_tracker() == 1
    assert (scaler.get_growth_factor(), scaler.get_growth_interval()) == (1.2, 1000)
    (line,) = [r.getMessage() for r in caplog.records if "event=plain_checkpoint" in r.getMessage()]
    fields = parse_kv(line)
    assert (fields["kept_growth_factor"], fields["kept_growth_interval"]) == ("1.2", "1000")
    assert "R2.2" in fields["message"]


@pytest.mark.spec("R5.3")
def test_a_guarded_checkpoint_restores_torchs_numbers_like_gradscaler() -> None:
    source = GuardedGradScaler("cpu", 3.0, 4.0, 0.5, 2)
    target = GuardedGradScaler("cpu", 6.0, 7.0, 0.8, 1)
    target.load_state_dict(source.state_dict())
    assert (target.get_scale(), target.get_growth_factor()) == (3.0, 4.0)
    assert (target.get_backoff_factor(), target.get_growth_interval()) == (0.5, 2)
    assert target.config.growth_factor == 4.0


# -- every field of the lifecycle snapshot, fuzzed ---------------------------------------------

_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([-1, 2**31, 2**63, 10**400, 10**5000]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(snapshot: dict[str, Any]) -> list[tuple[str | int, ...]]:
    paths: list[tuple[str | int, ...]] = [(key,) for key in snapshot]
    paths += [("counters", name) for name in snapshot["counters"]]
    for index, record in enumerate(snapshot["history"]):
        paths += [("history", index, name) for name in record]
    return paths


def _kind(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _dotted(path: tuple[str | int, ...]) -> str:
    out = "regulator"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@functools.cache
def _source_state() -> dict[str, Any]:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    config = ScalerConfig(max_scale_threshold=1000.0, growth_interval=2, growth_factor=2.0)
    scaler = GuardedGradScaler("cpu", model=model, config=config, init_scale=512.0)
    for i in range(12):  # crosses the threshold, then 5 overflows in a row: history of 2
        amp_step(model, opt, scaler, batch(i), poison=i >= 7)
    state = scaler.state_dict()
    assert len(state["regulator"]["history"]) >= 2
    return state


@pytest.mark.spec("R5.3")
def test_an_odd_unknown_key_is_echoed_not_spliced_into_the_path() -> None:
    """A key that is not a plain name (Hypothesis found ":") is shown as its repr after the
    path: in the path it would make the message say something else."""
    for where, odd in (("counters", ":"), ("counters", "a: b\nc"), (None, "x.y"), (None, 7)):
        state = copy.deepcopy(_source_state())
        parent = state["regulator"] if where is None else state["regulator"][where]
        parent[odd] = 0
        target = GuardedGradScaler("cpu", model=mlp(), init_scale=256.0)
        with pytest.raises(InvalidCheckpointError) as caught:
            target.load_state_dict(state)
        path = "regulator" if where is None else f"regulator.{where}"
        (problem,) = caught.value.problems
        assert problem.startswith(f"{path}: unknown key {odd!r}"), problem
        assert "\n" not in problem


@pytest.mark.spec("R5.3")
@given(data=st.data())
def test_every_snapshot_field_fuzzed_is_named_or_loads(data: st.DataObject) -> None:
    state = copy.deepcopy(_source_state())
    snapshot = state["regulator"]
    path = data.draw(st.sampled_from(_paths(snapshot)), label="path")
    delete = data.draw(st.booleans(), label="delete")
    value = None if delete else data.draw(_ODD, label="value")
    parent: Any = snapshot
    for part in path[:-1]:
        parent = parent[part]
    original = parent[path[-1]]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    target = GuardedGradScaler("cpu", model=mlp(), init_scale=256.0)
    before = target.state_dict()
    problems: tuple[str, ...] = ()
    try:
        target.load_state_dict(state)
    except InvalidCheckpointError as exc:
        problems = exc.problems
    if problems:
        assert target.state_dict() == before  # nothing changed
        where = _dotted(path)
        assert any(p.startswith((where + ":", where + ".", where + "[")) for p in problems), (
            where,
            problems,
        )
        for problem in problems:  # key: rule (got value); nothing from inside
            assert re.fullmatch(r"[\w.\[\]$]+: [^\n]+", problem), problem
            assert "Error" not in problem and "argument" not in problem, problem
            assert len(problem) < 300, problem
    else:
        # it loaded: the value was a valid one (of the field's own kind), the scaler carries
        # it and keeps training
        assert not delete
        assert _kind(value) == _kind(original), (path, value, original)
        restored = target.state_dict()["regulator"]
        for part in path[:-1]:
            restored = restored[part]
        if path == ("counters", "scale"):
            value = state["scale"]  # the lifecycle follows torch's scale, as at every load
        assert restored[path[-1]] == value or (
            path[-1] in ("scale", "initial_scale") and restored[path[-1]] == float(value)  # type: ignore[arg-type]
        )
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        for i in range(3):
            amp_step(model, opt, target, batch(i), poison=i == 1)
        target.end_epoch()
        json.dumps(target.get_statistics())
