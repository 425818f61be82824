"""The layout every modality page shares: model and input pickers, prediction strip, what-if
editor, side-by-side panels, Compare section and downloads. The modality's own parts come
from its view (``dashboard/views/``), so this file never branches on the modality."""

from __future__ import annotations

import streamlit as st

from . import compare, inputs, panels, widgets
from .views import ModalityView


def modality_page(view: ModalityView) -> None:
    """Draw a modality page below its title.

    Args:
        view: the modality's view, from ``dashboard.views.get_view(modality)``.
    """
    status = st.empty()  # "Running … Stop" while the page computes
    with panels.running(status, "preparing the input and the panels", "page"):  # from the first moment
        _draw(view, status)


def _draw(view: ModalityView, status) -> None:
    settings = widgets.sidebar_settings(view)
    settings.status = status
    adapter = view.model()
    picked = view.input_picker(adapter)
    original = inputs.prepare(adapter, picked.raw, key=picked.key, encode=lambda raw: view.encode(adapter, raw))
    if original is None:
        st.stop()
    strip = st.container()  # drawn after the editor, so it can show the edited prediction
    st.subheader("What if…")
    edited = view.what_if(adapter, original)
    with strip:
        target = view.prediction_strip(adapter, original, edited)
        if target is None:
            target = panels.prediction_strip(adapter, original, edited, view.caveat(adapter, original))
    st.subheader("Attributions side by side")
    methods = widgets.method_picker(view.modality, view.default_methods)
    run = panels.explain_panels(view, adapter, original, edited, methods, target, settings)
    view.extra_sections(adapter, original, edited)
    metrics = compare.compare_section(view, adapter, original, run, apply=view.apply_flip(adapter, original),
                                      input_id=picked.input_id, status=status)
    panels.page_downloads(adapter, original, edited, run, metrics, input_id=picked.input_id)
