"""Page state: widget keys that double as URL query parameters, and per-session memos.

Every widget that defines the view (model, input, methods, parameters, target, edit) is
created with ``bind="query-params"`` (Streamlit >= 1.5x), so its value is mirrored in
``st.query_params`` under its key and a copied link reproduces the view. Values equal to
the widget default are left out of the URL, which keeps links short. Keys are short and
stable: ``methods``, ``target``, ``ig.n_steps``, ``occ.window``, ``gs.baselines`` ...
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any, Callable

import streamlit as st

#: short URL names for the built-in methods; unknown methods use their registered name
ALIASES = {
    "integrated_gradients": "ig",
    "gradient_shap": "gs",
    "occlusion": "occ",
    "saliency": "sal",
    "input_x_gradient": "ixg",
    "feature_ablation": "fa",
}
BIND = "query-params"


def alias(method: str) -> str:
    return ALIASES.get(method, method)


def param_key(method: str, param: str) -> str:
    """Widget key (and URL parameter) of one method parameter, e.g. ``ig.n_steps``."""
    return f"{alias(method)}.{param}"


def digest(*parts: Any) -> str:
    """Short stable hash of JSON-able parts (arrays and bytes are hashed by content)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (bytes, bytearray, memoryview)):
            h.update(bytes(p))
        elif hasattr(p, "tobytes"):
            h.update(p.tobytes())
            h.update(str(getattr(p, "shape", "")).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"|")
    return h.hexdigest()[:16]


def memo(name: str, key: Any, fn: Callable[[], Any], size: int = 16) -> Any:
    """``fn()`` memoised per session under ``name``/``key`` (LRU of ``size`` entries).

    Used for encodings and predictions: a rerun caused by an unrelated widget then costs no
    forward pass. Exceptions are not memoised.
    """
    box = st.session_state.setdefault(f"_memo.{name}", OrderedDict())
    if key in box:
        box.move_to_end(key)
        return box[key]
    value = fn()
    box[key] = value
    while len(box) > size:
        box.popitem(last=False)
    return value


def set_widget(key: str, value: Any) -> None:
    """Set a widget's value from a callback (the only way to change a bound widget)."""
    st.session_state[key] = value
