"""The Review page's pieces: collect a batch of inputs, run explain + metrics on each with
progress, and show and export the per-method summary (the CLI's ``review`` report)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from explainers import DEFAULT_METHODS, get_method, list_methods
from explainers.metrics import METRICS
from explainers.review import COLUMNS, review_one, slim, summarize, summary_table

from . import models, render
from .views import get_view

MAX_INPUTS = 200
DEFAULT_METRICS = ("agreement", "faithfulness", "flip")


def collect_inputs(modality: str, adapter) -> list[tuple[Any, Any]]:
    """``(id, raw input)`` pairs chosen on the page (the modality view draws the choices)."""
    return get_view(modality).review_inputs(adapter)


def choose(modality: str) -> tuple[list[str], list[str]]:
    """Methods and metrics for the batch."""
    names = list_methods(modality)
    c1, c2 = st.columns(2)
    methods = c1.multiselect("Methods", names, default=[m for m in DEFAULT_METHODS if m in names],
                             format_func=lambda n: get_method(n).title, key="rv.methods",
                             help="Each with its default parameters (tune them on the modality page).")
    metrics = c2.multiselect("Metrics", list(METRICS), default=list(DEFAULT_METRICS), key="rv.metrics",
                             help="Sanity, stability and robustness re-run the model many times per input.")
    return methods, metrics


def run_batch(adapter, items: list[tuple[Any, Any]], methods: list[str], metrics: list[str]) -> list[dict]:
    """Explain every input with progress (each step touches Streamlit, so a widget change
    stops the batch at once)."""
    bar = st.progress(0.0, text="reviewing")
    records = []
    for i, (ident, raw) in enumerate(items):
        records.append(review_one(adapter, ident, raw, methods, None, metrics, None))
        bar.progress((i + 1) / len(items), text=f"reviewed {i + 1}/{len(items)}")
    bar.empty()
    return records


def summary_frame(summary: dict) -> pd.DataFrame:
    rows = dict(summary.get("methods") or {})
    if summary.get("random"):
        rows["(random control)"] = summary["random"]
    return pd.DataFrame([{"method": name, **{title: vals.get(key) for key, title, _ in COLUMNS}}
                         for name, vals in rows.items()])


def show(records: list[dict]) -> None:
    """The summary table, the failed inputs, and the downloads."""
    summary = summarize(slim(r) for r in records)
    pct = st.column_config.NumberColumn(format="percent")
    st.dataframe(summary_frame(summary), hide_index=True, width="stretch",
                 column_config={"flipped": pct, "beats random": pct,
                                "del. AOPC": st.column_config.NumberColumn(format="%.3f"),
                                "agreement": st.column_config.NumberColumn(format="%.2f"),
                                "seconds": st.column_config.NumberColumn(format="%.3f")})
    tail, notes = summary_table(summary).splitlines()[-2:]
    st.caption(f"{tail}. {notes}.")
    failed = [r for r in records if "error" in r]
    if failed:
        with st.expander(f"{len(failed)} input(s) failed"):
            for r in failed:
                st.markdown(f"- **{render.md(r['id'])}**: {render.md(r['error'])}")
    c1, c2 = st.columns(2)
    c1.download_button("Download JSON lines", "\n".join(json.dumps(r, default=str) for r in records) + "\n",
                       file_name="review.jsonl", mime="application/jsonl", key="rv.dl.jsonl")
    c2.download_button("Download summary", summary_table(summary) + "\n", file_name="review_summary.txt",
                       mime="text/plain", key="rv.dl.summary")


def load(modality: str):
    return models.require_model(*models.get_model(modality, modality))
