"""Tabular page: which features drove this row's prediction, and what if they changed?"""

import streamlit as st

from dashboard import editors, layout, panels, widgets

st.title("Tabular")
st.caption("Feature attributions for a classifier over one row of a table. Change any value in "
           "'What-if' and every panel re-explains the edited row next to the original.")

settings = widgets.sidebar_settings("tabular")
adapter = editors.tabular_model()
row = editors.tabular_input(adapter)
original = panels.prepare(adapter, row, key=("row", row))
if original is None:
    st.stop()
layout.modality_page("tabular", adapter, original,
                     lambda: editors.tabular_counterfactual(adapter, original, row),
                     editors.apply_tabular(adapter, original.enc, row), row, settings)
