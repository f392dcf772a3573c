"""Configuration: defaults, validation, TOML + environment loading, round trips."""

from __future__ import annotations

import contextlib
import math
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from regulator.fsm import (
    ConfigError,
    ConnectionConfig,
    RegulatorConfig,
    ScalerConfig,
    config_from_mapping,
    config_json_schema,
    config_to_toml,
    field_docs,
    load_config,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "regulator.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults ---------------------------------------------------------------------------


@pytest.mark.spec("R4.5")
def test_no_file_no_env_gives_the_documented_defaults() -> None:
    config = load_config(env={})
    assert config == RegulatorConfig()
    c = config.connection
    assert (c.max_retries, c.initial_delay, c.max_delay, c.backoff_factor, c.jitter) == (
        None,
        1.0,
        60.0,
        2.0,
        0.1,
    )
    assert (c.ping_interval, c.pong_timeout, c.handshake_timeout) == (30.0, 10.0, 30.0)
    assert (c.alarm_failures, c.alarm_window, c.history_size) == (3, 300.0, 10)
    s = config.scaler
    assert (s.init_scale_strategy, s.growth_factor, s.backoff_factor, s.growth_interval) == (
        "by_model_size",
        1.2,
        0.5,
        2000,
    )
    assert (s.max_scale_threshold, s.reset_after_epochs, s.reset_fraction) == (100000.0, 3, 0.5)
    assert (s.overflow_halving_batches, s.auto_reset, s.min_scale) == (5, True, 1.0)
    assert (s.small_model_scale, s.medium_model_scale, s.large_model_scale) == (2**16, 2**14, 2**12)


@pytest.mark.spec("R4.1")
def test_connection_section_offers_the_reconnect_parameters(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[connection]\nmax_retries = 20\ninitial_delay = 0.5\nmax_delay = 30\nbackoff_factor = 3\n",
    )
    c = load_config(path, env={}).connection
    assert (c.max_retries, c.initial_delay, c.max_delay, c.backoff_factor) == (20, 0.5, 30.0, 3.0)


@pytest.mark.spec("R4.2")
def test_scaler_section_offers_the_scaler_parameters(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[scaler]\ninit_scale_strategy = "fixed"\ninit_scale = 1024.0\ngrowth_factor = 1.5\n'
        "growth_interval = 100\nmax_scale_threshold = 5e4\n",
    )
    s = load_config(path, env={}).scaler
    assert (s.init_scale_strategy, s.init_scale, s.growth_factor) == ("fixed", 1024.0, 1.5)
    assert (s.growth_interval, s.max_scale_threshold) == (100, 50000.0)


@pytest.mark.spec("R4.3")
def test_a_changed_file_applies_at_the_next_load(tmp_path: Path) -> None:
    path = write(tmp_path, "[connection]\nmax_delay = 30\n")
    assert load_config(path, env={}).connection.max_delay == 30.0
    path.write_text("[connection]\nmax_delay = 45\n", encoding="utf-8")
    assert load_config(path, env={}).connection.max_delay == 45.0


@pytest.mark.spec("R4.3")
def test_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[scaler]\ngrowth_interval = 7\n")
    assert load_config(env={"REGULATOR_CONFIG": str(path)}).scaler.growth_interval == 7


@pytest.mark.spec("R5.4")
def test_old_config_file_with_missing_sections_and_keys_still_loads(tmp_path: Path) -> None:
    path = write(tmp_path, "[connection]\nmax_retries = 5\n")
    config = load_config(path, env={})
    assert config.connection.max_retries == 5
    assert config.connection.ping_interval == 30.0
    assert config.scaler == ScalerConfig()


@pytest.mark.spec("R5.4")
def test_legacy_environment_names_still_work() -> None:
    env = {
        "WS_RECONNECT_MAX_RETRIES": "20",
        "WS_RECONNECT_INITIAL_DELAY": "2",
        "WS_RECONNECT_MAX_DELAY": "90",
        "WS_RECONNECT_BACKOFF_FACTOR": "1.5",
        "WS_HEARTBEAT_INTERVAL": "15",
        "GRAD_SCALER_INIT_SCALE_STRATEGY": "fixed",
        "GRAD_SCALER_GROWTH_FACTOR": "1.1",
        "GRAD_SCALER_GROWTH_INTERVAL": "500",
        "GRAD_SCALER_MAX_SCALE": "200000",
        "GRAD_SCALER_AUTO_RESET": "False",
    }
    config = load_config(env=env)
    c, s = config.connection, config.scaler
    assert (c.max_retries, c.initial_delay, c.max_delay, c.backoff_factor, c.ping_interval) == (
        20,
        2.0,
        90.0,
        1.5,
        15.0,
    )
    assert (s.init_scale_strategy, s.growth_factor, s.growth_interval) == ("fixed", 1.1, 500)
    assert (s.max_scale_threshold, s.auto_reset) == (200000.0, False)


def test_regulator_names_win_over_legacy_names_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[connection]\nmax_delay = 10\n")
    env = {"WS_RECONNECT_MAX_DELAY": "20", "REGULATOR_CONNECTION__MAX_DELAY": "30"}
    assert load_config(path, env=env).connection.max_delay == 30.0
    assert load_config(path, env={"WS_RECONNECT_MAX_DELAY": "20"}).connection.max_delay == 20.0


def test_optional_field_can_be_unset_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[connection]\nmax_retries = 3\n")
    env = {"REGULATOR_CONNECTION__MAX_RETRIES": "none"}
    assert load_config(path, env=env).connection.max_retries is None


# -- validation -------------------------------------------------------------------------

INVALID: list[tuple[str, str, Any, str]] = [
    ("connection", "initial_delay", -1.0, "connection.initial_delay: must be > 0 (got -1.0)"),
    ("connection", "initial_delay", 0, "connection.initial_delay: must be > 0 (got 0)"),
    ("connection", "ping_interval", 0.0, "connection.ping_interval: must be > 0 (got 0.0)"),
    ("connection", "pong_timeout", -5, "connection.pong_timeout: must be > 0 (got -5)"),
    ("connection", "handshake_timeout", math.inf, "connection.handshake_timeout: must be finite"),
    ("connection", "max_delay", math.nan, "connection.max_delay: must be finite (got nan)"),
    ("connection", "max_retries", 2.5, "connection.max_retries: must be an integer (got 2.5)"),
    ("connection", "max_retries", True, "connection.max_retries: must be an integer (got True)"),
    ("connection", "max_retries", -1, "connection.max_retries: must be >= 0 (got -1)"),
    ("connection", "jitter", True, "connection.jitter: must be a number (got True)"),
    ("connection", "jitter", 1.0, "connection.jitter: must be < 1 (got 1.0)"),
    ("connection", "backoff_factor", 0.5, "connection.backoff_factor: must be >= 1 (got 0.5)"),
    ("connection", "history_size", 0, "connection.history_size: must be >= 1 (got 0)"),
    ("connection", "alarm_window", "300", "connection.alarm_window: must be a number (got '300')"),
    ("scaler", "growth_factor", 0, "scaler.growth_factor: must be > 1 (got 0)"),
    ("scaler", "growth_factor", 1.0, "scaler.growth_factor: must be > 1 (got 1.0)"),
    ("scaler", "backoff_factor", 1.0, "scaler.backoff_factor: must be < 1 (got 1.0)"),
    ("scaler", "backoff_factor", 0.0, "scaler.backoff_factor: must be > 0 (got 0.0)"),
    ("scaler", "growth_interval", 10.0, "scaler.growth_interval: must be an integer (got 10.0)"),
    ("scaler", "auto_reset", 1, "scaler.auto_reset: must be true or false (got 1)"),
    ("scaler", "init_scale_strategy", "dynamic", "scaler.init_scale_strategy: must be one of"),
    ("scaler", "min_scale", 0.0, "scaler.min_scale: must be > 0 (got 0.0)"),
]


@pytest.mark.spec("R4.4")
@pytest.mark.parametrize(("section", "field", "value", "message"), INVALID)
def test_invalid_values_are_rejected_naming_path_rule_and_value(
    section: str, field: str, value: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({section: {field: value}})
    assert any(problem.startswith(message) for problem in caught.value.problems), caught.value
    assert isinstance(caught.value, ValueError)


@pytest.mark.spec("R4.4")
def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigError, match=r"connection\.initial_delay: must be > 0 \(got -1\)"):
        ConnectionConfig(initial_delay=-1)
    with pytest.raises(ConfigError, match=r"scaler\.growth_factor: must be > 1"):
        ScalerConfig(growth_factor=0.0)


@pytest.mark.spec("R4.4")
def test_max_delay_below_initial_delay_is_rejected() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"connection": {"initial_delay": 5, "max_delay": 2}})
    assert caught.value.problems == (
        "connection.max_delay: must be >= initial_delay (got max_delay=2.0, initial_delay=5.0)",
    )


@pytest.mark.spec("R4.4")
def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[connection]\ninitial_delay = 5\nmax_delay = 2\nping_interval = -1\nmax_retrys = 3\n"
        "[scaler]\ngrowth_factor = 0\ngrowth_intervall = 10\n[conection]\n",
    )
    env = {"REGULATOR_SCALER__MIN_SCALE": "abc", "REGULATOR_SCALER__GROWT": "2"}
    with pytest.raises(ConfigError) as caught:
        load_config(path, env=env)
    problems = set(caught.value.problems)
    assert problems == {
        "connection.ping_interval: must be > 0 (got -1)",
        "connection.max_retrys: unknown key (did you mean 'max_retries'?)",
        "connection.max_delay: must be >= initial_delay (got max_delay=2.0, initial_delay=5.0)",
        "scaler.growth_factor: must be > 1 (got 0)",
        "scaler.growth_intervall: unknown key (did you mean 'growth_interval'?)",
        "conection: unknown section (did you mean 'connection'?)",
        "scaler.min_scale: cannot parse 'abc' as a number (from REGULATOR_SCALER__MIN_SCALE)",
        "REGULATOR_SCALER__GROWT: unknown environment setting"
        " (did you mean 'REGULATOR_SCALER__GROWTH_FACTOR'?)",
    }
    assert str(caught.value).startswith("8 configuration problems:")


@pytest.mark.spec("R4.4")
def test_env_values_that_break_a_rule_name_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={"WS_RECONNECT_INITIAL_DELAY": "-1"})
    assert caught.value.problems == (
        "connection.initial_delay: must be > 0 (got -1.0) (from WS_RECONNECT_INITIAL_DELAY)",
    )


@pytest.mark.spec("R4.4")
def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[connection]\nmax_delay = = 3\n")
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 2"):
        load_config(path, env={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "nope.toml", env={})


def test_a_section_that_is_not_a_table_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^1 configuration problem:\n  connection: must be a table"
    ):
        load_config(write(tmp_path, "connection = 5\n"), env={})


def test_initial_scale_tiers() -> None:
    s = ScalerConfig()
    assert s.initial_scale_for(999_999) == 2**16
    assert s.initial_scale_for(1_000_000) == 2**14
    assert s.initial_scale_for(10_000_000) == 2**14
    assert s.initial_scale_for(10_000_001) == 2**12
    assert ScalerConfig(init_scale_strategy="fixed", init_scale=8.0).initial_scale_for(5) == 8.0


# -- the schema, the docs table ---------------------------------------------------------------


def test_schema_describes_every_field() -> None:
    schema = config_json_schema()
    for section, cls in (("connection", ConnectionConfig), ("scaler", ScalerConfig)):
        props = schema["properties"][section]["properties"]
        assert set(props) == {f.name for f in attrs.fields(cls)}
        assert schema["properties"][section]["additionalProperties"] is False
    assert schema["properties"]["connection"]["properties"]["initial_delay"] == {
        "type": "number",
        "exclusiveMinimum": 0,
        "default": 1.0,
        "description": "Backoff delay after the first failure. Unit: s.",
    }


def test_field_docs_list_env_names() -> None:
    rows = {(r["section"], r["name"]): r for r in field_docs()}
    assert rows[("connection", "max_retries")]["env"] == [
        "REGULATOR_CONNECTION__MAX_RETRIES",
        "WS_RECONNECT_MAX_RETRIES",
    ]
    assert rows[("scaler", "max_scale_threshold")]["env"][-1] == "GRAD_SCALER_MAX_SCALE"


# -- properties ---------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def valid_configs(draw: st.DrawFn) -> RegulatorConfig:
    initial = draw(st.floats(1e-3, 1e3))
    connection = ConnectionConfig(
        max_retries=draw(st.none() | st.integers(0, 10**6)),
        initial_delay=initial,
        max_delay=initial * draw(st.floats(1.0, 1e3)),
        backoff_factor=draw(st.floats(1.0, 10.0)),
        jitter=draw(st.floats(0.0, 0.99)),
        ping_interval=draw(st.floats(1e-3, 1e4)),
        pong_timeout=draw(st.floats(1e-3, 1e4)),
        handshake_timeout=draw(st.floats(1e-3, 1e4)),
        alarm_failures=draw(st.integers(0, 1000)),
        alarm_window=draw(st.floats(1e-3, 1e6)),
        history_size=draw(st.integers(1, 1000)),
        stable_after=draw(st.floats(0.0, 1e4)),
    )
    small = draw(st.integers(1, 10**9))
    minimum = draw(st.floats(1e-6, 1e3))
    scaler = ScalerConfig(
        init_scale_strategy=draw(st.sampled_from(["by_model_size", "fixed"])),
        init_scale=minimum * draw(st.floats(1.0, 1e20)),
        small_model_params=small,
        large_model_params=small + draw(st.integers(0, 10**9)),
        growth_factor=draw(st.floats(1.0, 100.0, exclude_min=True)),
        backoff_factor=draw(st.floats(0.0, 1.0, exclude_min=True, exclude_max=True)),
        growth_interval=draw(st.integers(1, 10**6)),
        max_scale_threshold=minimum * draw(st.floats(1.0, 1e12)),
        reset_after_epochs=draw(st.integers(1, 100)),
        reset_fraction=draw(st.floats(0.0, 1.0, exclude_min=True)),
        overflow_halving_batches=draw(st.integers(1, 100)),
        auto_reset=draw(st.booleans()),
        min_scale=minimum,
    )
    return RegulatorConfig(connection=connection, scaler=scaler)


@pytest.mark.spec("R4.3")
@given(config=valid_configs())
def test_any_valid_config_round_trips_through_toml(
    tmp_path_factory: pytest.TempPathFactory, config: RegulatorConfig
) -> None:
    text = config_to_toml(config)
    tomllib.loads(text)  # valid TOML
    path = tmp_path_factory.mktemp("rt") / "c.toml"
    path.write_text(text, encoding="utf-8")
    assert load_config(path, env={}) == config


BAD_VALUES: list[tuple[str, str, st.SearchStrategy[Any]]] = [
    ("connection", "initial_delay", st.floats(max_value=0.0) | st.just(math.nan)),
    ("connection", "jitter", st.floats(min_value=1.0) | st.floats(max_value=-1e-9)),
    ("connection", "history_size", st.integers(max_value=0) | st.floats(allow_nan=False)),
    ("connection", "max_retries", st.integers(max_value=-1) | st.booleans() | st.text()),
    ("scaler", "growth_factor", st.floats(max_value=1.0) | st.booleans()),
    ("scaler", "backoff_factor", st.floats(min_value=1.0) | st.floats(max_value=0.0)),
    ("scaler", "growth_interval", st.integers(max_value=0) | st.floats(allow_nan=False)),
    ("scaler", "auto_reset", st.integers() | st.text()),
    (
        "scaler",
        "init_scale_strategy",
        st.text().filter(lambda s: s not in ("fixed", "by_model_size")),
    ),
]


@pytest.mark.spec("R4.4")
@given(data=st.data(), index=st.integers(0, len(BAD_VALUES) - 1))
def test_any_generated_invalid_value_is_rejected_naming_its_path(
    data: st.DataObject, index: int
) -> None:
    section, field, strategy = BAD_VALUES[index]
    value = data.draw(strategy)
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({section: {field: value}})
    assert any(p.startswith(f"{section}.{field}: ") for p in caught.value.problems)


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
section_keys = st.sampled_from(["connection", "scaler", "other", ""]) | st.text(max_size=6)
field_keys = st.sampled_from(
    [f.name for f in attrs.fields(ConnectionConfig)] + [f.name for f in attrs.fields(ScalerConfig)]
) | st.text(max_size=8)


@given(
    data=st.dictionaries(
        section_keys, toml_values | st.dictionaries(field_keys, toml_values, max_size=5), max_size=3
    ),
    env=st.dictionaries(
        st.sampled_from(
            [
                "REGULATOR_CONNECTION__MAX_DELAY",
                "WS_RECONNECT_MAX_RETRIES",
                "REGULATOR_SCALER__AUTO_RESET",
                "REGULATOR_X__Y",
                "GRAD_SCALER_GROWTH_INTERVAL",
            ]
        ),
        st.text(max_size=6),
        max_size=3,
    ),
)
def test_no_input_makes_the_loader_raise_anything_but_config_error(
    data: dict[str, Any], env: dict[str, str]
) -> None:
    with contextlib.suppress(ConfigError):
        config_from_mapping(data)
    with contextlib.suppress(ConfigError):
        load_config(env=env)


@given(text=st.text(max_size=60))
def test_arbitrary_file_contents_raise_only_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    path = tmp_path_factory.mktemp("junk") / "c.toml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(ConfigError):
        load_config(path, env={})


@pytest.mark.spec("R4.4")
def test_initial_scales_below_the_floor_are_rejected() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping({"scaler": {"min_scale": 10.0, "init_scale": 5.0}})
    assert caught.value.problems == (
        "scaler.init_scale: must be >= min_scale (got init_scale=5.0, min_scale=10.0)",
    )


@pytest.mark.spec("R4.4")
@pytest.mark.parametrize(
    ("key", "value"),
    [("init_scale", 1e39), ("min_scale", 1e-50), ("max_scale_threshold", 4e38)],
)
def test_scales_outside_float32_are_rejected(key: str, value: float) -> None:
    # torch keeps the scale in float32: 1e39 becomes inf and 1e-50 becomes 0 (NaN weights)
    setting: dict[str, Any] = {key: value}
    with pytest.raises(ConfigError, match=rf"scaler\.{key}: must be within float32's range"):
        ScalerConfig(**setting)
    with pytest.raises(ConfigError, match=rf"scaler\.{key}: must be within float32's range"):
        load_config(env={f"REGULATOR_SCALER__{key.upper()}": str(value)})
