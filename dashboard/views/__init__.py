"""One view per modality: the dashboard's whole UI for text, images, tables (and whatever
modality is added next), behind the small protocol in :mod:`dashboard.views.base`.

Views are found by the adapter's ``modality`` through :func:`get_view`, the way methods are
found by name in the engine's registry. No module outside this package tests a modality.
"""

from __future__ import annotations

from .base import (Apply, ModalityView, PickedInput, get_view, list_views, register_view,
                   unregister_view)
# the built-in views register themselves, in the order pages list them
from . import text  # noqa: F401  isort: skip
from . import image  # noqa: F401  isort: skip
from . import tabular  # noqa: F401  isort: skip
from . import generation  # noqa: F401  isort: skip

__all__ = ["Apply", "ModalityView", "PickedInput", "get_view", "list_views", "register_view",
           "unregister_view"]
