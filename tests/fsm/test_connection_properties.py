"""ConnectionMachine against the plain reference model of regulator.specs, under Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import settings
from regulator.fsm import ConnectionConfig
from regulator.specs import connection_lifecycle_spec

Lifecycle = connection_lifecycle_spec()
TestConnectionLifecycle = pytest.mark.spec("R1.1", "R1.2", "R1.3", "R1.4", "R1.5", "R3.3")(
    Lifecycle.TestCase
)
TestConnectionLifecycle.settings = settings(
    Lifecycle.TestCase.settings, max_examples=150, stateful_step_count=60
)

# The defaults a host ships with, checked the way a host would check its own config.
DefaultLifecycle = connection_lifecycle_spec(ConnectionConfig())
TestDefaultConfigLifecycle = DefaultLifecycle.TestCase
TestDefaultConfigLifecycle.settings = settings(
    DefaultLifecycle.TestCase.settings, max_examples=50, stateful_step_count=80
)
