"""A host's own machine: one guarded transition with an action, three ways.

The same two-state machine (``go`` toggles a <-> b, guard ``ok(x)``, action ``act(x)``, the
event's ``x`` injected by name) declared once for python-statemachine and run by
``regulator.fsm.Machine``'s compiled engine (``send()`` and the event method), by
python-statemachine's own ``send()`` (the same class body, ``use_engine = False``), and
declared for ``transitions`` 0.9 (``trigger``). Interleaved rounds, median us per transition.
Run alone: ``python tests/benchmarks/bench_machine.py``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from regulator.fsm import Machine
from statemachine import State

TransitionsMachine: type[_Transitions] | None
try:
    from transitions import Machine as _Transitions

    TransitionsMachine = _Transitions
except ImportError:  # a dev dependency; the bench says so instead of failing
    TransitionsMachine = None


class Toggle(Machine):
    a = State(initial=True)
    b = State()
    go = a.to(b, cond="ok", on="act") | b.to(a, cond="ok", on="act")

    def __init__(self) -> None:
        self.total = 0
        super().__init__()

    def ok(self, x: int = 0) -> bool:
        return x >= 0

    def act(self, x: int) -> int:
        self.total += x
        return x


class ToggleOnSend(Toggle):
    use_engine = False


class TransitionsModel:
    def __init__(self) -> None:
        self.total = 0

    def ok(self, x: int = 0) -> bool:
        return x >= 0

    def act(self, x: int) -> int:
        self.total += x
        return x


def _transitions_toggle() -> Any:
    model = TransitionsModel()
    assert TransitionsMachine is not None
    TransitionsMachine(
        model=model,
        states=["a", "b"],
        initial="a",
        transitions=[
            {"trigger": "go", "source": "a", "dest": "b", "conditions": "ok", "before": "act"},
            {"trigger": "go", "source": "b", "dest": "a", "conditions": "ok", "before": "act"},
        ],
        auto_transitions=False,
    )
    return model


def _per_call(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def host_transition_cost(n: int = 20000, rounds: int = 7) -> dict[str, Any]:
    engine, slow = Toggle(), ToggleOnSend()
    assert Toggle.engine == "compiled" and ToggleOnSend.engine == "send"
    runs: dict[str, Callable[[], Any]] = {
        "Machine.send()": lambda: engine.send("go", x=1),
        "Machine event method": lambda: engine.go(x=1),
        "python-statemachine send()": lambda: slow.send("go", x=1),
    }
    if TransitionsMachine is not None:
        model = _transitions_toggle()
        runs["transitions trigger"] = lambda: model.go(x=1)
    sizes = {name: (n // 20 if "python-statemachine" in name else n) for name in runs}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            times[name].append(_per_call(fn, sizes[name]))
    med = {name: statistics.median(values) for name, values in times.items()}
    base = med["Machine.send()"]
    result: dict[str, Any] = {
        "n": n,
        "rounds": rounds,
        "us": med,
        "send_ratio": med["python-statemachine send()"] / base,
    }
    if "transitions trigger" in med:
        result["transitions_ratio"] = med["transitions trigger"] / base
    return result


def markdown(result: dict[str, Any], table: Callable[[list[str], list[list[Any]]], str]) -> str:
    rows = [
        [name, f"{us:.2f}", f"{us / result['us']['Machine.send()']:.1f}x"]
        for name, us in result["us"].items()
    ]
    lines = [
        "\n## Your own machine\n",
        "A host's `Machine` (docs/machines.md): one transition with a guard and an action, the"
        " event's argument injected by name; the same class body on python-statemachine's"
        " `send()`, and the same machine declared for `transitions` 0.9 (`trigger`)."
        f" Interleaved rounds ({result['rounds']}), median us per transition.\n",
        table(["how", "us per transition", "vs Machine.send()"], rows),
        f"\nMachine.send() is {result['send_ratio']:.0f}x faster than python-statemachine's"
        " send() (goal: 50x, floor 20x)"
        + (
            f" and {result['transitions_ratio']:.1f}x faster than transitions' trigger (goal: 3x)."
            if "transitions_ratio" in result
            else "; transitions is not installed."
        ),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    from run import _table

    print(markdown(host_transition_cost(), _table))
