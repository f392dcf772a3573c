"""Worker processes judged by what they wrote, not by how they died.

torch's process-group teardown can abort a gloo worker ("terminate called without an active
exception", SIGABRT) after the worker has finished and written its results. The tests check
results, so a worker that published them and then died in teardown passes, and a worker that
died before publishing fails, with its exit code or signal in the message. Nothing is retried.

torch's teardown can also hang instead of aborting (seen here: both DDP ranks published, then
waited on a futex in ``destroy_process_group`` for minutes): once every worker has published,
the stragglers get ``GRACE`` seconds to exit and are then killed, judged like the aborted ones.

A worker publishes with :func:`publish` (an atomic write: the file is there whole or not at
all); the parent runs workers with :func:`spawn_ranks` (a Python function per rank, spawned)
or :func:`run_scripts` (command lines), and gets each worker's published JSON back.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["GRACE", "WorkerFailed", "publish", "run_scripts", "spawn_ranks"]

#: Seconds a worker may take to exit after every worker has published its results.
GRACE = 20.0


class WorkerFailed(AssertionError):
    """A worker exited, or hung, without publishing its results."""


def publish(out: str | Path, name: str, data: Any) -> None:
    """Write ``data`` as ``out/name.json`` atomically (write aside, then rename)."""
    target = Path(out, f"{name}.json")
    aside = target.with_suffix(f".{os.getpid()}.tmp")
    aside.write_text(json.dumps(data), encoding="utf-8")
    os.replace(aside, target)


def _describe(code: int | None) -> str:
    if code is None:
        return "still running at the deadline (killed)"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _wait(out: Path, names: Sequence[str], alive: Callable[[], list[bool]], timeout: float) -> None:
    """Until every worker exited, the deadline passed, or all published and GRACE passed."""
    deadline = time.monotonic() + timeout
    while any(alive()) and time.monotonic() < deadline:
        if all((out / f"{name}.json").exists() for name in names):
            deadline = min(deadline, time.monotonic() + GRACE)
        time.sleep(0.05)


def _collect(out: Path, names: Sequence[str], codes: Sequence[int | None]) -> list[Any]:
    results, missing = [], []
    for name, code in zip(names, codes, strict=True):
        path = out / f"{name}.json"
        if path.exists():
            results.append(json.loads(path.read_text(encoding="utf-8")))
            if code != 0:
                # results written, then died (torch's teardown): what the test checks is there
                print(f"note: worker {name} published its results, then {_describe(code)}")
        else:
            missing.append(f"{name}: {_describe(code)}")
    if missing:
        raise WorkerFailed("workers died before publishing results: " + "; ".join(missing))
    return results


def spawn_ranks(
    target: Callable[..., None],
    nprocs: int,
    out: str | Path,
    args: Sequence[Any] = (),
    *,
    timeout: float = 240.0,
) -> list[Any]:
    """Run ``target(rank, nprocs, out, *args)`` in ``nprocs`` spawned processes.

    Each rank must ``publish(out, f"rank{rank}", ...)``; returns the published data by rank.
    """
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=target, args=(rank, nprocs, str(out), *args)) for rank in range(nprocs)
    ]
    for proc in procs:
        proc.start()
    names = [f"rank{rank}" for rank in range(nprocs)]
    _wait(Path(out), names, lambda: [proc.is_alive() for proc in procs], timeout)
    codes: list[int | None] = []
    for proc in procs:
        if proc.is_alive():
            proc.kill()
            proc.join()
            codes.append(None)
        else:
            codes.append(proc.exitcode)
    return _collect(Path(out), names, codes)


def run_scripts(
    commands: Sequence[Sequence[str]],
    out: str | Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 240.0,
) -> list[Any]:
    """Run each command line (given ``WORKER_NAME=workerN`` in its environment) in parallel.

    Each must ``publish(out, os.environ["WORKER_NAME"], ...)``; returns the data in order.
    """
    names = [f"worker{i}" for i in range(len(commands))]
    procs = [
        subprocess.Popen(list(cmd), env={**(env or os.environ), "WORKER_NAME": name})
        for cmd, name in zip(commands, names, strict=True)
    ]
    _wait(Path(out), names, lambda: [proc.poll() is None for proc in procs], timeout)
    codes: list[int | None] = []
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            codes.append(None)
        else:
            codes.append(proc.returncode)
    return _collect(Path(out), names, codes)
