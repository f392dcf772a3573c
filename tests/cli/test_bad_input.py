"""Every subcommand of the real ``regulator`` command (a subprocess) with bad input: exit
status 2 and one line naming the argument, the value and the rule; never a traceback, never a
hang (issue 17)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

REGULATOR = str(Path(sys.executable).parent / "regulator")


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REGULATOR, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def assert_refused(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    """A path whose parent is a file: nothing can be created there, even by root."""
    (tmp_path / "file").write_text("x", encoding="utf-8")
    return tmp_path / "file" / "sub"


def schedule(tmp_path: Path, text: str) -> str:
    path = tmp_path / "schedule.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.spec("R4.4")
@pytest.mark.parametrize("hours", ["nan", "inf", "1e9", "-1", "0"])
def test_simulate_refuses_hours_that_are_not_finite_positive_and_bounded(hours: str) -> None:
    shown = repr(float(hours))  # the value as the rule saw it: 1e9 is 1000000000.0
    assert_refused(run("simulate", "flaky-tls", "--hours", hours), "--hours", "finite", shown)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("hours = inf\n", ("hours: must be a finite number", "inf")),
        ("hours = nan\n", ("hours: must be a finite number", "nan")),
        (
            'hours = 24\n[[fault]]\ntype = "drop"\nat = 0\nevery = 1e-7\n',
            ("fault[0]: strikes", "10,000,000"),
        ),
        ('[[fault]]\ntype = "drop"\nat = 1\nreason = 5\n', ("fault[0].reason: must be a string",)),
        ('name = 3\n[[fault]]\ntype = "drop"\nat = 1\n', ("name: must be a string", "3")),
        (f"hours = {'9' * 400}\n", ("hours: must be a finite number",)),
        (f'[[fault]]\ntype = "drop"\nat = {"9" * 400}\n', ("fault[0].at: must be a finite",)),
    ],
)
def test_simulate_refuses_a_schedule_asking_for_the_impossible(
    tmp_path: Path, text: str, needles: tuple[str, ...]
) -> None:
    assert_refused(run("simulate", schedule(tmp_path, text), "--summary"), *needles)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("simulate", "flaky-tls", "--hours", "soon"), "--hours"),
        ((), "command"),
        (("config", "schema", "--bogus"), "--bogus"),
        (("config", "docs", "extra"), "extra"),
        (("diagram", "nope"), "nope"),
        (("stream",), "streams"),
        (("stream", "ethusdt@aggTrade", "--count", "many"), "--count"),
        (("demo", "--metrics-port", "x"), "--metrics-port"),
        (("docs",), "docs_command"),
    ],
)
def test_a_usage_error_is_one_line(args: tuple[str, ...], needle: str) -> None:
    assert_refused(run(*args), needle)


def test_diagram_refuses_an_output_it_cannot_write(blocked: Path, tmp_path: Path) -> None:
    assert_refused(run("diagram", "connection", "--output", str(blocked)), "--output")
    assert_refused(run("diagram", "connection", "--output", str(tmp_path)), "--output", "folder")


def test_docs_generate_refuses_an_out_folder_it_cannot_create(blocked: Path) -> None:
    assert_refused(run("docs", "generate", "--out", str(blocked)), "--out", str(blocked))
    assert_refused(run("docs", "generate", "--check", "--out", str(blocked)), "--out", "existing")


def test_demo_refuses_a_report_folder_url_or_port_it_cannot_use(
    blocked: Path, tmp_path: Path
) -> None:
    report = str(tmp_path / "report")
    assert_refused(run("demo", "--quick", "--report", str(blocked)), "--report")
    assert_refused(run("demo", "--quick", "--metrics-port", "70000"), "--metrics-port", "70000")
    assert_refused(run("demo", "--quick", "--url", "ftp://x", "--report", report), "--url")
    assert_refused(
        run("demo", "--quick", "--budget", "memcached://x", "--report", report),
        "--budget",
        "memcached://x",
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        result = run("demo", "--quick", "--metrics-port", port, "--report", report)
    assert_refused(result, "--metrics-port", port)


def test_stream_refuses_a_missing_or_non_pem_ca(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    assert_refused(run("stream", "ethusdt@aggTrade", "--ca", missing), "--ca", "nope.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n", encoding="utf-8")
    assert_refused(run("stream", "ethusdt@aggTrade", "--ca", str(junk)), "--ca", "PEM")


def test_stream_refuses_a_bad_url_or_port(tmp_path: Path) -> None:
    assert_refused(run("stream", "ethusdt@aggTrade", "--url", "ftp://x"), "--url", "scheme")
    assert_refused(
        run("stream", "ethusdt@aggTrade", "--metrics-port", "-5"), "--metrics-port", "-5"
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        result = run(
            "stream",
            "ethusdt@aggTrade",
            "--url",
            "wss://127.0.0.1:1",
            "--metrics-port",
            port,
            "--duration",
            "5",
        )
    assert_refused(result, "--metrics-port", port)


def test_config_refuses_a_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    assert_refused(run("config", "check", missing), "missing.toml")
    assert_refused(run("config", "show", "--config", missing), "missing.toml")


def test_stream_never_prints_a_password_or_listen_key() -> None:
    key = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
    url = f"wss://trader:PASSWORD-1@127.0.0.1:1/ws/{key}"
    result = run("stream", "ethusdt@aggTrade", "--url", url, "--max-retries", "0")
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr
    assert "PASSWORD-1" not in result.stderr + result.stdout
    assert key not in result.stderr + result.stdout
