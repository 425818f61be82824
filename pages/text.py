"""Text page: which tokens made the model say this, and what if they were gone?"""

import streamlit as st

from cache.models import TEXT_SAMPLES
from dashboard import compare, editors, panels, widgets

st.title("Text")
st.caption("Token attributions for a sequence classifier. Click tokens to delete or mask them and "
           "every panel re-explains the edit next to the original.")

settings = widgets.sidebar_settings("text")
adapter = editors.text_model()
text = editors.text_input(TEXT_SAMPLES)
original = panels.prepare(adapter, text, key=text)
if original is None:
    st.stop()

strip = st.container()
st.subheader("What if…")
edited = editors.text_counterfactual(adapter, original)
with strip:
    target = panels.prediction_strip(adapter, original, edited)

st.subheader("Attributions side by side")
methods = widgets.method_picker("text")
run = panels.explain_panels(adapter, original, edited, methods, target, settings)
metrics = compare.compare_section(adapter, original, run, apply=editors.apply_text(adapter, original.enc),
                                  input_id=text)
panels.page_downloads(adapter, original, edited, run, metrics, input_id=text)
