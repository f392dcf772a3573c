"""The multi-process harness passes teardown crashes after results and fails everything else."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from _spawn import WorkerFailed, run_scripts, spawn_ranks
from _spawn_probes import (
    abort_before_publishing_on_rank_1,
    hang,
    publish_then_abort,
    publish_then_hang,
)

HERE = Path(__file__).parent
PUBLISH = "import os, sys; sys.path.insert(0, {here!r}); from _spawn import publish; "


def test_a_worker_that_published_then_aborted_passes(tmp_path: Path) -> None:
    results = spawn_ranks(publish_then_abort, 2, tmp_path)
    assert results == [{"rank": 0, "world": 2}, {"rank": 1, "world": 2}]


def test_a_worker_that_died_before_publishing_fails_with_its_signal(tmp_path: Path) -> None:
    with pytest.raises(WorkerFailed, match=r"rank1: killed by SIGABRT"):
        spawn_ranks(abort_before_publishing_on_rank_1, 2, tmp_path)


def test_a_hung_worker_is_killed_and_fails(tmp_path: Path) -> None:
    with pytest.raises(WorkerFailed, match=r"rank0: still running at the deadline"):
        spawn_ranks(hang, 1, tmp_path, timeout=3.0)


def test_a_worker_that_published_then_hung_passes_after_the_grace(tmp_path: Path) -> None:
    # the hang is cut short by GRACE, not by the (long) deadline: the test would take 600 s
    assert spawn_ranks(publish_then_hang, 2, tmp_path, timeout=600) == [{"rank": 0}, {"rank": 1}]


def test_scripts_are_judged_by_what_they_published(tmp_path: Path) -> None:
    code = PUBLISH.format(here=str(HERE)) + (
        "publish(sys.argv[1], os.environ['WORKER_NAME'], {'ok': 1}); os.abort()"
    )
    assert run_scripts([[sys.executable, "-c", code, str(tmp_path)]], tmp_path) == [{"ok": 1}]
    with pytest.raises(WorkerFailed, match=r"worker0: exit code 3"):
        run_scripts([[sys.executable, "-c", "raise SystemExit(3)"]], tmp_path / "none")
