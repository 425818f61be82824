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


def enter_page(page: str) -> None:
    """Scope widget state and the URL to the page being shown.

    Bound widgets keep their values across a page switch (``bind="query-params"`` wins over
    Streamlit's page scope), so without this the Image page would inherit the Text page's
    ``ig.baselines=pad`` (invalid there) or its explained class. On a switch to another page
    every widget value is dropped, except those the arriving URL names (a link that carries
    parameters keeps them). The values of the page left behind that its URL held are kept
    aside, so coming back restores that page as it was. Private keys (``_memo.*``,
    ``_metrics``) are caches keyed by content and stay. Call it once per run, before the
    page draws any widget.
    """
    bound = st.session_state.setdefault("_page_bound", {})   # page -> keys its URL has held
    kept = st.session_state.setdefault("_page_values", {})   # page -> their values when left
    urls = st.session_state.setdefault("_page_urls", {})     # page -> its last URL parameters
    previous = st.session_state.get("_page")
    st.session_state["_page"] = page
    if previous is not None and previous != page:
        arriving = set(st.query_params)
        kept[previous] = {k: st.session_state[k] for k in bound.get(previous, ()) if k in st.session_state}
        for key in [k for k in st.session_state if isinstance(k, str) and not k.startswith("_")]:
            if key not in arriving:
                del st.session_state[key]
        if not arriving:
            for key, value in kept.get(page, {}).items():
                st.session_state[key] = value
            if urls.get(page):  # so the address bar is a link to the restored view at once
                st.query_params.from_dict(urls[page])
    # Only bound widgets appear in the URL, and their values may be set from code (buttons
    # and uploaders may not), so these are the keys that are safe to restore.
    bound.setdefault(page, set()).update(st.query_params)
    urls[page] = {k: st.query_params.get_all(k) for k in st.query_params}


def left_values(page: str) -> dict:
    """The URL-bound widget values ``page`` had when the user last left it (empty if never
    left, or at their defaults). Pages are named by their URL path ("text", "image"...)."""
    return dict((st.session_state.get("_page_values") or {}).get(page, {}))
