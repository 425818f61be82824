"""Name -> method registry. Adding a method is one file with ``@register_method``.

The registry imports no method (timm's pattern): :mod:`explainers.methods` imports each of
its modules, which register themselves, and the engine imports that package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from .errors import ExplainerError

if TYPE_CHECKING:
    from .methods.base import Method

_METHODS: dict[str, type["Method"]] = {}
M = TypeVar("M")


def register_method(cls: M) -> M:
    """Class decorator: register an attribution method under ``cls.name``."""
    name = cls.name  # type: ignore[attr-defined]
    if name in _METHODS and _METHODS[name] is not cls:
        raise RuntimeError(f"method {name!r} registered twice")
    _METHODS[name] = cls  # type: ignore[assignment]
    return cls


def list_methods(modality: str | None = None) -> list[str]:
    """Names of registered methods, optionally only those that support ``modality``."""
    return [n for n, c in _METHODS.items() if modality is None or c.supports(modality)]


def get_method(name: str) -> "Method":
    """An instance of the method registered as ``name``."""
    try:
        return _METHODS[name]()
    except KeyError:
        raise ExplainerError(f"unknown method '{name}'; available: {sorted(_METHODS)}") from None

