"""Shared test setup: Hypothesis profiles and the `spec` marker check."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Machines here are noisy 2-core VMs: never let timing decide a property test.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "default")
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from _traceability import requirement_ids

    known = requirement_ids()
    for item in items:
        for mark in item.iter_markers("spec"):
            for requirement in mark.args:
                if requirement not in known:
                    raise pytest.UsageError(
                        f"{item.nodeid}: @pytest.mark.spec({requirement!r}) names no requirement"
                        " in specs/requirements.md"
                    )


@pytest.fixture(autouse=True)
def _no_bare_top_level_packages() -> Iterator[None]:
    """`fsm` and `adapters` are repository folders, never importable top-level packages."""
    yield
    assert "fsm" not in sys.modules and "adapters" not in sys.modules


# The socket tests run on both anyio backends (a module may pin one by overriding this).
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def certs() -> Any:
    """One trustme CA and 127.0.0.1 certificate for every TLS test."""
    from _faultbed import Certs

    return Certs()


@pytest.fixture
def ca_file(certs: Any, tmp_path: Path) -> str:
    """The test CA's certificate as a PEM file, for clients that take a CA bundle path."""
    path = tmp_path / "ca.pem"
    certs.ca.cert_pem.write_to_path(str(path))
    return str(path)
