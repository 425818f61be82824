"""The Review page's dataset views: the summary with its slices and global view (the CLI's
``review`` result), the slices as one table per slicing, the global view (a ranked table;
for tables also a beeswarm of the per-input attributions), and the self-contained HTML
report (``review --report``'s document) as a download."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import altair as alt
import pandas as pd
import streamlit as st

from explainers.review import COLUMNS, InputSource, ReviewSummary, slim, summarize
from explainers.review.overview import method_pairs
from explainers.review.report import model_card, report_html, run_card, scan
from explainers.review.slices import Views, slicing_title

from . import render

#: how the report names the engine of a review run on the page
ENGINE = "local (dashboard Review page)"


def review_summary(records: Sequence[dict], columns: Sequence[str] = ()) -> ReviewSummary:
    """What ``run_review`` returns for these lines: the summary, its ``slices`` and
    ``global`` view (:class:`explainers.review.slices.Views`)."""
    summary = ReviewSummary(summarize(slim(r) for r in records))
    summary.update(Views(columns).feed(records).result())
    return summary


def report_card(adapter, source: InputSource | None, methods: Sequence[str], params: Mapping | None,
                metrics: Sequence[str], metric_params: Mapping | None) -> dict:
    """The report's card (model, data, settings, versions) for a review run on the page."""
    return run_card(model_card(adapter), source=source, methods=methods, params=params, metrics=metrics,
                    metric_params=metric_params, explain="predicted", unit=None, limit=None, engine=ENGINE,
                    out=None)


def report(summary: Mapping, card: Mapping, records: Sequence[dict]) -> str:
    """``review --report``'s HTML document for the page's review."""
    return report_html(summary, card, scan(iter(records)))


def report_button(summary: Mapping, card: Mapping | None, records: Sequence[dict], column=st) -> None:
    if card is None:
        return
    column.download_button("Download report", report(summary, card, records), file_name="review_report.html",
                           mime="text/html", key="rv.dl.report", icon=":material/description:",
                           help="One self-contained HTML file (no external requests): the model, data and "
                                "settings, the tables, slices, global view and the inputs worth a look, "
                                "as `review --report` writes it.")


def slice_frame(parts: Sequence[Mapping]) -> pd.DataFrame:
    """One row per slice and method: the slice's inputs and accuracy and the summary's columns."""
    return pd.DataFrame([{"slice": p["value"], "method": m, "inputs": p["inputs"], "accuracy": p.get("accuracy"),
                          **{title: vals.get(key) for key, title, _ in COLUMNS}}
                         for p in parts for m, vals in (p.get("methods") or {}).items()])


def slices(summary: Mapping) -> None:
    """The summary per slice, one slicing at a time (a select box)."""
    found = summary.get("slices") or {}
    if not found:
        return
    st.subheader("Slices")
    slicing = st.selectbox("Slice by", list(found), format_func=slicing_title, key="rv.slicing")
    pct = st.column_config.NumberColumn(format="percent")
    num = st.column_config.NumberColumn
    st.dataframe(slice_frame(found[slicing]), hide_index=True, width="stretch",
                 column_config={"accuracy": pct, "flipped": pct, "beats random": pct,
                                "del. AOPC": num(format="%.3f"), "agreement": num(format="%.2f"),
                                "seconds": num(format="%.3f")})
    st.caption("The same table per slice of the inputs (a slicing with one slice is left out).")


def global_frame(view: Mapping) -> pd.DataFrame:
    """The global view as a ranked table: per feature the inputs it rests on and each
    method's mean |attribution| and mean attribution."""
    rows = []
    for rank, r in enumerate(view["features"], 1):
        row: dict[str, Any] = {"rank": rank, "feature": r["feature"], "inputs": r["inputs"]}
        for m, vals in r["methods"].items():
            row[f"{m} mean |attr|"] = vals["mean_abs"]
            row[f"{m} mean"] = vals["mean"]
        rows.append(row)
    return pd.DataFrame(rows)


def beeswarm(view: Mapping, method: str) -> alt.Chart | None:
    """One dot per input and feature (the kept inputs), features in the table's order,
    jittered vertically: shap's beeswarm for the review's attributions."""
    points = view.get("points") or {}
    columns = points.get("columns") or []
    shown = [r["feature"] for r in view["features"]]
    rows = [{"feature": f, "attribution": s} for scores in (points.get("methods") or {}).get(method, [])
            for f, s in zip(columns, scores) if f in shown]
    if not rows:
        return None
    return (alt.Chart(pd.DataFrame(rows)).mark_circle(size=18, opacity=0.6)
            .encode(x=alt.X("attribution:Q", title=f"{method} attribution"),
                    y=alt.Y("feature:N", sort=shown, title=None),
                    yOffset=alt.YOffset("jitter:Q", title=None),
                    color=alt.condition("datum.attribution >= 0", alt.value("#c0392b"), alt.value("#2e6da4")),
                    tooltip=["feature", alt.Tooltip("attribution:Q", format=".4g")])
            .transform_calculate(jitter="random()").properties(height=alt.Step(18)))


def global_view(view: Mapping | None) -> None:
    """What drives the model over the inputs: the ranked table, how far the methods agree
    on it, and (tables) the beeswarm of one method."""
    if not view or not view.get("features"):
        return
    st.subheader("Global view: what drives the model")
    what = (f"words seen in at least {view['min_inputs']} inputs (lower-cased; a word's attribution in one "
            "input is the sum over its occurrences)" if view["modality"] == "text" else "columns")
    st.caption(f"Over {view['inputs']} input(s), {what}, ranked by the methods' mean |attribution| "
               "(each method scaled to its largest).")
    num = st.column_config.NumberColumn(format="%.4g")
    frame = global_frame(view)
    st.dataframe(frame, hide_index=True, width="stretch",
                 column_config={c: num for c in frame.columns if c.endswith(("|attr|", " mean"))})
    pairs = [f"{render.md(a)} vs {render.md(b)}: Spearman {'-' if rho is None else f'{rho:+.2f}'}, "
             f"top-{view['agreement']['k']} overlap {'-' if o is None else f'{o:.0%}'}"
             for a, b, rho, o in method_pairs(view.get("agreement") or {})]
    if pairs:
        st.caption("Do the methods agree on the ranking? " + "; ".join(pairs) + ".")
    if view.get("points"):
        methods = list(view["points"]["methods"])
        method = st.selectbox("Beeswarm of", methods, key="rv.swarm") if len(methods) > 1 else methods[0]
        chart = beeswarm(view, method)
        if chart is not None:
            st.altair_chart(chart, width="stretch")
            st.caption(f"One dot per input ({len(view['points']['methods'][method])} kept) and column: "
                       "red pushes the explained output up, blue down.")
