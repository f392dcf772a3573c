"""`regulator demo --storage`: refused at once, in one line, before any market data flows;
shown with only the password hidden; a journal file path works."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from regulator.adapters.demo._storage import (
    DRIVERS,
    StorageError,
    check_storage,
    open_storage,
    redact_storage,
)
from sqlalchemy.engine import make_url

MISSING = [
    name
    for name, (module, _) in DRIVERS.items()
    if name != "sqlite" and importlib.util.find_spec(module) is None
]


@pytest.mark.skipif(not MISSING, reason="every database driver the demo names is installed")
def test_a_missing_driver_is_refused_before_the_market_phase(tmp_path: Path) -> None:
    url = f"{MISSING[0]}://optuna:s3cret@127.0.0.1:1/optuna"
    done = subprocess.run(
        [sys.executable, "-m", "regulator.adapters.cli", "demo", "--quick", "--storage", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "event=" not in done.stdout  # nothing ran
    [line] = done.stderr.splitlines()
    module, install = DRIVERS[MISSING[0]]
    assert line.startswith("error: --storage: ") and repr(module) in line and install in line
    assert "s3cret" not in line and "optuna:***@127.0.0.1:1" in line
    assert not (tmp_path / "regulator-report").exists()


@pytest.mark.parametrize(
    ("storage", "rule"),
    [
        ("postgresql://u:p@host:notaport/db", "is not a valid SQLAlchemy URL"),
        ("nosuchdb://host/db", "which SQLAlchemy does not know"),
        ("sqlite:////nonexistent-folder/study.db", "of the SQLite file does not exist"),
        ("/nonexistent-folder/study.journal", "journal file path, and its folder"),
    ],
)
def test_bad_storage_is_named_with_its_rule(storage: str, rule: str) -> None:
    with pytest.raises(StorageError, match=r"^--storage: ") as caught:
        check_storage(storage)
    assert rule in str(caught.value) and "\n" not in str(caught.value)


def test_only_the_password_is_redacted() -> None:
    url = "postgresql+psycopg2://optuna:s3cret@db.example:5432/studies?sslmode=require"
    shown = redact_storage(url)
    assert shown == "postgresql+psycopg2://optuna:***@db.example:5432/studies?sslmode=require"
    parsed = make_url(shown)  # still a valid URL
    assert (parsed.host, parsed.port, parsed.database) == ("db.example", 5432, "studies")
    for unchanged in ("sqlite:////tmp/a/study.db", "sqlite:///rel.db", "/tmp/study.journal"):
        assert redact_storage(unchanged) == unchanged


def test_a_journal_file_path_is_a_journal_storage(tmp_path: Path) -> None:
    path = tmp_path / "study.journal"
    study = optuna.create_study(study_name="s", storage=open_storage(str(path)))
    study.optimize(lambda trial: trial.suggest_float("x", 0.0, 1.0), n_trials=2)
    again = optuna.load_study(study_name="s", storage=open_storage(str(path)))
    assert len(again.trials) == 2 and path.stat().st_size > 0


def test_the_docs_name_the_driver_of_each_database() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "demo.md").read_text(encoding="utf-8")
    for name, (_, install) in DRIVERS.items():
        assert f"`{name}://" in page, name
        if install.startswith("pip"):
            assert install in page, install
