"""Review page: explain a batch of inputs with metrics and compare the methods over all of it."""

import streamlit as st

from dashboard import review
from dashboard.views import get_view, list_views

st.title("Review")
st.caption("An internal model review: every input explained by each method, with agreement, "
           "faithfulness against a random control and flips, summarised per method, starting "
           "with whether each method beats the random control across the inputs. The same "
           "report as `python -m explainers review`.")

modality = st.segmented_control("Modality", list_views(), default="text", key="rv.modality")
if modality is None:
    st.stop()
adapter = review.load(modality)
items = review.collect_inputs(modality, adapter)[: review.MAX_INPUTS]
methods, metrics = review.choose(modality)
st.caption(f"{len(items)} input(s) (at most {review.MAX_INPUTS}).")
key = f"_review.{modality}"  # private: kept across page switches
params = review.page_params(modality, adapter, methods)
if st.button("Run review", type="primary", disabled=not (items and methods), key="rv.run"):
    st.session_state[key] = review.run_batch(get_view(modality), adapter, items, methods, metrics, params)
if st.session_state.get(key):
    review.show(st.session_state[key])
    review.per_input(modality, st.session_state[key])
