"""Name -> method registry. Adding a method is one file with ``@register_method``."""

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


def _ensure_loaded() -> None:
    from . import methods  # noqa: F401  (importing the package registers every method)


def list_methods(modality: str | None = None) -> list[str]:
    """Names of registered methods, optionally only those that support ``modality``."""
    _ensure_loaded()
    return [n for n, c in _METHODS.items() if modality is None or c.supports(modality)]


def get_method(name: str) -> "Method":
    """An instance of the method registered as ``name``."""
    _ensure_loaded()
    try:
        return _METHODS[name]()
    except KeyError:
        raise ExplainerError(f"unknown method '{name}'; available: {sorted(_METHODS)}") from None

