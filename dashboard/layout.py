"""The layout every modality page shares: prediction strip, what-if editor, side-by-side
panels, Compare section and downloads. A page only says where its input comes from."""

from __future__ import annotations

from typing import Callable

import streamlit as st

from . import compare, panels, widgets
from .panels import Input


def modality_page(modality: str, adapter, original: Input, counterfactual: Callable[[], Input | None],
                  apply: compare.Apply | None, input_id, settings: widgets.Settings) -> None:
    """Draw the page below the input picker.

    Args:
        modality: "text", "image" or "tabular".
        adapter: the loaded model adapter.
        original: the prepared original input.
        counterfactual: draws the what-if editor and returns the edited input (or None).
        apply: loads a Compare "flip" edit into the editor.
        input_id: identifies the input in downloads.
        settings: the sidebar settings.
    """
    strip = st.container()  # drawn after the editor, so it can show the edited prediction
    st.subheader("What if…")
    edited = counterfactual()
    with strip:
        target = panels.prediction_strip(adapter, original, edited)
    st.subheader("Attributions side by side")
    methods = widgets.method_picker(modality)
    run = panels.explain_panels(adapter, original, edited, methods, target, settings)
    metrics = compare.compare_section(adapter, original, run, apply=apply, input_id=input_id)
    panels.page_downloads(adapter, original, edited, run, metrics, input_id=input_id)
