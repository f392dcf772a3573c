"""Fuzzed config through the real loader: a number too large for a float hides nothing, and
environment names that look like ours but are not are reported with the closest valid name
(issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest
from regulator.fsm import ConfigError, load_config

HUGE = "9" * 400  # a TOML integer far beyond a float's range


@pytest.mark.spec("R4.4")
def test_an_integer_too_large_for_a_float_is_one_problem_among_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text(
        f"[connection]\nmax_delay = {HUGE}\ninitial_delay = -1\nmax_retries = -3\n"
        f"[scaler]\ngrowth_factor = {HUGE}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    problems = caught.value.problems
    assert sorted(p.split(":")[0] for p in problems) == [
        "connection.initial_delay",
        "connection.max_delay",
        "connection.max_retries",
        "scaler.growth_factor",
    ]
    huge = [p for p in problems if "float range" in p]
    assert len(huge) == 2
    assert all(len(p) < 200 for p in problems)  # the 400 digits are not printed whole
    assert not any("int too large" in p for p in problems)


@pytest.mark.spec("R4.4")
@pytest.mark.parametrize(
    ("name", "closest"),
    [
        ("REGULATOR_CONNECTION_MAX_RETRIES", "REGULATOR_CONNECTION__MAX_RETRIES"),
        ("REGULATOR_CONECTION__MAX_DELAY", "REGULATOR_CONNECTION__MAX_DELAY"),
        ("regulator_connection__max_delay", "REGULATOR_CONNECTION__MAX_DELAY"),
    ],
)
def test_an_env_name_that_looks_like_ours_is_reported_with_the_closest(
    name: str, closest: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={name: "3"})
    assert list(caught.value.problems) == [
        f"{name}: unknown environment setting (did you mean {closest!r}?)"
    ]


def test_unrelated_env_names_are_still_ignored() -> None:
    load_config(env={"HOME": "/root", "REGULATOR_CONFIG": "", "WS_SOMETHING_ELSE": "1"})
