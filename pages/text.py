"""Text page: which tokens made the model say this, and what if they were gone?"""

import streamlit as st

from dashboard import layout
from dashboard.views import get_view

st.title("Text")
st.caption("Word (or word-piece) attributions for a sequence classifier. Click words to delete or "
           "mask them and every panel re-explains the edit next to the original.")
layout.modality_page(get_view("text"))
