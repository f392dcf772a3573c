"""Field rules for the configuration classes.

One rule object per field is the single source of truth for three things: the attrs validator
(direct construction), the strict cattrs structure hook (loading from TOML and environment), and
the JSON Schema / documentation text. A rule's ``check`` returns a message such as
``must be > 0 (got -1.0)`` or None; ``coerce`` returns the typed value or raises ``ValueError``
with that message.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from ._errors import ConfigError

__all__ = [
    "FLOAT32_MAX",
    "FLOAT32_TINY",
    "Boolean",
    "BudgetUrl",
    "Choice",
    "Integer",
    "Number",
    "Optional",
    "Rule",
    "Scale",
    "check_budget_url",
]

#: The largest finite float32 and the smallest normal one: torch keeps the loss scale in a
#: float32 tensor, so a scale outside [FLOAT32_TINY, FLOAT32_MAX] becomes inf or 0 (NaN weights).
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38


def _fits_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _shown(value: object) -> str:
    """``repr(value)``, shortened: a 400-digit integer need not be printed whole."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def _is_number(value: object) -> bool:
    # bool is an int subclass; `max_delay = true` is a mistake, never 1.0.
    return isinstance(value, int | float) and not isinstance(value, bool)


class Rule:
    """Base rule: subclasses implement ``check``, ``coerce``, ``describe`` and ``schema``."""

    def check(self, value: object) -> str | None:
        raise NotImplementedError

    def coerce(self, value: object) -> Any:
        message = self.check(value)
        if message is not None:
            raise ValueError(message)
        return value

    def parse_env(self, text: str) -> object:
        """Turn an environment string into a value of this rule's type (or raise ValueError)."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    # attrs validator protocol: a rule is directly usable as `validator=`.
    def __call__(self, instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        message = self.check(value)
        if message is not None:
            section = getattr(type(instance), "_section", type(instance).__name__)
            raise ConfigError([f"{section}.{attribute.name}: {message}"])


class Number(Rule):
    """A finite real number with optional bounds."""

    def __init__(
        self,
        *,
        gt: float | None = None,
        ge: float | None = None,
        lt: float | None = None,
        le: float | None = None,
    ) -> None:
        self.gt, self.ge, self.lt, self.le = gt, ge, lt, le

    def _bounds(self) -> list[tuple[str, float]]:
        pairs = [(">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le)]
        return [(op, bound) for op, bound in pairs if bound is not None]

    def check(self, value: object) -> str | None:
        if not _is_number(value):
            return f"must be a number (got {_shown(value)})"
        assert isinstance(value, int | float)
        if isinstance(value, int) and not _fits_float(value):
            # math.isfinite and float() raise OverflowError on such an int; that error would
            # end the section's validation and hide every other problem in it
            return f"must be a finite number within float range (got {_shown(value)})"
        if not math.isfinite(value):
            return f"must be finite (got {value!r})"
        for op, bound in self._bounds():
            ok = {
                ">": value > bound,
                ">=": value >= bound,
                "<": value < bound,
                "<=": value <= bound,
            }[op]
            if not ok:
                return f"must be {op} {bound:g} (got {value!r})"
        return None

    def coerce(self, value: object) -> float:
        super().coerce(value)
        assert isinstance(value, int | float)
        return float(value)

    def parse_env(self, text: str) -> object:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"cannot parse {text!r} as a number") from None

    def describe(self) -> str:
        bounds = " and ".join(f"{op} {bound:g}" for op, bound in self._bounds())
        return f"finite number {bounds}".strip()

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number"}
        keys = {">": "exclusiveMinimum", ">=": "minimum", "<": "exclusiveMaximum", "<=": "maximum"}
        for op, bound in self._bounds():
            out[keys[op]] = bound
        return out


class Scale(Number):
    """A loss scale: a number > 0 that float32 holds as a normal number (no inf, no 0)."""

    def __init__(self) -> None:
        super().__init__(gt=0)

    def check(self, value: object) -> str | None:
        message = super().check(value)
        if message is not None:
            return message
        assert isinstance(value, int | float)
        if not FLOAT32_TINY <= value <= FLOAT32_MAX:
            return (
                f"must be within float32's range {FLOAT32_TINY:g} .. {FLOAT32_MAX:g}"
                f" (got {value!r})"
            )
        return None

    def describe(self) -> str:
        return f"number > 0 within float32's range ({FLOAT32_TINY:g} .. {FLOAT32_MAX:g})"

    def schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": FLOAT32_TINY, "maximum": FLOAT32_MAX}


class Integer(Rule):
    """A whole number (not a float, not a bool) with an optional lower bound."""

    def __init__(self, *, ge: int | None = None) -> None:
        self.ge = ge

    def check(self, value: object) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return f"must be an integer (got {value!r})"
        if self.ge is not None and value < self.ge:
            return f"must be >= {self.ge} (got {value!r})"
        return None

    def parse_env(self, text: str) -> object:
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"cannot parse {text!r} as an integer") from None

    def describe(self) -> str:
        return "integer" + (f" >= {self.ge}" if self.ge is not None else "")

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer"}
        if self.ge is not None:
            out["minimum"] = self.ge
        return out


class Boolean(Rule):
    _TRUE = frozenset({"1", "true", "yes", "on"})
    _FALSE = frozenset({"0", "false", "no", "off"})

    def check(self, value: object) -> str | None:
        if not isinstance(value, bool):
            return f"must be true or false (got {value!r})"
        return None

    def parse_env(self, text: str) -> object:
        lowered = text.strip().lower()
        if lowered in self._TRUE:
            return True
        if lowered in self._FALSE:
            return False
        raise ValueError(f"cannot parse {text!r} as a boolean (use true/false, 1/0, yes/no)")

    def describe(self) -> str:
        return "boolean"

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


class Choice(Rule):
    def __init__(self, choices: Sequence[str]) -> None:
        self.choices = tuple(choices)

    def check(self, value: object) -> str | None:
        if value not in self.choices:
            options = ", ".join(repr(c) for c in self.choices)
            return f"must be one of {options} (got {value!r})"
        return None

    def parse_env(self, text: str) -> object:
        return text.strip()

    def describe(self) -> str:
        return "one of " + ", ".join(f'"{c}"' for c in self.choices)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


class Optional(Rule):
    """``inner`` or None (None has no TOML spelling: leave the key out, or use env ``none``)."""

    def __init__(self, inner: Rule) -> None:
        self.inner = inner

    def check(self, value: object) -> str | None:
        return None if value is None else self.inner.check(value)

    def coerce(self, value: object) -> Any:
        return None if value is None else self.inner.coerce(value)

    def parse_env(self, text: str) -> object:
        if text.strip().lower() in ("", "none", "null", "unset"):
            return None
        return self.inner.parse_env(text)

    def describe(self) -> str:
        return f"{self.inner.describe()}, or unset"

    def schema(self) -> dict[str, Any]:
        inner = self.inner.schema()
        return {**inner, "type": [inner["type"], "null"]}


def check_budget_url(value: object) -> str | None:
    """Why ``value`` is not a budget location, or None: ``local``, ``file:///absolute/path``,
    or ``redis://[user:password@]host[:port][/db]`` (``rediss://`` for TLS). A password is
    never echoed back."""
    if not isinstance(value, str):
        return f"must be a string (got {_shown(value)})"
    if value == "local":
        return None
    from urllib.parse import urlsplit

    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"must be a valid URL: {exc} (got {_shown(_hide_password(value))})"
    shown = _shown(_hide_password(value))
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return f"must not contain control characters (got {shown})"
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return f"must be file:///absolute/path on this host (got {shown})"
        if not parts.path.startswith("/") or parts.path.endswith("/"):
            return f"must name a file by its absolute path, file:///path (got {shown})"
        if parts.query or parts.fragment:
            return f"must have no query or fragment (got {shown})"
        return None
    if scheme in ("redis", "rediss"):
        if not parts.hostname:
            return f"must name a host, redis://host:6379/0 (got {shown})"
        if port is not None and not 1 <= port <= 65535:
            return f"must have a port from 1 to 65535 (got {shown})"
        db = parts.path.strip("/")
        if db and not db.isdigit():
            return f"must name a database by its number, redis://host:6379/0 (got {shown})"
        if parts.fragment:
            return f"must have no fragment (got {shown})"
        return None
    return f"must be 'local', file:///absolute/path or redis://host:6379/0 (got {shown})"


def _hide_password(value: str) -> str:
    head, sep, rest = value.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return value
    userinfo, _, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{head}://{user}{':***' if colon else ''}@{host}"


class BudgetUrl(Rule):
    """Where the connection-attempt budget lives: this process, a host file, or Redis."""

    def check(self, value: object) -> str | None:
        return check_budget_url(value)

    def parse_env(self, text: str) -> object:
        return text.strip()

    def describe(self) -> str:
        return '"local", "file:///absolute/path" or "redis://host:6379/0"'

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^(local|file:///.+|rediss?://.+)$"}
