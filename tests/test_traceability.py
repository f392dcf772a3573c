"""Every requirement of specs/requirements.md is checked by at least one marked test."""

from __future__ import annotations

import re

import pytest
from _traceability import markers_by_file, requirement_rows

#: Criteria not built yet, and the issue that builds them. Later issues empty this.
PENDING: dict[str, str] = {}


def _expected_ids() -> list[str]:
    counts = {1: 5, 2: 5, 3: 5, 4: 5, 5: 5}
    return [f"R{group}.{n}" for group, total in counts.items() for n in range(1, total + 1)]


def test_requirements_are_numbered_in_seed_order() -> None:
    assert list(requirement_rows()) == _expected_ids()


@pytest.mark.spec("R5.5")
def test_every_requirement_has_a_marked_test(capsys: pytest.CaptureFixture[str]) -> None:
    rows = requirement_rows()
    marked = set().union(*markers_by_file().values())
    missing = sorted(set(rows) - marked - set(PENDING))
    assert missing == [], f"requirements with no @pytest.mark.spec test: {missing}"
    unknown = sorted(marked - set(rows))
    assert unknown == [], f"markers naming unknown requirements: {unknown}"
    stale = sorted(set(PENDING) & marked)
    assert stale == [], f"listed as pending but tested: {stale}; remove them from PENDING"
    with capsys.disabled():
        print(
            f"\ntraceability: {len(rows) - len(PENDING)}/{len(rows)} traced, {len(PENDING)} pending"
        )


def test_tests_column_names_exactly_the_files_with_markers() -> None:
    by_file = markers_by_file()
    for requirement, (_, tests_cell) in requirement_rows().items():
        listed = set(re.findall(r"`([^`]+\.py)`", tests_cell))
        actual = {path for path, ids in by_file.items() if requirement in ids}
        if requirement in PENDING:
            assert "pending" in tests_cell, f"{requirement}: mark the Tests cell pending"
            continue
        assert listed == actual, f"{requirement}: table lists {listed}, markers in {actual}"


def test_implemented_in_cells_point_at_existing_files() -> None:
    from _traceability import ROOT

    for requirement, (implemented, _) in requirement_rows().items():
        for path in re.findall(r"`([\w/.]+\.(?:py|md)|Makefile|\.ci/run)`", implemented):
            assert (ROOT / path).exists(), f"{requirement}: {path} does not exist"
