"""ScalerMachine against the plain reference model of regulator.specs, under Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import settings
from regulator.fsm import ScalerConfig
from regulator.specs import scaler_lifecycle_spec

Lifecycle = scaler_lifecycle_spec()
TestScalerLifecycle = pytest.mark.spec("R2.2", "R2.3", "R2.4")(Lifecycle.TestCase)
TestScalerLifecycle.settings = settings(
    Lifecycle.TestCase.settings, max_examples=200, stateful_step_count=50
)

DefaultLifecycle = scaler_lifecycle_spec(ScalerConfig(growth_interval=3), initial_scale=2.0**16)
TestDefaultScalerLifecycle = DefaultLifecycle.TestCase
TestDefaultScalerLifecycle.settings = settings(
    DefaultLifecycle.TestCase.settings, max_examples=50, stateful_step_count=80
)
