"""The demo's report: one ``index.html`` with matplotlib images embedded (base64 PNG), readable
offline, in any browser, without the demo's Python environment."""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...fsm import CONNECTION_STATES
from ...fsm._logfmt import escape_controls
from ...fsm._scaler import SCALER_STATES
from .._redact import clip
from ..binance._tracker import Gap
from ._market import MarketRecord
from ._training import SKIPPED_FLAG, TrainingRecord

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


def _diagram(name: str, final: str, caption: str) -> str:
    """The machine as declared, drawn like ``regulator diagram`` (Graphviz when ``dot`` is on
    PATH, otherwise a layout that gives every label its own place); ``final`` filled."""
    from ...fsm._diagram import diagram_svg

    svg = diagram_svg(name, state=final, caption=caption)
    return f"<figure id='diagram-{name}' class='diagram'>{svg}</figure>"


def _h(text: str) -> str:
    """Text a server may have written, as HTML: markup escaped, control characters shown."""
    return html.escape(escape_controls(text))


def _out_of_range(epoch: object) -> str:
    return f"out of range ({clip(repr(epoch), 40)})"


def _utc(epoch: Any, fmt: str = "%H:%M:%S") -> str:
    """``epoch`` (seconds) as UTC; a time no calendar holds (a server's kline at 10^16 ms,
    NaN) is shown as such, never raised: the report renders any value."""
    try:
        return datetime.fromtimestamp(float(epoch), UTC).strftime(fmt)
    except (OverflowError, ValueError, OSError, TypeError):
        return _out_of_range(epoch)


def _clock(market: MarketRecord, t: float) -> str:
    """Seconds since the start as a UTC clock time, to the hundredth."""
    try:
        stamp = datetime.fromtimestamp(market.started_at + t, UTC)
    except (OverflowError, ValueError, OSError, TypeError):
        return _out_of_range(t)
    return stamp.strftime("%H:%M:%S.%f")[:-4]


def _ms(value: Any) -> Any:
    """Epoch milliseconds as seconds (a huge int cannot be divided into a float)."""
    try:
        return float(value) / 1000
    except (OverflowError, ValueError, TypeError):
        return value


def _market_clock_note(market: MarketRecord) -> str:
    """Kline times are the market's clock: the simulator's runs faster than the wall clock
    from a fixed date, so they are not the run's date; say so where they are shown."""
    if market.market_start_ms is None or market.market_speed is None:
        return ""
    start = _utc(market.market_start_ms / 1000, "%Y-%m-%d %H:%M UTC")
    return (
        "<p class='note'>Kline open times are on the simulator's market clock, not the wall"
        f" clock: its market starts at {html.escape(start)} and runs"
        f" {market.market_speed:g} times faster than real time (a 1-minute kline every"
        f" {60.0 / market.market_speed:.3g} s), so their dates differ from the run's.</p>"
    )


def _backfill_table(backfill: dict[str, Any] | None) -> str:
    """Per stream: events refilled from REST, beside the gaps REST could not refill."""
    if not backfill:
        return "<p>Backfill off: every gap above stayed lost.</p>"
    rest = backfill.get("rest", {})
    rows = [
        {"stream": stream, "events backfilled": count}
        for stream, count in sorted(backfill.get("backfilled", {}).items())
    ]
    note = (
        f"<p class='note'>{backfill.get('ranges', 0)} gaps refilled from REST"
        f" ({backfill.get('gaps', 0)} ranges, {backfill.get('events_missing', 0)} events, REST"
        f" could not refill: reported above); {rest.get('requests', 0)} REST requests,"
        f" weight {rest.get('weight_reserved', 0)}, the exchange's last"
        f" X-MBX-USED-WEIGHT-1M {rest.get('used_weight', 0)} of {rest.get('weight_limit', 0)},"
        f" {rest.get('rate_limited', 0)} answered 429. Trade streams are refilled only with"
        " an API key (historicalTrades): their gaps stay in the table above.</p>"
    )
    return _table(rows, ["stream", "events backfilled"]) + note


def _gap_row(gap: Gap) -> dict[str, Any]:
    row = gap.as_dict()
    if gap.field == "k.t":  # kline open times, epoch ms: show the candles' UTC times
        row["first"] = _utc(_ms(gap.first), "%Y-%m-%d %H:%M UTC")
        row["last"] = _utc(_ms(gap.last), "%Y-%m-%d %H:%M UTC")
        row["field"] = "kline open time"
    elif gap.field in FIELD_NAMES:
        row["field"] = FIELD_NAMES[gap.field]
    return row


FIELD_NAMES = {"t": "trade id", "a": "aggregate trade id", "u": "depth update id"}


#: Tick spacings (s) the timeline picks from: whole clock seconds, minutes.
_TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


def timeline_ticks(started_at: float, duration: float) -> list[tuple[float, str]]:
    """(x, label) of the timeline's ticks: x in seconds since the start, placed where the wall
    clock reads exactly ``label`` (whole seconds), not at whole seconds since the start (a
    start at 13:26:02.87 put the tick labelled 13:26:12 at 13:26:12.87)."""
    step = next((s for s in _TICK_STEPS if duration / s <= 10), _TICK_STEPS[-1])
    first = math.ceil(started_at / step) * step
    ticks = []
    wall = first
    while wall <= started_at + duration:
        ticks.append((wall - started_at, _utc(wall)))
        wall += step
    return ticks


def _timeline(market: MarketRecord) -> str:
    return _png(timeline_figure(market))


def timeline_figure(market: MarketRecord) -> Any:
    """The connection timeline (a matplotlib figure): states per connection over seconds
    since the start, faults as dotted lines, alarms shaded, ticks on the wall clock."""
    import matplotlib.pyplot as plt

    order = list(CONNECTION_STATES)
    fig, ax = plt.subplots(figsize=(11, 3.4))
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
    top = ax.get_xaxis_transform()  # x in data, y in axes units: labels above the plot
    for t, name in market.faults:
        ax.axvline(t, color="#333", ls=":", lw=1, label="fault injected")
        ax.text(t, 1.02, name, transform=top, rotation=90, fontsize=7, va="bottom", ha="center")
    ax.set_xlim(0.0, market.duration)
    ax.set_yticks(range(len(order)), order)
    ticks = timeline_ticks(market.started_at, market.duration)
    ax.set_xticks([x for x, _ in ticks], [label for _, label in ticks])
    ax.set_xlabel(f"time (UTC, {_utc(market.started_at, '%Y-%m-%d')})")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=False))
    # outside the axes, so it never covers a state line
    ax.legend(
        unique.values(),
        unique.keys(),
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title="connection",
        title_fontsize=8,
    )
    return fig


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
        trial = next((t for t in training.trials if t["number"] == number), {})
        health, flagged = _health(trial)
        ax.set_ylabel(f"trial {number}", fontsize=8)
        ax.set_title(
            f"trial {number}: {trial.get('scenario', '')}, {trial.get('state', '')}; {health}",
            fontsize=8,
            loc="left",
            color="#c0392b" if flagged else "#222",
            fontweight="bold" if flagged else "normal",
        )
    axes[-1, 0].set_xlabel("optimizer step")
    handles = [Line2D([], [], color=STATE_COLOURS[s], lw=3, label=s) for s in SCALER_STATES] + [
        Line2D([], [], color="#c0392b", ls=":", label="max_scale_threshold"),
        Line2D([], [], color=STATE_COLOURS["reset"], ls="--", label="reset"),
    ]
    # outside the axes, so it never covers a trace
    axes[0, 0].legend(
        handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="state"
    )
    return _png(fig)


def _best_flag(training: TrainingRecord) -> str:
    """A warning when the study's best trial is one that skipped most of its steps."""
    best = (training.best or {}).get("number")
    trial = next((t for t in training.trials if t["number"] == best), None)
    if trial is None or not _health(trial)[1]:
        return ""
    return f" <b class='warn'>(flagged: {html.escape(_health(trial)[0])})</b>"


def _rate(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100.0 * part / whole:.0f}%)" if whole else f"{part}/0"


def _health(trial: dict[str, Any]) -> tuple[str, bool]:
    """A trial's overflow and skipped-step rates, and whether it is flagged: a trial that
    skipped more than SKIPPED_FLAG of its optimizer steps learned from far fewer updates than
    its step count says, whatever its state."""
    steps = int(trial.get("steps") or 0)
    skipped = int(trial.get("skipped") or 0)
    overflows = int(trial.get("scaler", {}).get("overflow_count") or 0)
    text = f"overflowed {_rate(overflows, steps)}, skipped {_rate(skipped, steps)}"
    flagged = steps > 0 and skipped / steps > SKIPPED_FLAG
    if flagged:
        text = f"\u26a0 {text}: over {SKIPPED_FLAG:.0%} of the updates skipped"
    return text, flagged


def _table(
    rows: list[dict[str, Any]], columns: list[str], flagged: list[bool] | None = None
) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    marks = flagged or [False] * len(rows)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        ("<tr class='flagged'>" if mark else "<tr>")
        + "".join(f"<td>{_h(_fmt(r.get(c)))}</td>" for c in columns)
        + "</tr>"
        for r, mark in zip(rows, marks, strict=True)
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    """Any value as table text: a float to 4 digits, a dict as k=v pairs, anything else by
    str(); a value whose str() fails is named by its type, never raised."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if value is None:
        return ""
    try:
        return clip(str(value), 2000)
    except Exception:
        return f"<{type(value).__name__}>"


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
    folder.mkdir(parents=True, exist_ok=True)
    final_conn = market.final_state if market.final_state in CONNECTION_STATES else "idle"
    conn_caption = f"final state: {final_conn}" + (
        f", {market.final_reason}" if market.final_reason else ""
    )
    final_scaler = "warmup"
    scaler_caption = "no trial ran: initial state"
    if training is not None and training.trials:
        last = training.trials[-1]
        final_scaler = str(last["scaler"].get("state", "warmup"))
        if final_scaler not in SCALER_STATES:
            final_scaler = "warmup"
        scaler_caption = f"final state of trial {last['number']} (the last): {final_scaler}"
    source = (
        "generated by the exchange simulator (a seeded random walk with clustered"
        " volatility), not market data"
        if market.generated
        else f"from {market.url}"
    )
    binance = market.stats.get("binance", {})
    rs = market.stats.get("reconnect_statistics", {})
    drops = sum(1 for f in market.failures if f.get("failure") == "drop")
    planned = sum(1 for f in market.failures if f.get("failure") == "planned close")
    lost_live = sum(1 for f in market.failures if f.get("state") == "live")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>regulator demo report</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}"
        "img{max-width:100%}table{border-collapse:collapse;font-size:13px;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}"
        ".note{color:#666;font-size:13px}figure.diagram{margin:1em 0;overflow-x:auto}"
        "figure.diagram svg:not(.regulator-layout){max-width:100%;height:auto}"
        "tr.flagged td{background:#fde2e1}.warn{color:#c0392b}</style>",
        "</head><body><h1>regulator demo report</h1>",
        f"<p class='note'>Market data: {html.escape(source)}. {market.duration:.1f} s of"
        f" streaming from {_clock(market, 0.0)} UTC on {_utc(market.started_at, '%Y-%m-%d')},"
        f" {len(market.faults)} scripted faults. Times are UTC.</p>",
        "<h2 id='diagrams'>State diagrams</h2>",
        f"<p>Final states (filled): connection <b>{html.escape(final_conn)}</b>"
        + (f" ({_h(market.final_reason)})" if market.final_reason else "")
        + f", scaler of the last trial <b>{html.escape(final_scaler)}</b>.</p>",
        _diagram("connection", final_conn, conn_caption),
        _diagram("scaler", final_scaler, scaler_caption),
        "<h2 id='timeline'>Connection timeline</h2>",
        _img(_timeline(market), "connection timeline"),
        "<h3>Totals</h3>",
        _table(
            [
                {
                    "attempts": rs.get("total_attempts"),
                    "successes": rs.get("successes"),
                    "failures": len(market.failures),
                    "failed attempts": len(market.failures) - drops - planned,
                    "drops": drops,
                    "planned closes": planned,
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
                "failed attempts",
                "drops",
                "planned closes",
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
        _table(
            [{"time (UTC)": _clock(market, t), "fault": n} for t, n in market.faults],
            ["time (UTC)", "fault"],
        ),
        "<h2 id='failures'>Failure history</h2>",
        _table(
            [{**f, "time (UTC)": _clock(market, f["t"])} for f in market.failures],
            ["time (UTC)", "connection", "state", "failure", "reason"],
        ),
        "<p class='note'>As <code>docs/connection.md</code> defines them: a <b>drop</b> is the"
        " failure of a healthy connection (live and verified, or live for"
        " <code>stable_after</code>); a <b>planned close</b> is a server's announced"
        " restart (1001/1012, <code>serverShutdown</code>), counted nowhere; any other failure"
        " is a <b>failed attempt</b>, counted towards the alarm. A stop by the host is not a"
        " failure.</p>",
        "<h2 id='gaps'>Gaps detected</h2>",
        _table([_gap_row(g) for g in market.gaps], ["stream", "field", "first", "last", "count"]),
        "<h3 id='backfill'>Backfilled from REST</h3>",
        _backfill_table(binance.get("backfill")),
        _market_clock_note(market),
        "<h2 id='patterns'>Pattern detector</h2>",
        "<p>Live run: "
        + (
            _h("; ".join(patterns))
            if patterns
            else f"no recurring pattern in {lost_live} failures of live connections"
            f" ({drops} drops of healthy connections, the others planned closes or attempts"
            " that failed after reaching live): too few, and too short a run, to be"
            " significant."
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
            + _best_flag(training)
            + "</p>",
            "<p class='note'>Overflowed: steps whose gradients held an inf or NaN (the"
            " scaler's count). Skipped: steps the optimizer did not take (AdamW's own step"
            f" count). A trial that skipped over {SKIPPED_FLAG:.0%} of its steps is flagged"
            " \u26a0: its value rests on far fewer updates than it seems, whatever its"
            " state.</p>",
            _table(
                [
                    {
                        "trial": t["number"],
                        "scenario": t["scenario"],
                        "state": t["state"],
                        "value": t["value"],
                        "steps": _health(t)[0],
                        "params": t["params"],
                        "scaler": t["scaler"],
                    }
                    for t in training.trials
                ],
                ["trial", "scenario", "state", "value", "steps", "params", "scaler"],
                flagged=[_health(t)[1] for t in training.trials],
            ),
        ]
    parts.append("</body></html>")
    path = folder / "index.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
