"""The `regulator` command line: config check/show/schema and simulate."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from regulator.adapters.cli import main

REGULATOR = str(Path(sys.executable).parent / "regulator")


@pytest.mark.spec("R4.3")
def test_config_check_prints_the_effective_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REGULATOR_CONFIG", raising=False)
    path = tmp_path / "ok.toml"
    path.write_text("[connection]\nmax_delay = 42\n", encoding="utf-8")
    assert main(["config", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert tomllib.loads(out)["connection"]["max_delay"] == 42.0


@pytest.mark.spec("R4.4")
def test_config_check_exits_2_listing_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        "[connection]\ninitial_delay = -1\n[scaler]\ngrowth_factor = 0\n", encoding="utf-8"
    )
    result = subprocess.run(
        [REGULATOR, "config", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: connection.initial_delay: must be > 0 (got -1)",
        "error: scaler.growth_factor: must be > 1 (got 0)",
    ]
    assert result.stdout == ""


def test_config_show_applies_env(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WS_RECONNECT_MAX_RETRIES", "7")
    assert main(["config", "show"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["connection"]["max_retries"] == 7


def test_config_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["properties"]["scaler"]["properties"]["growth_factor"]["exclusiveMinimum"] == 1


def test_simulate_prints_timeline_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "outage", "--seed", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("event=simulate schedule=outage")
    assert any(" event=alarm " in line for line in out)
    assert any(" event=resolved " in line for line in out)
    assert out[-2].startswith("event=totals schedule=outage")


def test_simulate_rejects_an_unknown_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "no-such-schedule"]) == 2
    assert "neither a built-in" in capsys.readouterr().err
