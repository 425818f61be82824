"""Tabular page: which features drove this row's prediction, and what if they changed?"""

import streamlit as st

from dashboard import compare, editors, panels, widgets

st.title("Tabular")
st.caption("Feature attributions for a classifier over one row of a table. Change any value in "
           "'What-if' and every panel re-explains the edited row next to the original.")

settings = widgets.sidebar_settings("tabular")
adapter = editors.tabular_model()
row = editors.tabular_input(adapter)
original = panels.prepare(adapter, row, key=("row", row))
if original is None:
    st.stop()

strip = st.container()
st.subheader("What if…")
edited = editors.tabular_counterfactual(adapter, original, row)
with strip:
    target = panels.prediction_strip(adapter, original, edited)

st.subheader("Attributions side by side")
methods = widgets.method_picker("tabular")
run = panels.explain_panels(adapter, original, edited, methods, target, settings)
metrics = compare.compare_section(adapter, original, run,
                                  apply=editors.apply_tabular(adapter, original.enc, row), input_id=row)
panels.page_downloads(adapter, original, edited, run, metrics, input_id=row)
