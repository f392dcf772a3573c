"""The command line's outputs hold whatever a server or a user gave it (issue 27 item 8):
strict JSON on stdout, one console line per failed attempt (the stack only with -v or in
--log-file), schedule files refused like config files (exit 2, one line naming the field),
echoed values clipped and no raw control character on the terminal."""

from __future__ import annotations

import io
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _faultbed import Certs
from hypothesis import given
from hypothesis import strategies as st
from regulator.adapters.cli._stream import json_line, run_stream
from regulator.specs.exchange import Exchange, MarketConfig

REGULATOR = [sys.executable, "-m", "regulator.adapters.cli"]
CONTROL = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)] if chr(c) != "\n"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*REGULATOR, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def _no_raw_controls(text: str) -> None:
    bad = [c for c in text if c in CONTROL or c in "\u2028\u2029"]
    assert not bad, bad[:5]


def _strict(line: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


# -- strict JSON on stdout -----------------------------------------------------------------------
@given(
    event=st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_json_line_is_strict_json_for_any_event(event: Any) -> None:
    line = json_line(event)
    assert "\n" not in line and "\u2028" not in line
    _no_raw_controls(line)
    back = _strict(line)
    if isinstance(event, float) and not math.isfinite(event):
        assert back in ("NaN", "Infinity", "-Infinity")


@pytest.fixture
def exchange(certs: Certs) -> Iterator[Exchange]:
    market = MarketConfig(trades_per_second=5.0, speed=1.0)
    with Exchange(ssl_context=certs.server_context(), market=market) as running:
        yield running


def test_a_servers_nan_reaches_stdout_as_strict_json(exchange: Exchange, ca_file: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(
            run_stream(
                ["ethusdt@trade"],
                url=exchange.url,
                config_file=None,
                ca=ca_file,
                count=None,
                duration=4.0,
                metrics_port=None,
                max_retries=None,
                out=out,
                err=err,
            )
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    while "event=subscribed" not in err.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    for price in ("NaN", "Infinity", "-Infinity"):
        exchange.send_raw(
            f'{{"stream":"ethusdt@trade","data":{{"e":"trade","s":"ETHUSDT","p":{price},'
            '"q":"1\\u001b]0;x\\u0007","x":[1e999]}}'
        )
    worker.join(timeout=20)
    assert result == [0], err.getvalue()
    lines = out.getvalue().splitlines()
    events = [_strict(line) for line in lines]
    prices = [e["data"]["p"] for e in events if "x" in e["data"]]
    assert prices == ["NaN", "Infinity", "-Infinity"]
    _no_raw_controls(out.getvalue().replace("\n", ""))


# -- one console line per failed attempt ---------------------------------------------------------
def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_one_console_line_per_failed_attempt_the_stack_in_the_log_file(
    tmp_path: Path,
) -> None:
    url = f"wss://127.0.0.1:{_refused_port()}"
    log = tmp_path / "stream.log"
    quiet = run(
        "stream", "ethusdt@trade", "--url", url, "--max-retries", "2", "--log-file", str(log)
    )
    assert quiet.returncode == 1
    failures = [line for line in quiet.stderr.splitlines() if "event=failure" in line]
    assert len(failures) == 3  # the first attempt and two retries
    assert "Traceback" not in quiet.stderr
    assert len(quiet.stderr.splitlines()) < 20
    logged = log.read_text(encoding="utf-8")
    assert logged.count("event=failure") == 3
    assert logged.count("Traceback (most recent call last)") >= 3  # R3.1: the full stack
    verbose = run("stream", "ethusdt@trade", "--url", url, "--max-retries", "0", "-v")
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    _no_raw_controls(verbose.stderr.replace("\n", ""))


def test_log_file_is_checked_before_connecting(tmp_path: Path) -> None:
    done = run("stream", "ethusdt@trade", "--log-file", str(tmp_path / "missing" / "x.log"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: --log-file: must be in an existing folder")


# -- schedule files refused like config files ----------------------------------------------------
SCHEDULES = {
    "kind = [1]": ('[[fault]]\ntype = "drop"\nat = 1\nkind = [1]\n', "fault[0].kind"),
    "type = {a = 1}": ("[[fault]]\ntype = {a = 1}\nat = 1\n", "fault[0].type"),
    "type a table of lists": ("[[fault]]\ntype = [[1], {b = 2}]\nat = 1\n", "fault[0].type"),
    "at = a string": ('[[fault]]\ntype = "drop"\nat = "1"\n', "fault[0].at"),
    "at = 10**400": ('[[fault]]\ntype = "drop"\nat = 1' + "0" * 400 + "\n", "fault[0].at"),
    "reason = [[...]]": ('[[fault]]\ntype = "drop"\nat = 1\nreason = [[1]]\n', "fault[0].reason"),
    "fault = 3": ("fault = 3\n", "fault: must be an array"),
    "nested 50,000 deep": ("x = " + "[" * 50_000 + "]" * 50_000 + "\n", "nested too deeply"),
    "a 100 KB type": (
        '[[fault]]\ntype = "' + "\\u001b" * 10 + "y" * 100_000 + '"\nat = 1\n',
        "type",
    ),
    "name = a table": ('name = {x = 1}\n[[fault]]\ntype = "drop"\nat = 1\n', "name:"),
}


@pytest.mark.parametrize(("text", "field"), SCHEDULES.values(), ids=SCHEDULES.keys())
def test_a_bad_schedule_file_is_one_line_naming_the_field(
    tmp_path: Path, text: str, field: str
) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(text, encoding="utf-8")
    done = run("simulate", str(path))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines)
    assert field in done.stderr
    assert len(done.stderr) < 2_000
    _no_raw_controls(done.stderr.replace("\n", ""))


# -- echoed values clipped, controls escaped -----------------------------------------------------
def test_a_huge_environment_value_is_clipped() -> None:
    done = run("config", "show", env={"REGULATOR_CONNECTION__MAX_RETRIES": "x" * 100_000})
    assert done.returncode == 2
    assert "max_retries" in done.stderr
    assert len(done.stderr) < 2_000
    assert "more characters" in done.stderr


def test_control_characters_in_arguments_reach_no_terminal() -> None:
    hostile = "x\x1b]0;pwned\x07\x1b[2J\r\u2028y"
    for args in (
        ["simulate", hostile],
        ["stream", hostile],
        ["stream", "ethusdt@trade", "--url", hostile],
        ["diagram", "connection", "--state", hostile],
        ["config", "check", hostile],
    ):
        done = run(*args)
        assert done.returncode == 2, (args, done.stderr)
        _no_raw_controls(done.stderr.replace("\n", ""))
