"""Built without ``config=``, the adapters take ``load_config()``: the file named by
REGULATOR_CONFIG and the environment, legacy names included (R4.3, R5.4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from regulator.adapters.binance import BinanceStream
from regulator.adapters.websocket import ResilientWebSocket
from regulator.fsm import ConfigError, ConnectionConfig


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith(("REGULATOR_", "GRAD_SCALER_", "WS_RECONNECT_", "WS_HEARTBEAT_")):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.spec("R4.3")
@pytest.mark.spec("R5.4")
def test_the_scaler_reads_the_legacy_environment(clean_env: pytest.MonkeyPatch) -> None:
    torch_wing = pytest.importorskip("regulator.adapters.torch")
    clean_env.setenv("GRAD_SCALER_MAX_SCALE", "5000")
    clean_env.setenv("GRAD_SCALER_GROWTH_INTERVAL", "7")
    scaler = torch_wing.GuardedGradScaler("cpu")
    assert scaler.config.max_scale_threshold == 5000.0
    assert scaler.get_growth_interval() == 7
    clean_env.setenv("REGULATOR_SCALER__MAX_SCALE_THRESHOLD", "6000")  # the explicit name wins
    assert torch_wing.GuardedGradScaler("cpu").config.max_scale_threshold == 6000.0


@pytest.mark.spec("R4.3")
def test_the_file_named_by_regulator_config_applies_at_the_next_start(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "regulator.toml"
    path.write_text(
        "[connection]\nmax_retries = 4\n[binance]\nmax_streams = 500\n[scaler]\nmin_scale = 2.0\n",
        encoding="utf-8",
    )
    clean_env.setenv("REGULATOR_CONFIG", str(path))
    assert ResilientWebSocket("wss://example.invalid/ws").config.max_retries == 4
    stream = BinanceStream(["ethusdt@kline_1m"])
    assert (stream.config.max_retries, stream.rules.max_streams) == (4, 500)
    torch_wing = pytest.importorskip("regulator.adapters.torch")
    assert torch_wing.GuardedGradScaler("cpu").config.min_scale == 2.0
    path.write_text("[connection]\nmax_retries = 9\n", encoding="utf-8")  # changed: next start
    assert ResilientWebSocket("wss://example.invalid/ws").config.max_retries == 9


@pytest.mark.spec("R5.4")
def test_sockets_read_the_legacy_names_and_an_explicit_config_still_wins(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("WS_RECONNECT_MAX_RETRIES", "3")
    clean_env.setenv("WS_HEARTBEAT_INTERVAL", "12.5")
    ws = ResilientWebSocket("wss://example.invalid/ws")
    assert (ws.config.max_retries, ws.config.ping_interval) == (3, 12.5)
    assert BinanceStream(["ethusdt@aggTrade"]).config.max_retries == 3
    explicit = ResilientWebSocket("wss://example.invalid/ws", config=ConnectionConfig())
    assert explicit.config.max_retries is None


def test_a_bad_environment_is_a_clear_error_at_construction(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("WS_RECONNECT_MAX_RETRIES", "many")
    with pytest.raises(ConfigError, match=r"connection\.max_retries: cannot parse 'many'"):
        ResilientWebSocket("wss://example.invalid/ws")
