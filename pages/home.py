"""Home: what each method computes, when to trust it, and how to read the numbers."""

import streamlit as st

from dashboard import home

st.title("Attribution Studio")
st.markdown(
    "Explain a PyTorch model's prediction on **text**, **images** and **tables** with several "
    "attribution methods side by side, edit the input to see what changes, and check every map "
    "against numbers: agreement, faithfulness, stability and sanity.")
home.page_links()
home.first_explanation()
st.header("The methods")
home.methods_table()
st.header("How to read the numbers")
home.reading_guide()
home.store_size()
