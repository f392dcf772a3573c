"""What a person sees while ``regulator demo`` runs: a live rich view on a terminal, plain
``key=value`` lines anywhere else (CI, a pipe, a file)."""

from __future__ import annotations

import sys
from collections import deque
from typing import Any, TextIO

from ...fsm import format_kv
from ...fsm._logfmt import escape_controls

__all__ = ["PlainView", "View", "make_view"]


class View:
    """The events the demo reports; the plain view prints them, the live view draws them."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.connection_state = "idle"
        self.scaler_state = "-"
        self.messages = 0
        self.gaps = 0
        self.missing = 0
        self.backfilled = 0  # events refilled from REST
        self.alarms = (0, 0)
        self.rotations = 0
        self.failures = 0
        self.phase = ""
        self.progress = (0.0, 1.0, "")
        self.recent: deque[str] = deque(maxlen=12)
        self.trials: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> View:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def line(self, **fields: Any) -> None:
        text = format_kv(**fields)
        self.recent.append(text)
        self.emit(text)

    def emit(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def refresh(self) -> None:
        return None


class PlainView(View):
    pass


def _inert(value: object) -> Any:
    """A rich ``Text`` of ``value``: never parsed as markup (a server's reason ``[/]`` or
    ``[link=...]`` is shown as written) and with no raw control character."""
    from rich.text import Text

    return Text(escape_controls(str(value)))


class LiveView(View):
    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.live = Live(self._render(), console=self.console, refresh_per_second=8)

    def __enter__(self) -> View:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.update(self._render())
        self.live.__exit__(None, None, None)

    def emit(self, text: str) -> None:
        self.refresh()

    def refresh(self) -> None:
        self.live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        done, total, label = self.progress
        head = Table.grid(padding=(0, 2))
        head.add_row(
            Text(escape_controls(self.phase), style="bold"),
            ProgressBar(total=total, completed=done, width=40),
            Text(escape_controls(f"{done:5.1f}/{total:.0f} s  {label}")),
        )
        states = Table.grid(padding=(0, 3))
        states.add_row(
            Text.assemble(
                ("connection ", "dim"), (escape_controls(self.connection_state), "bold cyan")
            ),
            Text.assemble(("scaler ", "dim"), (escape_controls(self.scaler_state), "bold magenta")),
            Text(
                f"messages {self.messages:,}  gaps {self.gaps} ({self.missing} missing)"
                f"  backfilled {self.backfilled:,}"
                f"  alarms {self.alarms[0]} raised / {self.alarms[1]} resolved"
                f"  rotations {self.rotations}  failures {self.failures}"
            ),
        )
        parts: list[Any] = [head, states]
        if self.trials:
            table = Table(
                "trial",
                "scenario",
                "lr",
                "width",
                "a",
                "scaler",
                "scale",
                "epoch",
                "value",
                "result",
            )
            for _number, t in sorted(self.trials.items()):
                table.add_row(
                    *(
                        _inert(t.get(k, ""))
                        for k in (
                            "number",
                            "scenario",
                            "lr",
                            "width",
                            "a",
                            "state",
                            "scale",
                            "epoch",
                            "value",
                            "result",
                        )
                    )
                )
            parts.append(table)
        # Text, not a str: a str is rich markup, and these lines quote what servers wrote
        recent = Text("\n".join(escape_controls(line) for line in self.recent))
        parts.append(Panel(recent, title="transitions, faults, alarms"))
        return Group(*parts)


def make_view(out: TextIO | None = None) -> View:
    stream = out or sys.stdout
    if stream.isatty():
        try:
            return LiveView(stream)
        except ImportError:
            pass
    return PlainView(stream)
