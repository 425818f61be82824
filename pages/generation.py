"""Generation page: which parts of the prompt made the language model say this?"""

import streamlit as st

from dashboard import layout
from dashboard.views import get_view

st.title("Generation")
st.caption("Prompt-to-output attribution for a causal language model: each unit's share of the "
           "log-probability of the continuation, per target token. Click words to delete them and "
           "see the new continuation beside the old.")
layout.modality_page(get_view("generation"))
