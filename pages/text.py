"""Text page: which tokens made the model say this, and what if they were gone?"""

import streamlit as st

from cache.models import TEXT_SAMPLES
from dashboard import editors, layout, panels, widgets

st.title("Text")
st.caption("Token attributions for a sequence classifier. Click tokens to delete or mask them and "
           "every panel re-explains the edit next to the original.")

settings = widgets.sidebar_settings("text")
adapter = editors.text_model()
text = editors.text_input(TEXT_SAMPLES)
original = panels.prepare(adapter, text, key=text)
if original is None:
    st.stop()
layout.modality_page("text", adapter, original, lambda: editors.text_counterfactual(adapter, original),
                     editors.apply_text(adapter, original.enc), text, settings)
