"""Loading configuration: defaults, then a TOML file, then environment overrides.

Structuring goes through one strict cattrs converter (``forbid_extra_keys``, detailed
validation, a hook per field built from its rule), so one pass collects every problem of every
field. The error tree cattrs builds is flattened into ``path: rule (got value)`` lines and
raised as one :class:`ConfigError`. Nothing but ``ConfigError`` escapes :func:`load_config`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn, override

from ._config import SECTIONS, RegulatorConfig
from ._errors import ConfigError
from ._rules import Rule

__all__ = ["config_from_mapping", "config_json_schema", "config_to_toml", "load_config"]

ENV_PREFIX = "REGULATOR_"
#: Environment variable naming a config file when ``load_config`` gets no path.
ENV_CONFIG_FILE = "REGULATOR_CONFIG"


def _legacy_env_names() -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {}
    for section, cls in SECTIONS.items():
        for field in attrs.fields(cls):
            for legacy in field.metadata["legacy_env"]:
                names[legacy] = (section, field.name)
    return names


LEGACY_ENV: dict[str, tuple[str, str]] = _legacy_env_names()


def _field_hook(rule: Rule) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _type: Any) -> Any:
        return rule.coerce(value)

    return hook


def _section_hook(cls: type[Any], converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    overrides: dict[str, Any] = {
        field.name: override(struct_hook=_field_hook(field.metadata["rule"]))
        for field in attrs.fields(cls)
    }
    generated = make_dict_structure_fn(
        cls,
        converter,
        _cattrs_forbid_extra_keys=True,
        _cattrs_detailed_validation=True,
        **overrides,
    )

    def hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a table of settings (got {value!r})")
        try:
            return generated(value, type_)
        except ClassValidationError as exc:
            if any(isinstance(inner, ConfigError) for inner in exc.exceptions):
                raise  # __init__ ran: the cross-field rules are already reported
            # Cross-field rules run in __init__, which cattrs never reaches when a field is
            # bad. Check them on the fields that are individually valid, so the user sees every
            # problem in one go.
            valid = {
                f.name: f.metadata["rule"].coerce(value[f.name])
                for f in attrs.fields(cls)
                if f.name in value and f.metadata["rule"].check(value[f.name]) is None
            }
            try:
                cls(**valid)
            except ConfigError as cross:
                raise ClassValidationError(exc.message, [*exc.exceptions, cross], cls) from None
            raise

    return hook


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for cls in SECTIONS.values():
        converter.register_structure_hook(cls, _section_hook(cls, converter))
    root = make_dict_structure_fn(
        RegulatorConfig, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
    )

    def root_hook(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a table of sections (got {value!r})")
        return root(value, type_)

    converter.register_structure_hook(RegulatorConfig, root_hook)
    return converter


_CONVERTER = _make_converter()


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _flatten(exc: BaseException, path: str) -> list[str]:
    """Turn cattrs' error tree into ``path: message`` lines."""
    if isinstance(exc, ConfigError):
        return list(exc.problems)
    if isinstance(exc, ForbiddenExtraKeysError):
        valid = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        prefix = f"{path}." if path else ""
        kind = "section" if exc.cl is RegulatorConfig else "key"
        return [
            f"{prefix}{key}: unknown {kind}{_suggest(key, valid)}"
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, ClassValidationError):
        lines: list[str] = []
        with_notes, without = exc.group_exceptions()
        for inner, note in with_notes:
            lines += _flatten(inner, f"{path}.{note.name}" if path else str(note.name))
        for inner in without:
            lines += _flatten(inner, path)
        return lines
    if isinstance(exc, BaseExceptionGroup):
        return [line for inner in exc.exceptions for line in _flatten(inner, path)]
    return [f"{path or '$'}: {exc}"]


def config_from_mapping(
    data: Mapping[str, Any], *, origins: Mapping[str, str] | None = None
) -> RegulatorConfig:
    """Structure a ``{"connection": {...}, "scaler": {...}}`` mapping, or raise ConfigError.

    ``origins`` maps a ``section.field`` path to where its value came from (an environment
    variable's name); problems with those fields say so.
    """
    try:
        return _CONVERTER.structure(data, RegulatorConfig)
    except ConfigError:
        raise
    except Exception as exc:  # cattrs raises groups; anything else is a bug we still report.
        problems = _flatten(exc, "")
        if origins:
            problems = [
                f"{line} (from {origins[line.split(':', 1)[0]]})"
                if line.split(":", 1)[0] in origins
                else line
                for line in problems
            ]
        raise ConfigError(problems) from None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: invalid TOML: {exc}"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text: {exc.reason}"]) from None


def _looks_like_ours(name: str) -> bool:
    """A name meant for us: our prefix in any case (``REGULATOR_CONNECTION_MAX_RETRIES``, one
    underscore short, would otherwise be ignored silently), ``REGULATOR_CONFIG`` aside."""
    return name.upper().startswith(ENV_PREFIX) and name != ENV_CONFIG_FILE


def _env_overrides(
    env: Mapping[str, str],
) -> tuple[dict[str, dict[str, Any]], dict[str, str], list[str]]:
    values: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    problems: list[str] = []
    known = {
        f"{ENV_PREFIX}{section.upper()}__{field.name.upper()}": (section, field.name)
        for section, cls in SECTIONS.items()
        for field in attrs.fields(cls)
    }
    # Legacy names first, so the explicit REGULATOR_* names win when both are set.
    ordered = sorted(env, key=lambda name: (not name.startswith(tuple(LEGACY_ENV)), name))
    for name in ordered:
        if name in LEGACY_ENV:
            target = LEGACY_ENV[name]
        elif _looks_like_ours(name):
            if name not in known:
                problems.append(
                    f"{name}: unknown environment setting{_suggest(name.upper(), list(known))}"
                )
                continue
            target = known[name]
        else:
            continue
        section, field_name = target
        rule: Rule = attrs.fields_dict(SECTIONS[section])[field_name].metadata["rule"]
        try:
            parsed = rule.parse_env(env[name])
        except ValueError as exc:
            problems.append(f"{section}.{field_name}: {exc} (from {name})")
            continue
        values.setdefault(section, {})[field_name] = parsed
        origins[f"{section}.{field_name}"] = name
    return values, origins, problems


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> RegulatorConfig:
    """Build the effective configuration: defaults, then ``path`` (TOML), then ``env``.

    Args:
        path: a TOML file with ``[connection]`` and/or ``[scaler]`` tables. Missing tables and
            keys take their defaults. When None, the file named by ``REGULATOR_CONFIG`` in
            ``env`` is read, if set.
        env: the environment to read overrides from (default ``os.environ``):
            ``REGULATOR_<SECTION>__<FIELD>`` and the legacy names (``WS_RECONNECT_MAX_RETRIES``,
            ``GRAD_SCALER_MAX_SCALE``, ...).

    Raises:
        ConfigError: listing every problem, each as ``path: rule (got value)``.
    """
    environment = os.environ if env is None else env
    try:
        if path is None and environment.get(ENV_CONFIG_FILE):
            path = environment[ENV_CONFIG_FILE]
        data: dict[str, Any] = _read_toml(Path(path)) if path is not None else {}
        overrides, origins, problems = _env_overrides(environment)
        for section, fields in overrides.items():
            existing = data.get(section)
            if isinstance(existing, dict):
                existing.update(fields)
            elif existing is None:
                data[section] = dict(fields)
        try:
            config = config_from_mapping(data, origins=origins)
        except ConfigError as exc:
            problems += exc.problems
            raise ConfigError(problems) from None
        if problems:
            raise ConfigError(problems)
        return config
    except ConfigError:
        raise
    except Exception as exc:  # pragma: no cover - the property tests hunt for this path
        raise ConfigError([f"$: unexpected {type(exc).__name__}: {exc}"]) from exc


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write non-finite {value!r} as TOML")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"no TOML spelling for {value!r}")


def config_to_toml(config: RegulatorConfig) -> str:
    """The configuration as a TOML document that :func:`load_config` reads back unchanged."""
    lines = ["# regulator configuration (effective values)"]
    for section, cls in SECTIONS.items():
        lines += ["", f"[{section}]"]
        obj = getattr(config, section)
        for field in attrs.fields(cls):
            value = getattr(obj, field.name)
            unit = field.metadata["unit"]
            comment = f"  # {unit}" if unit else ""
            if value is None:
                lines.append(f"# {field.name} is unset")
            else:
                lines.append(f"{field.name} = {_toml_value(value)}{comment}")
    return "\n".join(lines) + "\n"


def config_json_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of the TOML config file."""
    properties: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        fields: dict[str, Any] = {}
        for field in attrs.fields(cls):
            meta = field.metadata
            entry = dict(meta["rule"].schema())
            entry["default"] = field.default
            entry["description"] = meta["doc"] + (f" Unit: {meta['unit']}." if meta["unit"] else "")
            fields[field.name] = entry
        properties[section] = {
            "type": "object",
            "additionalProperties": False,
            "description": (cls.__doc__ or "").strip().splitlines()[0],
            "properties": fields,
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "regulator configuration",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
    }
