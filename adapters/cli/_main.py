"""The ``regulator`` command line: one more adapter over the pure machines.

Exit status: 0 on success, 2 when the input (config, schedule, arguments, a path or port that
cannot be used) is rejected or the command needs an extra that is not installed (one line:
``pip install "regulator[<extra>]"``); every problem is printed on stderr, one line each, naming the
argument, the value and the rule. Never a traceback: argparse's own errors are one line too.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from ...fsm import (
    BUILTIN_SCHEDULES,
    ConfigError,
    config_json_schema,
    config_reference_markdown,
    config_to_toml,
    load_config,
    load_schedule,
    simulate,
)
from ...fsm._logfmt import escape_controls, format_kv
from ...fsm._simulator import check_hours

__all__ = ["main"]

#: Most characters of one error line on the console.
MAX_ECHO = 500


def _config_check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"# {one_line(args.file)}: OK")
    print(config_to_toml(config), end="")
    return 0


def _config_show(args: argparse.Namespace) -> int:
    print(config_to_toml(load_config(args.config)), end="")
    return 0


def _config_schema(args: argparse.Namespace) -> int:
    print(json.dumps(config_json_schema(), indent=2))
    return 0


def _config_docs(args: argparse.Namespace) -> int:
    print(config_reference_markdown(), end="")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {one_line(message)}", file=sys.stderr)
        raise SystemExit(2)


def one_line(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` as the console gets it: on one line, no raw control character, at most
    ``limit`` characters (a 200 KB environment value is named, not echoed whole)."""
    text = escape_controls(text)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text) - limit} more characters)"


def _problem(argument: str, value: object, rule: str) -> ConfigError:
    return ConfigError([f"{argument}: {rule} (got {value!r})"])


def writable_file(argument: str, value: str) -> Path:
    """``value`` as a file we may write (its folder exists and is writable), else ConfigError."""
    path = Path(value)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise _problem(argument, value, "must be a file, not a folder")
    if not folder.is_dir():
        raise _problem(argument, value, "must be in an existing folder")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise _problem(argument, value, "must be writable")
    return path


def writable_folder(argument: str, value: str) -> Path:
    """``value`` as a folder we may write into (created if missing), else ConfigError."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise _problem(argument, value, "must be a folder, not a file")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _problem(
            argument, value, f"must be a folder we can create ({exc.strerror})"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise _problem(argument, value, "must be a writable folder")
    return path


def check_port(argument: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= 65535:
        raise _problem(argument, value, "must be a TCP port, 0 to 65535 (0: any free port)")


def _check_base_url(url: str) -> None:
    from ..websocket._inputs import check_url

    try:
        check_url(f"{url.rstrip('/')}/stream")
    except ValueError as exc:
        raise ConfigError([f"--url: {str(exc).removeprefix('url: ')}"]) from None


def _simulate(args: argparse.Namespace) -> int:
    if args.hours is not None:
        check_hours(args.hours, "--hours")
    config = load_config(args.config)
    schedule = load_schedule(args.schedule, seed=args.seed)
    hours = args.hours if args.hours is not None else schedule.hours
    print(
        format_kv(
            event="simulate",
            schedule=schedule.name,
            hours=hours,
            seed=args.seed,
            description=schedule.description,
        )
    )

    def emit(line: str) -> None:
        if not args.summary or (" event=state " not in line and " event=backoff " not in line):
            print(line)

    result = simulate(schedule, config.connection, hours=hours, seed=args.seed, emit=emit)
    totals = dict(result.totals)
    by_kind = totals.pop("failures_by_kind")
    print(format_kv(event="totals", **totals))
    print(format_kv(event="failures_by_kind", **by_kind) if by_kind else "event=failures_by_kind")
    return 0


def _checkout_docs() -> Path | None:
    """The ``docs/`` folder of the repository checkout this code runs from (a clone, or its
    editable install), or None: an installed wheel has no docs folder of its own."""
    root = Path(__file__).resolve().parents[2]
    if (root / "mkdocs.yml").is_file() and (root / "docs").is_dir():
        return root / "docs"
    return None


def _docs(args: argparse.Namespace) -> int:
    from ._docgen import write_pages

    if args.out is None:
        # never the current folder by default: from an installed wheel that would write a
        # docs/ tree wherever the command happens to run
        found = _checkout_docs()
        if found is None:
            raise ConfigError(
                [
                    "--out: required outside a regulator checkout: name the folder to write"
                    " the generated pages into (got nothing)"
                ]
            )
        args.out = str(found)
    if args.check and not Path(args.out).is_dir():
        raise _problem("--out", args.out, "must be an existing docs folder")
    out = Path(args.out) if args.check else writable_folder("--out", args.out)
    try:
        stale = write_pages(out, check=args.check)
    except OSError as exc:
        raise _problem("--out", args.out, f"must be writable ({exc.strerror})") from None
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path}")
    if args.check and stale:
        print("regenerate with: regulator docs generate", file=sys.stderr)
        return 1
    return 0


def _diagram(args: argparse.Namespace) -> int:
    from ._diagram import DiagramError, render_diagram

    path = writable_file("--output", args.output) if args.output else None
    if args.machine not in ("connection", "scaler") and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # pkg.module:Class from where the command runs
    try:
        output = render_diagram(
            args.machine, args.format, events=args.events or (), state=args.state
        )
    except DiagramError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    if path is not None:
        try:
            if isinstance(output, bytes):
                path.write_bytes(output)
            else:
                path.write_text(output, encoding="utf-8")
        except OSError as exc:
            raise _problem("--output", args.output, f"must be writable ({exc.strerror})") from None
        print(f"wrote {one_line(str(path))}")
    elif isinstance(output, bytes):
        sys.stdout.buffer.write(output)
    else:
        print(output, end="" if output.endswith("\n") else "\n")
    return 0


def _demo(args: argparse.Namespace) -> int:
    check_port("--metrics-port", args.metrics_port)
    if args.budget is not None:
        from ...fsm._rules import check_budget_url

        problem = check_budget_url(args.budget)
        if problem is not None:
            raise ConfigError([f"--budget: {problem}"])
    if args.url is not None:
        _check_base_url(args.url)
    from ..demo._run import run_demo
    from ..demo._storage import StorageError, check_storage

    try:
        # every check before anything is made: a refused run leaves no report folder behind
        if args.storage is not None:
            check_storage(args.storage)
        writable_folder("--report", args.report)  # before minutes of work, not after
        return run_demo(
            quick=args.quick,
            metrics_port=args.metrics_port,
            url=args.url,
            storage=args.storage,
            report=args.report,
            budget=args.budget,
        )
    except StorageError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 2


def _stream(args: argparse.Namespace) -> int:
    check_port("--metrics-port", args.metrics_port)
    log_file = writable_file("--log-file", args.log_file) if args.log_file else None
    from ._stream import run_stream

    return run_stream(
        args.streams,
        url=args.url,
        config_file=args.config,
        ca=args.ca,
        count=args.count,
        duration=args.duration,
        metrics_port=args.metrics_port,
        max_retries=args.max_retries,
        verbose=args.verbose,
        log_file=log_file,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="regulator",
        description="State machines for a resilient market-data socket and a guarded AMP scaler.",
    )
    parser.add_argument("--version", action="version", version=f"regulator {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="check, show or describe the configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate FILE; print the effective config")
    check.add_argument("file")
    check.set_defaults(func=_config_check)
    show = config_sub.add_parser("show", help="print the effective config (defaults+file+env)")
    show.add_argument("--config", default=None, help="a TOML config file")
    show.set_defaults(func=_config_show)
    schema = config_sub.add_parser("schema", help="print the JSON Schema of the config file")
    schema.set_defaults(func=_config_schema)
    docs = config_sub.add_parser("docs", help="print the configuration reference (Markdown)")
    docs.set_defaults(func=_config_docs)

    sim = sub.add_parser(
        "simulate",
        help="replay a fault schedule against the connection machine on a virtual clock",
    )
    sim.add_argument(
        "schedule", help=f"a built-in ({', '.join(BUILTIN_SCHEDULES)}) or a TOML schedule file"
    )
    sim.add_argument("--config", default=None, help="a TOML config file")
    sim.add_argument("--hours", type=float, default=None, help="virtual hours to simulate")
    sim.add_argument("--seed", type=int, default=0, help="seed of jitter and random schedules")
    sim.add_argument(
        "--summary", action="store_true", help="print alarms, patterns and totals only"
    )
    sim.set_defaults(func=_simulate)

    diagram = sub.add_parser("diagram", help="render a machine's state diagram")
    diagram.add_argument(
        "machine",
        help="connection, scaler, or a dotted path to a machine class: pkg.module:Class",
    )
    diagram.add_argument(
        "--format", default="mermaid", choices=["mermaid", "dot", "svg", "png", "md"]
    )
    diagram.add_argument("--output", default=None, help="write to FILE (default: stdout)")
    diagram.add_argument(
        "--events",
        nargs="+",
        default=None,
        help="replay these events through the machine's real guards; highlight the result",
    )
    diagram.add_argument("--state", default=None, help="highlight this state")
    diagram.set_defaults(func=_diagram)

    docs_cmd = sub.add_parser("docs", help="generated documentation pages")
    docs_sub = docs_cmd.add_subparsers(dest="docs_command", required=True)
    generate = docs_sub.add_parser("generate", help="write the pages generated from the code")
    generate.add_argument(
        "--out",
        default=None,
        help="the docs folder (default: the docs/ of the checkout regulator runs from;"
        " required for an installed wheel)",
    )
    generate.add_argument("--check", action="store_true", help="only report stale pages")
    generate.set_defaults(func=_docs)

    stream = sub.add_parser(
        "stream",
        help="print a Binance market stream's events (stdout) and lifecycle (stderr)",
    )
    stream.add_argument("streams", nargs="+", help="stream names, e.g. ethusdt@kline_1m")
    stream.add_argument(
        "--url", default=None, help="the exchange's base URL (default: the real exchange)"
    )
    stream.add_argument("--config", default=None, help="a TOML config file")
    stream.add_argument("--ca", default=None, help="a PEM file of CAs to trust instead")
    stream.add_argument("--count", type=int, default=None, help="stop after N events")
    stream.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    stream.add_argument(
        "--max-retries", type=int, default=None, help="give up after N retries (exit 1)"
    )
    stream.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port"
    )
    stream.add_argument(
        "-v", "--verbose", action="store_true", help="print each failure's stack on stderr too"
    )
    stream.add_argument(
        "--log-file", default=None, help="also write the log, with every stack, to FILE"
    )
    stream.set_defaults(func=_stream)

    demo = sub.add_parser("demo", help="run the main job end to end")
    demo.add_argument("--quick", action="store_true", help="a short run (CI, under a minute)")
    demo.add_argument(
        "--url", default=None, help="stream this exchange instead of the simulator (no faults)"
    )
    demo.add_argument(
        "--storage", default=None, help="an Optuna storage URL (default: SQLite in the report)"
    )
    demo.add_argument(
        "--report", default="regulator-report", help="the report folder (default: %(default)s)"
    )
    demo.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port"
    )
    demo.add_argument(
        "--budget",
        default=None,
        help="share the connection-attempt budget: file:///path or redis://host:6379/0",
    )
    demo.set_defaults(func=_demo)
    return parser


def _version() -> str:
    try:
        return metadata.version("regulator")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


#: The extra that installs each optional module a command imports (pyproject.toml).
EXTRA_OF = {
    "anyio": "ws",
    "httpx": "ws",
    "httpcore": "ws",
    "httpx_ws": "ws",
    "wsproto": "ws",
    "sniffio": "ws",
    "certifi": "ws",
    "torch": "torch",
    "optuna": "optuna",
    "lightning": "lightning",
    "pydot": "diagrams",
    "prometheus_client": "metrics",
    "hypothesis": "specs",
    "rich": "demo",
    "matplotlib": "demo",
    "trustme": "demo",
}


def missing_extra(command: str, module: str) -> str:
    """The one line that says what to install when ``command`` needs ``module``."""
    root = module.split(".")[0]
    extra = EXTRA_OF.get(root)
    if command == "demo" and extra != "metrics":
        extra = "demo"  # the demo's extra brings everything it runs but the exporter
    elif extra is None:
        extra = {"stream": "ws"}.get(command, "all")
    return (
        f"error: regulator {command} needs {root!r}, which is not installed:"
        f' pip install "regulator[{extra}]"'
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed on one line)
        return int(exc.code or 0)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {one_line(problem)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        # an optional dependency of this command (an extra) is missing: one line, no traceback
        if not exc.name or exc.name.split(".")[0] == "regulator":
            raise
        print(missing_extra(args.command, exc.name), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `regulator simulate ... | head`
        return 0
    except MemoryError:
        print("error: out of memory (is an argument or a schedule too large?)", file=sys.stderr)
        return 2
    return code
