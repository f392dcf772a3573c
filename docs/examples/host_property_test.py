"""Run regulator's property tests against your own configuration.

Run: python docs/examples/host_property_test.py   (or collect the TestCase classes with pytest)
"""

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from regulator.fsm import load_config
from regulator.specs import connection_lifecycle_spec, scaler_lifecycle_spec

config = load_config(env={})  # in a host: load_config("prod.toml")
fast = settings(max_examples=25, stateful_step_count=40, deadline=None)
run_state_machine_as_test(connection_lifecycle_spec(config.connection), settings=fast)
run_state_machine_as_test(
    scaler_lifecycle_spec(config.scaler, initial_scale=2.0**16), settings=fast
)
print("both machines agree with their reference models under this config")
