"""Configuration: frozen attrs classes, validated field by field.

Every field is declared with :func:`_setting`, which attaches its rule (validator, strict loader
hook and schema), its unit, its documentation and its legacy environment names. Loading from
TOML and the environment lives in ``_config_loader``; this module only declares.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import attrs

from ._errors import ConfigError
from ._rules import Boolean, BudgetUrl, Choice, Integer, Number, Optional, Rule, Scale

__all__ = [
    "BinanceConfig",
    "ConnectionConfig",
    "RegulatorConfig",
    "ScalerConfig",
    "config_reference_markdown",
    "field_docs",
]


def _setting(
    default: Any, rule: Rule, doc: str, *, unit: str = "", legacy_env: tuple[str, ...] = ()
) -> Any:
    return attrs.field(
        default=default,
        validator=rule,
        metadata={"rule": rule, "doc": doc, "unit": unit, "legacy_env": legacy_env},
    )


def _cross_problems(section: str, pairs: list[tuple[bool, str]]) -> None:
    problems = [f"{section}.{message}" for failed, message in pairs if failed]
    if problems:
        raise ConfigError(problems)


@attrs.frozen(kw_only=True)
class ConnectionConfig:
    """How the connection lifecycle retries, keeps alive, times out and alarms (R1, R3, R4.1)."""

    _section: ClassVar[str] = "connection"

    max_retries: int | None = _setting(
        None,
        Optional(Integer(ge=0)),
        "Retries after consecutive failures before giving up (closed); unset retries forever."
        " 0 means give up at the first failure.",
        unit="count",
        legacy_env=("WS_RECONNECT_MAX_RETRIES",),
    )
    initial_delay: float = _setting(
        1.0,
        Number(gt=0),
        "Backoff delay after the first failure.",
        unit="s",
        legacy_env=("WS_RECONNECT_INITIAL_DELAY",),
    )
    max_delay: float = _setting(
        60.0,
        Number(gt=0),
        "Cap on every backoff delay (a server's Retry-After may ask for longer and is honoured).",
        unit="s",
        legacy_env=("WS_RECONNECT_MAX_DELAY",),
    )
    backoff_factor: float = _setting(
        2.0,
        Number(ge=1),
        "Each consecutive failure multiplies the delay by this.",
        unit="factor",
        legacy_env=("WS_RECONNECT_BACKOFF_FACTOR",),
    )
    jitter: float = _setting(
        0.1,
        Number(ge=0, lt=1),
        "Relative random spread of each delay; delays stay in"
        " [initial_delay * (1 - jitter), max_delay]. 0 gives exactly 1, 2, 4, ... s.",
        unit="fraction",
    )
    ping_interval: float = _setting(
        30.0,
        Number(gt=0),
        "While live, a ping is sent this often.",
        unit="s",
        legacy_env=("WS_HEARTBEAT_INTERVAL",),
    )
    pong_timeout: float = _setting(
        10.0,
        Number(gt=0),
        "A pong not seen this long after its ping fails the connection (kind timeout).",
        unit="s",
    )
    handshake_timeout: float = _setting(
        30.0,
        Number(gt=0),
        "One deadline for TCP connect + TLS + WebSocket upgrade.",
        unit="s",
    )
    alarm_failures: int = _setting(
        3,
        Integer(ge=0),
        "Alarm when more than this many failed reconnect attempts (attempts that never became"
        " healthy; see stable_after) fall within alarm_window; once per episode.",
        unit="count",
    )
    alarm_window: float = _setting(
        300.0, Number(gt=0), "The sliding window of the alarm rule.", unit="s"
    )
    history_size: int = _setting(
        10, Integer(ge=1), "Failure records kept (newest first out of the window).", unit="count"
    )
    stable_after: float = _setting(
        10.0,
        Number(ge=0),
        "A live connection is healthy after this long (or earlier when the host vouches for"
        " it: BinanceStream once its subscriptions are verified). Only then do consecutive"
        " failures go back to 0 (R1.4) and a raised alarm resolve; a failure before that is a"
        " failed reconnect attempt (R1.3), so a link accepted and then dropped keeps backing"
        " off. 0 makes live healthy at once.",
        unit="s",
    )
    pattern_min_hits: int = _setting(
        4,
        Integer(ge=3),
        "Drops needed before the pattern detector may report a recurring pattern.",
        unit="count",
    )
    buffer_bytes: int = _setting(
        32 * 1024 * 1024,
        Integer(ge=1),
        "Size bound of the receive buffer between the socket and the consumer, beside its"
        " count bound (buffer_size): the messages held weigh at most this together"
        " (characters of text, bytes of binary); whichever bound is reached first applies"
        " the overflow policy. A single message heavier than this still enters an empty"
        " buffer (max_message_bytes bounds it). Default 32 MiB.",
        unit="bytes",
    )

    def __attrs_post_init__(self) -> None:
        _cross_problems(
            self._section,
            [
                (
                    self.max_delay < self.initial_delay,
                    f"max_delay: must be >= initial_delay (got max_delay={self.max_delay!r},"
                    f" initial_delay={self.initial_delay!r})",
                )
            ],
        )


@attrs.frozen(kw_only=True)
class ScalerConfig:
    """How the guarded AMP loss scale starts, grows, backs off and is kept in bounds (R2, R4.2)."""

    _section: ClassVar[str] = "scaler"

    init_scale_strategy: Literal["by_model_size", "fixed"] = _setting(
        "by_model_size",
        Choice(("by_model_size", "fixed")),
        "by_model_size picks the initial scale from the trainable parameter count (R2.1);"
        " fixed uses init_scale.",
        legacy_env=("GRAD_SCALER_INIT_SCALE_STRATEGY",),
    )
    init_scale: float = _setting(
        2.0**16, Scale(), "Initial scale for the fixed strategy.", unit="scale"
    )
    small_model_params: int = _setting(
        1_000_000,
        Integer(ge=1),
        "Models with fewer trainable parameters than this are small.",
        unit="parameters",
    )
    large_model_params: int = _setting(
        10_000_000,
        Integer(ge=1),
        "Models with more trainable parameters than this are large.",
        unit="parameters",
    )
    small_model_scale: float = _setting(
        2.0**16, Scale(), "Initial scale of a small model.", unit="scale"
    )
    medium_model_scale: float = _setting(
        2.0**14, Scale(), "Initial scale of a medium model (bounds inclusive).", unit="scale"
    )
    large_model_scale: float = _setting(
        2.0**12, Scale(), "Initial scale of a large model.", unit="scale"
    )
    growth_factor: float = _setting(
        1.2,
        Number(gt=1),
        "Scale multiplier after growth_interval clean steps.",
        unit="factor",
        legacy_env=("GRAD_SCALER_GROWTH_FACTOR",),
    )
    backoff_factor: float = _setting(
        0.5, Number(gt=0, lt=1), "Scale multiplier on an overflowing step.", unit="factor"
    )
    growth_interval: int = _setting(
        2000,
        Integer(ge=1),
        "Clean steps between growths.",
        unit="steps",
        legacy_env=("GRAD_SCALER_GROWTH_INTERVAL",),
    )
    max_scale_threshold: float = _setting(
        100_000.0,
        Scale(),
        "A scale above this is over threshold: one WARNING, and resets if it stays (R2.3).",
        unit="scale",
        legacy_env=("GRAD_SCALER_MAX_SCALE",),
    )
    reset_after_epochs: int = _setting(
        3,
        Integer(ge=1),
        "Consecutive epoch ends over threshold before an automatic reset.",
        unit="epochs",
    )
    reset_fraction: float = _setting(
        0.5,
        Number(gt=0, le=1),
        "A reset sets the scale to this x the initial scale, but at most this x"
        " max_scale_threshold (a run started over the threshold resets below it) and never"
        " above the current scale.",
        unit="factor",
    )
    overflow_halving_batches: int = _setting(
        5,
        Integer(ge=1),
        "Consecutive overflowing steps that halve the scale once more (R2.4).",
        unit="steps",
    )
    auto_reset: bool = _setting(
        True,
        Boolean(),
        "Reset automatically when the scale stays over threshold.",
        legacy_env=("GRAD_SCALER_AUTO_RESET",),
    )
    min_scale: float = _setting(
        1.0, Scale(), "Floor of the scale: it never goes below this.", unit="scale"
    )
    collapse_after: int = _setting(
        10,
        Integer(ge=1),
        "Consecutive overflowing steps at min_scale that raise ScaleCollapseError.",
        unit="steps",
    )
    history_size: int = _setting(
        10, Integer(ge=1), "Anomaly records kept in the statistics.", unit="count"
    )

    def __attrs_post_init__(self) -> None:
        _cross_problems(
            self._section,
            [
                (
                    self.large_model_params < self.small_model_params,
                    "large_model_params: must be >= small_model_params (got"
                    f" large_model_params={self.large_model_params!r},"
                    f" small_model_params={self.small_model_params!r})",
                ),
                *[
                    (
                        getattr(self, name) < self.min_scale,
                        f"{name}: must be >= min_scale (got {name}={getattr(self, name)!r},"
                        f" min_scale={self.min_scale!r})",
                    )
                    for name in (
                        "init_scale",
                        "small_model_scale",
                        "medium_model_scale",
                        "large_model_scale",
                    )
                ],
                (
                    self.max_scale_threshold < self.min_scale,
                    "max_scale_threshold: must be >= min_scale (got"
                    f" max_scale_threshold={self.max_scale_threshold!r},"
                    f" min_scale={self.min_scale!r})",
                ),
            ],
        )

    def initial_scale_for(self, trainable_parameters: int | None) -> float:
        """The initial scale for a model of ``trainable_parameters`` (R2.1)."""
        if self.init_scale_strategy == "fixed" or trainable_parameters is None:
            return self.init_scale
        if trainable_parameters < self.small_model_params:
            return self.small_model_scale
        if trainable_parameters <= self.large_model_params:
            return self.medium_model_scale
        return self.large_model_scale


@attrs.frozen(kw_only=True)
class BinanceConfig:
    """The exchange's published rules for spot market streams, and how close to run to them.

    The defaults are Binance's values (spot, November 2026); another venue with the same
    protocol and other limits sets its own.
    """

    _section: ClassVar[str] = "binance"

    messages_per_second: int = _setting(
        5,
        Integer(ge=1),
        "The exchange's limit of incoming messages per second per connection (requests,"
        " pings and pongs all count); exceeding it gets the connection dropped.",
        unit="count",
    )
    control_reserve: int = _setting(
        2,
        Integer(ge=0),
        "Of those, slots kept free for pings and pongs (which cannot wait): a request is sent"
        " only while fewer than messages_per_second - control_reserve frames went out in the"
        " last 1.1 s.",
        unit="count",
    )
    max_streams: int = _setting(
        1024, Integer(ge=1), "Streams one connection may carry.", unit="count"
    )
    streams_per_request: int = _setting(
        200,
        Integer(ge=1),
        "Streams named in one SUBSCRIBE or UNSUBSCRIBE request (a resubscription is batched).",
        unit="count",
    )
    request_timeout: float = _setting(
        10.0,
        Number(gt=0),
        "A request whose reply has not come this long after it was sent fails.",
        unit="s",
    )
    rotation_age: float = _setting(
        84_600.0,
        Number(gt=0),
        "A connection this old is replaced make-before-break (the exchange drops it at 24 h);"
        " default 23 h 30 min.",
        unit="s",
    )
    rotation_overlap_timeout: float = _setting(
        30.0,
        Number(gt=0),
        "During a rotation, the longest wait for both connections to deliver the same events"
        " before switching over anyway (a quiet stream cannot prove the overlap).",
        unit="s",
    )
    connect_attempts: int = _setting(
        300,
        Integer(ge=1),
        "Connection attempts allowed per connect_window, across every stream of the process"
        " (or of every process that shares the budget).",
        unit="count",
    )
    connect_window: float = _setting(
        300.0, Number(gt=0), "The sliding window of connect_attempts.", unit="s"
    )
    budget: str = _setting(
        "local",
        BudgetUrl(),
        "Where the connect_attempts budget is kept: 'local' (this process),"
        " 'file:///path' (every process on this host, through a ledger file under an fcntl"
        " lock) or 'redis://host:6379/0' (every host behind one address). A shared budget"
        " that cannot reach its store falls back to a small local share and logs"
        " event=budget_fallback.",
    )

    def __attrs_post_init__(self) -> None:
        _cross_problems(
            self._section,
            [
                (
                    self.control_reserve >= self.messages_per_second,
                    "control_reserve: must be < messages_per_second (got control_reserve="
                    f"{self.control_reserve!r}, messages_per_second={self.messages_per_second!r})",
                ),
                (
                    self.streams_per_request > self.max_streams,
                    "streams_per_request: must be <= max_streams (got streams_per_request="
                    f"{self.streams_per_request!r}, max_streams={self.max_streams!r})",
                ),
            ],
        )


@attrs.frozen(kw_only=True)
class RegulatorConfig:
    """The root configuration: one section per machine."""

    connection: ConnectionConfig = attrs.field(factory=ConnectionConfig)
    scaler: ScalerConfig = attrs.field(factory=ScalerConfig)
    binance: BinanceConfig = attrs.field(factory=BinanceConfig)


SECTIONS: dict[str, type[ConnectionConfig] | type[ScalerConfig] | type[BinanceConfig]] = {
    "connection": ConnectionConfig,
    "scaler": ScalerConfig,
    "binance": BinanceConfig,
}


def field_docs() -> list[dict[str, Any]]:
    """Every config field with its section, default, unit, rule, doc and environment names."""
    rows: list[dict[str, Any]] = []
    for section, cls in SECTIONS.items():
        for field in attrs.fields(cls):
            meta = field.metadata
            rows.append(
                {
                    "section": section,
                    "name": field.name,
                    "default": field.default,
                    "unit": meta["unit"],
                    "rule": meta["rule"].describe(),
                    "doc": meta["doc"],
                    "env": [
                        f"REGULATOR_{section.upper()}__{field.name.upper()}",
                        *meta["legacy_env"],
                    ],
                }
            )
    return rows


#: Rules across fields, checked after each field's own rule (documented with the reference).
CROSS_FIELD_RULES: dict[str, tuple[str, ...]] = {
    "connection": ("max_delay >= initial_delay",),
    "scaler": (
        "large_model_params >= small_model_params",
        "init_scale, small_model_scale, medium_model_scale, large_model_scale >= min_scale",
        "max_scale_threshold >= min_scale",
    ),
    "binance": (
        "control_reserve < messages_per_second",
        "streams_per_request <= max_streams",
    ),
}


def _default_text(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value >= 1024 and math.log2(value).is_integer():
        return f"{value:g} (2^{int(math.log2(value))})"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:g}" if isinstance(value, float) else str(value)


def config_reference_markdown() -> str:
    """The configuration reference as Markdown tables, generated from the attrs classes."""
    lines: list[str] = []
    for section in SECTIONS:
        lines += [
            f"### `[{section}]`",
            "",
            "| key | default | unit | rule | environment | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for row in field_docs():
            if row["section"] != section:
                continue
            env = "<br>".join(f"`{name}`" for name in row["env"])
            lines.append(
                f"| `{row['name']}` | {_default_text(row['default'])} | {row['unit'] or '-'}"
                f" | {row['rule']} | {env} | {row['doc']} |"
            )
        lines += ["", "Across fields: " + "; ".join(CROSS_FIELD_RULES[section]) + ".", ""]
    return "\n".join(lines)
