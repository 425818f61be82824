"""Typed parameter declarations for attribution methods.

Each method declares its parameters as data (:class:`ParamSpec`). The dashboard builds its
widgets from these declarations, the CLI parses ``--param method.name=value`` with them, and
:func:`resolve_params` validates every call, so a value out of range is refused before any
forward pass runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .errors import ExplainerError

#: the value of a parameter declared with ``auto=True`` when the method chooses it itself
AUTO = "auto"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a method.

    Args:
        name: keyword passed to the method's ``explain``.
        type: one of ``"int"``, ``"float"``, ``"choice"``, ``"multichoice"``.
        default: value used when the caller gives none.
        help: one line shown next to the widget.
        min, max: inclusive bounds for numbers.
        choices: allowed values for (multi)choice parameters.
        cost: True when the value scales the number of forward passes (for cost estimates).
        auto: an ``"int"`` parameter that also accepts the string ``"auto"`` (the method
            chooses the value itself, e.g. adaptive IG steps).
    """

    name: str
    type: str
    default: Any
    help: str
    min: float | None = None
    max: float | None = None
    choices: Sequence[str] = field(default_factory=tuple)
    cost: bool = False
    auto: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["choices"] = list(self.choices)
        return d

    def coerce(self, value: Any) -> Any:
        """Convert ``value`` (possibly a CLI string) to this parameter's type and check it."""
        label = f"parameter '{self.name}'"
        if self.auto and isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        try:
            if self.type == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                value = int(value)
            elif self.type == "float":
                value = float(value)
            elif self.type == "choice":
                value = str(value)
            elif self.type == "multichoice":
                if isinstance(value, str):
                    value = [v.strip() for v in value.split("+") if v.strip()]
                value = [str(v) for v in value]
        except (TypeError, ValueError):
            also = " or 'auto'" if self.auto else ""
            raise ExplainerError(f"{label} must be of type {self.type}{also}, got {value!r}") from None
        if self.type in ("int", "float"):
            if value != value:  # NaN
                raise ExplainerError(f"{label} must be a number, got NaN")
            if self.min is not None and value < self.min:
                raise ExplainerError(f"{label} must be >= {self.min}, got {value}")
            if self.max is not None and value > self.max:
                raise ExplainerError(f"{label} must be <= {self.max}, got {value}")
        elif self.type == "choice":
            if value not in self.choices:
                raise ExplainerError(f"{label} must be one of {list(self.choices)}, got {value!r}")
        elif self.type == "multichoice":
            if not value:
                raise ExplainerError(f"{label} needs at least one of {list(self.choices)}")
            bad = [v for v in value if v not in self.choices]
            if bad:
                raise ExplainerError(f"{label} accepts {list(self.choices)}, got {bad}")
        return value


def resolve_params(specs: Sequence[ParamSpec], given: dict | None, method: str) -> dict:
    """Fill defaults and validate ``given`` against ``specs``.

    Raises:
        ExplainerError: for an unknown parameter name or a value out of range.
    """
    given = dict(given or {})
    by_name = {s.name: s for s in specs}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise ExplainerError(
            f"unknown parameter(s) {unknown} for method '{method}'; known: {sorted(by_name)}"
        )
    return {s.name: s.coerce(given.get(s.name, s.default)) for s in specs}
