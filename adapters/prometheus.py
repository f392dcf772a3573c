"""A Prometheus exporter for both machines: read at scrape time, so hot paths pay nothing.

The collector holds weak references to registered ``ResilientWebSocket`` and
``GuardedGradScaler`` objects; at each scrape it reads their existing counters and states.
A connection that is closed, or any object that was garbage-collected, disappears from the
output. Labels carry the ``name`` given at registration, never a raw URL: a name is passed
through the redaction policy, so one that is a URL loses its secrets.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    StateSetMetricFamily,
)

from ..fsm import CONNECTION_STATES, DELAY_BUCKETS, Machine
from ..fsm._scaler import SCALER_STATES
from ._counts import copy_counts
from ._redact import redaction_policy

__all__ = ["MetricsExporter", "start_metrics_server"]


class _TransitionCounter:
    """A python-statemachine listener counting (source, event, target) transitions."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], int] = {}

    def after_transition(self, event: Any, source: Any, target: Any) -> None:
        key = (source.id, str(event), target.id)
        self.counts[key] = self.counts.get(key, 0) + 1


class MetricsExporter:
    """A ``prometheus_client`` collector over registered connections and scalers.

    .. code-block:: python

        exporter = MetricsExporter()              # registers itself in `registry`
        exporter.register(ws, name="eth-klines")
        exporter.register(scaler, name="informer")
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, weakref.ReferenceType[Any]] = {}
        self._counters: dict[str, _TransitionCounter] = {}
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(self)

    def register(self, obj: Any, *, name: str) -> None:
        """Export ``obj`` (a ResilientWebSocket, BinanceStream, GuardedGradScaler, or any
        :class:`regulator.fsm.Machine`: a host's own machine) as ``name``.

        A machine's state is a labelled gauge and its transitions a counter, counted from
        registration on by a python-statemachine listener (the compiled engine runs it; the
        machine keeps its speed otherwise)."""
        key = redaction_policy.text(name)
        if isinstance(obj, Machine):
            counter = _TransitionCounter()
            obj.add_listener(counter)
            with self._lock:
                self._objects[key] = weakref.ref(obj)
                self._counters[key] = counter
            return
        if not (hasattr(obj, "counter_totals") or hasattr(obj, "get_statistics")):
            kind = type(obj).__name__
            raise TypeError(
                "obj: must be a ResilientWebSocket, a BinanceStream, a GuardedGradScaler"
                f" or a regulator.fsm.Machine (got {kind})"
            )
        with self._lock:
            self._objects[key] = weakref.ref(obj)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._objects.pop(redaction_policy.text(name), None)
            self._counters.pop(redaction_policy.text(name), None)

    def _live(self) -> list[tuple[str, Any]]:
        with self._lock:
            alive = []
            for name, ref in list(self._objects.items()):
                obj = ref()
                if obj is None:
                    del self._objects[name]  # collected: gone from the output
                else:
                    alive.append((name, obj))
            return alive

    def collect(self) -> Iterator[Metric]:
        connections, streams, scalers, machines = [], [], [], []
        for name, obj in self._live():
            if isinstance(obj, Machine):
                machines.append((name, obj))
            elif not hasattr(obj, "counter_totals"):
                scalers.append((name, obj))
            elif obj.state != "closed" and getattr(obj, "connection", obj) is not None:
                # closed, or a BinanceStream not started (no connection yet): not exported
                connections.append((name, obj))
                if hasattr(obj, "gaps_detected"):
                    streams.append((name, obj))
        yield from self._connection_metrics(connections)
        yield from self._binance_metrics(streams)
        yield from self._book_metrics(streams)
        yield from self._scaler_metrics(scalers)
        yield from self._machine_metrics(machines)

    # -- any Machine ------------------------------------------------------------------------
    def _machine_metrics(self, machines: list[tuple[str, Any]]) -> Iterator[Metric]:
        p = "regulator_machine_"
        labels = ["name", "machine"]
        state = GaugeMetricFamily(
            p + "state",
            "1 for the machine's current state, 0 for the others.",
            labels=[*labels, "state"],
        )
        taken = CounterMetricFamily(
            p + "transitions",
            "Transitions taken since registration.",
            labels=[*labels, "source", "event", "target"],
        )
        for name, machine in machines:
            cls = type(machine)
            current = machine.current_state_value
            for declared in cls.states:
                state.add_metric(
                    [name, cls.__name__, declared.id], 1.0 if declared.value == current else 0.0
                )
            with self._lock:
                counter = self._counters.get(name)
                counts = dict(counter.counts) if counter is not None else {}
            for (source, event, target), count in sorted(counts.items()):
                taken.add_metric([name, cls.__name__, source, event, target], count)
        yield state
        yield taken

    # -- connections ---------------------------------------------------------------------
    def _connection_metrics(self, connections: list[tuple[str, Any]]) -> Iterator[Metric]:
        p = "regulator_connection_"
        state = StateSetMetricFamily(p + "state", "Current lifecycle state.", labels=["name"])
        counters = {
            key: CounterMetricFamily(p + key, help_, labels=["name"])
            for key, help_ in (
                ("attempts", "Connection attempts (over every rotation, for a BinanceStream)."),
                ("successes", "Attempts that reached live."),
                ("alarms_raised", "Alarms raised (too many failures in the window)."),
                ("alarms_resolved", "Alarms resolved by a healthy connection."),
                ("messages_received", "Messages received."),
                ("messages_dropped", "Messages dropped by a full buffer (drop_oldest)."),
            )
        }
        failures = CounterMetricFamily(p + "failures", "Failures by kind.", labels=["name", "kind"])
        alarm = GaugeMetricFamily(
            p + "alarm_active", "1 while an alarm is raised.", labels=["name"]
        )
        since = GaugeMetricFamily(
            p + "seconds_since_last_message",
            "Seconds since the last message (NaN: none yet).",
            labels=["name"],
        )
        rtt = GaugeMetricFamily(p + "rtt_seconds", "Last ping round trip.", labels=["name"])
        delay = HistogramMetricFamily(
            p + "reconnect_delay_seconds", "Backoff delays chosen.", labels=["name"]
        )
        # This runs in the HTTP server's thread: read plain attributes only (no event-loop
        # clock, no awaiting); copy the one dict that the loop may grow, retrying on a race.
        for name, obj in connections:
            # a BinanceStream: the primary connection's live state, counters over all of them
            ws = getattr(obj, "connection", None) or obj
            machine = ws.machine
            totals = obj.counter_totals()
            state.add_metric([name], {s: s == machine.state for s in CONNECTION_STATES})
            for key in counters:
                counters[key].add_metric([name], totals[key])
            for kind, count in totals["failures_by_kind"].items():
                failures.add_metric([name, kind], count)
            alarm.add_metric([name], 1.0 if machine.alarm_active else 0.0)
            last = ws.last_message_monotonic
            since.add_metric(
                [name], math.nan if last is None else max(0.0, time.monotonic() - last)
            )
            rtt.add_metric([name], math.nan if machine.last_rtt is None else machine.last_rtt)
            running, buckets = 0, []
            for bound, count in zip(
                (*DELAY_BUCKETS, math.inf), totals["delay_counts"], strict=True
            ):
                running += count
                buckets.append(("+Inf" if bound == math.inf else repr(bound), running))
            delay.add_metric([name], buckets=buckets, sum_value=totals["delay_sum"])
        yield state
        yield from counters.values()
        yield from (failures, alarm, since, rtt, delay)

    # -- Binance streams -----------------------------------------------------------------
    def _binance_metrics(self, streams: list[tuple[str, Any]]) -> Iterator[Metric]:
        p = "regulator_binance_"
        counters = {
            key: CounterMetricFamily(p + key, help_, labels=["name"])
            for key, help_ in (
                ("gaps", "Gaps detected in sequenced streams (ids or candles never received)."),
                ("gap_events_missing", "Trades, aggregates, updates or candles in those gaps."),
                ("duplicates_dropped", "Events dropped as already delivered (rotations)."),
                ("malformed", "Messages that were not JSON or not of a known shape."),
                ("unsubscribed_dropped", "Events of streams not subscribed, dropped untracked."),
                ("sequence_resets", "Streams whose ids moved implausibly far: tracking restarted."),
                ("unexpected_replies", "Replies that answered no request in flight."),
                ("request_errors", "Requests the exchange answered with an error."),
                ("request_timeouts", "Requests without a reply in time."),
                ("rate_limited", "Handshakes refused with 429 or 418."),
            )
        }
        rotations = CounterMetricFamily(
            p + "rotations", "Planned make-before-break rotations.", labels=["name", "reason"]
        )
        confirmed = GaugeMetricFamily(
            p + "streams_confirmed", "Streams the exchange confirmed.", labels=["name"]
        )
        wanted = GaugeMetricFamily(p + "streams", "Streams wanted.", labels=["name"])
        budget = _BudgetMetrics(p + "budget_")
        backfilled = CounterMetricFamily(
            p + "backfilled_events",
            "Events refilled from REST after an interruption, per stream.",
            labels=["name", "stream"],
        )
        filling = {
            key: CounterMetricFamily(p + key, help_, labels=["name"])
            for key, help_ in (
                ("backfill_gaps", "Ranges REST could not refill (reported as gaps)."),
                ("backfill_failures", "REST requests of the backfill that failed."),
                ("rest_requests", "REST requests sent."),
                ("rest_weight", "REST request weight reserved (the endpoints' documented weight)."),
                ("rest_rate_limited", "REST requests answered 429."),
                ("rest_banned", "REST requests answered 418."),
            )
        }
        used = GaugeMetricFamily(
            p + "rest_used_weight",
            "The exchange's X-MBX-USED-WEIGHT-1M of the last REST answer.",
            labels=["name"],
        )
        for name, stream in streams:
            budget.add(name, stream.budget.stats())
            refill = stream.backfill_stats() if hasattr(stream, "backfill_stats") else None
            if refill is not None:
                for each, count in copy_counts(refill["backfilled"]).items():
                    backfilled.add_metric([name, each], count)
                rest = refill["rest"]
                for key, value in (
                    ("backfill_gaps", refill["gaps"]),
                    ("backfill_failures", refill["failures"]),
                    ("rest_requests", rest["requests"]),
                    ("rest_weight", rest["weight_reserved"]),
                    ("rest_rate_limited", rest["rate_limited"]),
                    ("rest_banned", rest["banned"]),
                ):
                    filling[key].add_metric([name], value)
                used.add_metric([name], rest["used_weight"])
            values = {
                "gaps": stream.gaps_detected,
                "gap_events_missing": stream.gap_events_missing,
                "duplicates_dropped": stream.duplicates_dropped,
                "malformed": stream.malformed,
                "unsubscribed_dropped": stream.unsubscribed_dropped,
                "sequence_resets": stream.sequence_resets,
                "unexpected_replies": stream.unexpected_replies,
                "request_errors": stream.request_errors,
                "request_timeouts": stream.request_timeouts,
                "rate_limited": stream.rate_limited_total,
            }
            for key, value in values.items():
                counters[key].add_metric([name], value)
            for reason, count in copy_counts(stream.rotations).items():
                rotations.add_metric([name, reason], count)
            counts = stream.stream_counts()
            confirmed.add_metric([name], counts[1])
            wanted.add_metric([name], counts[0])
        yield from counters.values()
        yield from (rotations, confirmed, wanted, backfilled, used)
        yield from filling.values()
        yield from budget.families()

    # -- local order books of Binance streams ------------------------------------------------
    def _book_metrics(self, streams: list[tuple[str, Any]]) -> Iterator[Metric]:
        p = "regulator_binance_book_"
        resyncs = CounterMetricFamily(
            p + "resyncs", "Local order books discarded after a gap in U/u.", labels=["name"]
        )
        snapshots = CounterMetricFamily(
            p + "snapshots", "Depth snapshots fetched for local order books.", labels=["name"]
        )
        synced = GaugeMetricFamily(
            p + "synced", "1 while the local order book is synced.", labels=["name", "symbol"]
        )
        for name, stream in streams:
            stats = stream.book_stats()
            resyncs.add_metric([name], stats["resyncs"])
            snapshots.add_metric([name], stats["snapshots_fetched"])
            for symbol, book in stats["books"].items():
                synced.add_metric([name, symbol], 1.0 if book["synced"] else 0.0)
        yield from (resyncs, snapshots, synced)

    # -- scalers -------------------------------------------------------------------------
    def _scaler_metrics(self, scalers: list[tuple[str, Any]]) -> Iterator[Metric]:
        p = "regulator_scaler_"
        state = StateSetMetricFamily(p + "state", "Current lifecycle state.", labels=["name"])
        scale = GaugeMetricFamily(p + "scale", "Current loss scale (host mirror).", labels=["name"])
        epoch = GaugeMetricFamily(p + "epoch", "Epochs completed.", labels=["name"])
        counters = {
            key: CounterMetricFamily(p + key, help_, labels=["name"])
            for key, help_ in (
                ("steps", "Optimizer steps."),
                ("overflows", "Steps whose gradients overflowed (skipped)."),
                ("halvings", "Extra halvings after consecutive overflows."),
                ("resets", "Resets after epochs over the threshold."),
                ("collapses", "Collapses: overflows at min_scale."),
            )
        }
        for name, scaler in scalers:
            # The slotted counters only: no device sync, nothing iterated that training mutates.
            # (With a fused optimizer the scale is the one verified at the last epoch end.)
            c = scaler.machine.counters
            current = scaler.state
            state.add_metric([name], {s: s == current for s in (*SCALER_STATES, "disabled")})
            scale.add_metric([name], c.scale if current != "disabled" else 1.0)
            epoch.add_metric([name], c.epoch)
            counters["steps"].add_metric([name], c.steps)
            counters["overflows"].add_metric([name], c.overflows)
            counters["halvings"].add_metric([name], c.halvings)
            counters["resets"].add_metric([name], c.resets)
            counters["collapses"].add_metric([name], c.collapses)
        yield from (state, scale, epoch)
        yield from counters.values()


def start_metrics_server(
    port: int, host: str = "127.0.0.1", *, exporter: MetricsExporter | None = None
) -> tuple[MetricsExporter, Any]:
    """Serve ``/metrics`` on ``host:port`` (port 0 picks a free one) from a daemon thread.

    Returns the exporter and the HTTP server (``server.server_port``; ``server.shutdown()``
    stops it).
    """
    exporter = exporter or MetricsExporter()
    server, _thread = start_http_server(port, addr=host, registry=exporter.registry)
    deadline = time.monotonic() + 5.0
    while getattr(server, "server_port", None) is None and time.monotonic() < deadline:
        time.sleep(0.01)  # pragma: no cover - the server binds in its constructor
    return exporter, server


class _BudgetMetrics:
    """The connection-attempt budget of each stream: the address's window and this process's
    share of it, and how often its shared store was out of reach (``FileBudget``,
    ``RedisBudget``; an in-process budget's share is the whole window)."""

    def __init__(self, p: str) -> None:
        labels = ["name", "backend"]
        self.gauges = {
            key: GaugeMetricFamily(p + key, help_, labels=labels)
            for key, help_ in (
                ("limit", "Attempts allowed per window (less the headroom kept for fallbacks)."),
                ("in_window", "Attempts in the current window, every process of the store."),
                ("own_in_window", "This process's attempts in the current window (its share)."),
                ("falling_back", "1 while the shared store is unreachable (the local share)."),
            )
        }
        self.counters = {
            key: CounterMetricFamily(p + key, help_, labels=labels)
            for key, help_ in (
                ("reservations", "Attempt slots this process reserved."),
                ("waits", "Reservations that had to wait for a slot."),
                ("fallbacks", "Outages of the shared store (each one logged)."),
                ("fallback_reservations", "Reservations taken from the local share."),
            )
        }

    def add(self, name: str, stats: dict[str, Any]) -> None:
        labels = [name, str(stats.get("backend", "local"))]
        limit = stats["limit"] - stats.get("headroom", 0)
        self.gauges["limit"].add_metric(labels, limit)
        self.gauges["in_window"].add_metric(labels, stats["in_window"])
        self.gauges["own_in_window"].add_metric(
            labels, stats.get("own_in_window", stats["in_window"])
        )
        self.gauges["falling_back"].add_metric(labels, 1.0 if stats.get("falling_back") else 0.0)
        for key in self.counters:
            self.counters[key].add_metric(labels, stats.get(key, 0))

    def families(self) -> Iterator[Metric]:
        yield from self.gauges.values()
        yield from self.counters.values()
