"""Tabular page: which features drove this row's prediction, and what if they changed?"""

import streamlit as st

from dashboard import layout
from dashboard.views import get_view

st.title("Tabular")
st.caption("Feature attributions for a classifier or a score (regression, ranking) model over one row "
           "of a table. Change any value in 'What-if' and every panel re-explains the edited row next "
           "to the original.")
layout.modality_page(get_view("tabular"))
