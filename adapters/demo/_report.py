"""The demo's report: one ``index.html`` with matplotlib images embedded (base64 PNG), readable
offline, in any browser, without the demo's Python environment."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from ...fsm import CONNECTION_STATES
from ...fsm._scaler import SCALER_STATES
from ._market import MarketRecord
from ._training import TrainingRecord

__all__ = ["write_report"]

STATE_COLOURS = {
    "idle": "#bbbbbb",
    "connecting": "#f2c14e",
    "handshaking": "#f7a072",
    "live": "#4caf50",
    "backing_off": "#e07a5f",
    "alarmed": "#c0392b",
    "closed": "#555555",
    "warmup": "#8ecae6",
    "stable": "#4caf50",
    "over_threshold": "#f2c14e",
    "reset": "#9b5de5",
    "overflow_halved": "#c0392b",
}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _diagram(machine_cls: Any, final: str, title: str) -> str:
    """The machine's states and transitions as declared, drawn on a circle; ``final`` filled."""
    import matplotlib.pyplot as plt

    states = [s.id for s in machine_cls.states]
    n = len(states)
    pos = {
        s: (
            math.cos(2 * math.pi * i / n + math.pi / 2),
            math.sin(2 * math.pi * i / n + math.pi / 2),
        )
        for i, s in enumerate(states)
    }
    edges: dict[tuple[str, str], set[str]] = {}
    for state in machine_cls.states:
        for t in state.transitions:
            edges.setdefault((state.id, t.target.id), set()).add(t.event)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    for (a, b), events in edges.items():
        (x1, y1), (x2, y2) = pos[a], pos[b]
        if a == b:
            ax.annotate(
                "",
                xy=(x1 + 0.05, y1 + 0.12),
                xytext=(x1 - 0.05, y1 + 0.12),
                arrowprops={
                    "arrowstyle": "->",
                    "connectionstyle": "arc3,rad=-1.5",
                    "color": "#888",
                },
            )
            continue
        ax.annotate(
            "",
            xy=(x2, y2),
            xytext=(x1, y1),
            arrowprops={
                "arrowstyle": "-|>",
                "shrinkA": 22,
                "shrinkB": 22,
                "connectionstyle": "arc3,rad=0.12",
                "color": "#888",
            },
        )
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        ax.text(
            mx, my, ", ".join(sorted(events)), fontsize=6.5, color="#444", ha="center", va="center"
        )
    for s, (x, y) in pos.items():
        current = s == final
        ax.text(
            x,
            y,
            s,
            ha="center",
            va="center",
            fontsize=9,
            fontweight="bold" if current else "normal",
            bbox={
                "boxstyle": "round,pad=0.4",
                "fc": STATE_COLOURS.get(s, "#ddd") if current else "white",
                "ec": "#222" if current else "#999",
                "lw": 2 if current else 1,
            },
        )
    ax.set_xlim(-1.4, 1.4)
    ax.set_ylim(-1.3, 1.3)
    ax.axis("off")
    ax.set_title(f"{title} (final state: {final})")
    return _png(fig)


def _timeline(market: MarketRecord) -> str:
    import matplotlib.pyplot as plt

    order = list(CONNECTION_STATES)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    legs: dict[str, list[tuple[float, str]]] = {}
    for t, leg, source, target, _ in market.transitions:
        legs.setdefault(leg, [(t, source)]).append((t, target))
    for leg, points in legs.items():
        xs = [p[0] for p in points] + [market.duration]
        ys = [order.index(p[1]) for p in points] + [order.index(points[-1][1])]
        ax.step(xs, ys, where="post", lw=1.4, label=leg)
    for start, end in market.alarms:
        ax.axvspan(
            start or 0.0,
            end if end is not None else market.duration,
            color="#c0392b",
            alpha=0.15,
            label="alarm raised",
        )
    for t, name in market.faults:
        ax.axvline(t, color="#333", ls=":", lw=1)
        ax.text(t, len(order) - 0.6, name, rotation=90, fontsize=7, va="top", ha="right")
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel("seconds since start")
    ax.set_title("connection states over time (each connection; faults dotted, alarms shaded)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right", ncol=3)
    return _png(fig)


def _scales(training: TrainingRecord) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    traces = training.traces
    fig, axes = plt.subplots(
        len(traces), 1, figsize=(11, 1.9 * max(1, len(traces))), sharex=True, squeeze=False
    )
    for ax, (number, trace) in zip(axes[:, 0], sorted(traces.items()), strict=False):
        for (s0, scale, state), nxt in zip(trace, [*trace[1:], None], strict=False):
            s1 = nxt[0] if nxt is not None else s0 + 1
            ax.hlines(
                max(scale, 1e-3), s0, max(s1, s0 + 0.5), colors=STATE_COLOURS.get(state, "k"), lw=3
            )
            if state == "reset":
                ax.axvline(s0, color=STATE_COLOURS["reset"], ls="--", lw=1)
        ax.axhline(training.threshold, color="#c0392b", lw=0.8, ls=":")
        ax.set_yscale("log", base=2)
        scenario = next((t["scenario"] for t in training.trials if t["number"] == number), "")
        result = next((t["state"] for t in training.trials if t["number"] == number), "")
        ax.set_ylabel(f"trial {number}", fontsize=8)
        ax.set_title(f"trial {number}: {scenario}, {result}", fontsize=8, loc="left")
    axes[-1, 0].set_xlabel("optimizer step")
    handles = [Line2D([], [], color=STATE_COLOURS[s], lw=3, label=s) for s in SCALER_STATES] + [
        Line2D([], [], color="#c0392b", ls=":", label="max_scale_threshold")
    ]
    axes[0, 0].legend(handles=handles, fontsize=7, ncol=6, loc="upper right")
    fig.suptitle("loss scale per trial, coloured by scaler state (resets dashed)")
    return _png(fig)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return "" if value is None else str(value)


def write_report(
    folder: Path,
    market: MarketRecord,
    training: TrainingRecord | None,
    *,
    patterns: list[str],
    simulated_patterns: list[str],
) -> Path:
    """Write ``folder/index.html`` (created if needed); return its path."""
    import matplotlib

    matplotlib.use("Agg")
    from ...fsm import ConnectionMachine
    from ...fsm._scaler import ScalerMachine

    folder.mkdir(parents=True, exist_ok=True)
    final_conn = market.stats.get("state", "idle")
    final_scaler = "warmup"
    if training is not None and training.trials:
        last = training.trials[-1]["scaler"]
        final_scaler = str(last.get("state", "warmup"))
        if final_scaler not in SCALER_STATES:
            final_scaler = "warmup"
    source = (
        "generated by the exchange simulator (a seeded random walk with clustered"
        " volatility), not market data"
        if market.generated
        else f"from {market.url}"
    )
    binance = market.stats.get("binance", {})
    rs = market.stats.get("reconnect_statistics", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>regulator demo report</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}"
        "img{max-width:100%}table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}"
        ".grid{display:flex;gap:1em;flex-wrap:wrap}.note{color:#666;font-size:13px}</style>",
        "</head><body><h1>regulator demo report</h1>",
        f"<p class='note'>Market data: {html.escape(source)}. {market.duration:.1f} s of"
        f" streaming, {len(market.faults)} scripted faults.</p>",
        "<h2 id='diagrams'>State diagrams</h2>",
        f"<p>Final states: connection <b>{html.escape(final_conn)}</b>, scaler of the last"
        f" trial <b>{html.escape(final_scaler)}</b> (filled).</p><div class='grid'>",
        _img(_diagram(ConnectionMachine, final_conn, "connection"), "connection diagram"),
        _img(_diagram(ScalerMachine, final_scaler, "scaler (last trial)"), "scaler diagram"),
        "</div>",
        "<h2 id='timeline'>Connection timeline</h2>",
        _img(_timeline(market), "connection timeline"),
        "<h3>Totals</h3>",
        _table(
            [
                {
                    "attempts": rs.get("total_attempts"),
                    "successes": rs.get("successes"),
                    "failures": rs.get("failures"),
                    "by kind": rs.get("failures_by_kind"),
                    "alarms raised": rs.get("alarm_count"),
                    "alarms resolved": rs.get("alarms_resolved"),
                    "messages": market.stats.get("messages_received"),
                    "gaps": binance.get("gaps_detected"),
                    "rotations": binance.get("rotations"),
                    "rate limits": len(binance.get("rate_limits", [])),
                }
            ],
            [
                "attempts",
                "successes",
                "failures",
                "by kind",
                "alarms raised",
                "alarms resolved",
                "messages",
                "gaps",
                "rotations",
                "rate limits",
            ],
        ),
        "<h2 id='faults'>Faults injected</h2>",
        _table([{"t (s)": round(t, 2), "fault": n} for t, n in market.faults], ["t (s)", "fault"]),
        "<h2 id='failures'>Failure history</h2>",
        _table(market.failures, ["t", "connection", "state", "reason"]),
        "<h2 id='gaps'>Gaps detected</h2>",
        _table([g.as_dict() for g in market.gaps], ["stream", "field", "first", "last", "count"]),
        "<h2 id='patterns'>Pattern detector</h2>",
        "<p>Live run: "
        + (
            html.escape("; ".join(patterns))
            if patterns
            else f"no recurring pattern in {len(market.failures)} drops"
            " (too few and too short a run to be significant)."
        )
        + "</p>",
        "<p>The same detector over a simulated day of drops at minute 17 of every hour"
        " (virtual clock): " + html.escape("; ".join(simulated_patterns) or "none") + "</p>",
    ]
    if training is not None:
        parts += [
            "<h2 id='scale'>Loss scale per trial</h2>",
            _img(_scales(training), "loss scale per trial"),
            "<h2 id='study'>Optuna study</h2>",
            f"<p>Study <code>{html.escape(training.study_name)}</code> on"
            f" <code>{html.escape(training.storage)}</code>, {training.samples} samples of"
            " closed 1-minute klines; best: "
            + html.escape(_fmt(training.best) if training.best else "none")
            + "</p>",
            _table(
                [
                    {
                        "trial": t["number"],
                        "scenario": t["scenario"],
                        "state": t["state"],
                        "value": t["value"],
                        "params": t["params"],
                        "scaler": t["scaler"],
                    }
                    for t in training.trials
                ],
                ["trial", "scenario", "state", "value", "params", "scaler"],
            ),
        ]
    parts.append("</body></html>")
    path = folder / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
