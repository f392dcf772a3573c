"""Run regulator's property tests against your own configuration.

Run: python docs/examples/host_property_test.py   (or collect the TestCase classes with pytest)
"""

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test
from regulator.fsm import load_config
from regulator.specs import connection_lifecycle_spec, coverage_report, scaler_lifecycle_spec

config = load_config(env={})  # in a host: load_config("prod.toml")
documented = settings(max_examples=50, stateful_step_count=50, deadline=None)
connection = connection_lifecycle_spec(config.connection)  # machine_class=YourSubclass
scaler = scaler_lifecycle_spec(config.scaler, initial_scale=2.0**16)
run_state_machine_as_test(connection, settings=documented)
run_state_machine_as_test(scaler, settings=documented)
print("both machines agree with their reference models under this config")
print(coverage_report(connection))
print(coverage_report(scaler))
