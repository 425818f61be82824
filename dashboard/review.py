"""The Review page's pieces: collect a batch of inputs, run explain + metrics on each with
progress (with the parameters tuned on the modality's own page), and show and export the
per-method summary (the CLI's ``review`` report) and a per-input table whose rows open on
their page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from explainers import DEFAULT_METHODS, ExplainerError, get_method, list_methods, precision
from explainers.metrics import METRICS
from explainers.metrics.common import review_metric_options
from explainers.review import COLUMNS, DEFAULT_BATCH, Item, review_chunk, review_params, summary_table
from explainers.review.inputs import label_index
from explainers.review.local import with_label
from explainers.review.summary import verdict_caption, verdict_rows

from . import render, review_views
from .widgets import precision_caption, precision_select
from .state import left_values, param_key
from .views import get_view
from .views.base import MAX_REVIEW_INPUTS, REVIEW_SOURCE

MAX_INPUTS = MAX_REVIEW_INPUTS
PAGES = Path(__file__).resolve().parents[1] / "pages"
DEFAULT_METRICS = ("agreement", "faithfulness", "flip")


def collect_inputs(modality: str, adapter) -> list[Item]:
    """The inputs chosen on the page (the modality view draws the choices), as
    :class:`~explainers.review.Item` s: typed or picked inputs carry no label, the rows of an
    uploaded file their label or error (:func:`~dashboard.views.base.read_review_file`)."""
    st.session_state.pop(REVIEW_SOURCE, None)  # set again below by a file's reader
    return [x if isinstance(x, Item) else Item(*x) for x in get_view(modality).review_inputs(adapter)]


def choose(modality: str) -> tuple[list[str], list[str]]:
    """Methods and metrics for the batch."""
    names = list_methods(modality)
    c1, c2, c3 = st.columns([2, 2, 1])
    default = get_view(modality).default_methods or DEFAULT_METHODS
    methods = c1.multiselect("Methods", names, default=[m for m in default if m in names],
                             format_func=lambda n: get_method(n).title, key="rv.methods",
                             help="Each with the parameters last set on the modality's page "
                                  "(its defaults if you have not changed them there).")
    metrics = c2.multiselect("Metrics", list(METRICS), default=list(DEFAULT_METRICS), key="rv.metrics",
                             help="Sanity, stability and robustness re-run the model many times per input.")
    precision_select("rv.precision", c3)  # read by run_batch
    return methods, metrics


def page_params(modality: str, adapter, methods: list[str]) -> dict[str, dict]:
    """The method parameters set on the modality's page when the user left it (values at
    their defaults are not kept, so they are the defaults here too)."""
    left = left_values(modality)  # the modality's page is named after it
    out: dict[str, dict] = {}
    for m in methods:
        for spec in get_method(m).param_specs(adapter):
            key = param_key(m, spec.name)
            if key in left:
                out.setdefault(m, {})[spec.name] = left[key]
    return out


def run_batch(view, adapter, items: list[Item | tuple], methods: list[str], metrics: list[str],
              params: dict[str, dict] | None = None, batch: int = DEFAULT_BATCH) -> list[dict]:
    """Explain the inputs ``batch`` at a time, each micro-batch's model work pooled across
    its inputs (:func:`explainers.review.review_chunk`), with progress (each step touches
    Streamlit, so a widget change stops the batch at once). The lines are the CLI's: an
    unreadable row or unknown label is an error line, a label is mapped to the model's
    class and sets ``true_label`` and ``correct`` as ``review`` does
    (:func:`explainers.review.local.with_label`). Each line also carries the input as the
    view records it (``input``) and the parameters set on the modality's page
    (``review_params``)."""
    policy = st.session_state.get("rv.precision")
    st.caption(precision_caption(policy, adapter.device))
    bar = st.progress(0.0, text="reviewing")
    records: list[dict | None] = []
    todo: list[tuple[int, Item, Any]] = []  # (position, item, truth)
    answers = getattr(adapter, "label_kind", "class") == "answer"  # generation: expected text
    for item in (x if isinstance(x, Item) else Item(*x) for x in items):
        label = item.label if item.label is not None else view.true_label(adapter, item.id, item.raw)
        error = item.error
        if error is None:
            try:
                truth = (None if label in (None, "") else str(label)) if answers else \
                    label_index(label, adapter.labels, item.id)
            except ExplainerError as e:
                error = str(e)
        records.append({"id": item.id, "error": error} if error is not None else None)
        if error is None:
            todo.append((len(records) - 1, item, truth))
    total = len(todo)
    run_params = review_params(methods, params) or None  # the CLI's defaults unless the page sets them
    options = review_metric_options(None)  # a few random orders per input: the dataset-level test
    for start in range(0, total, batch):
        chunk = todo[start:start + batch]

        def step(stage: str, f: float, start=start, n=len(chunk)) -> None:
            done = start + f * n
            bar.progress(min(1.0, done / total), text=f"reviewing {start + 1}-{start + n} of {total}: {stage}")

        with precision.use(policy, adapter.device):
            lines = review_chunk(adapter, [(item.id, item.raw) for _, item, _ in chunk], methods, run_params,
                                 metrics, options, progress=step)
        for (pos, item, truth), line in zip(chunk, lines):
            rec = with_label(line, item.raw, truth, adapter.labels)
            rec["input"] = view.describe_input(adapter, item.id, item.raw)
            if rec.get("correct") is None and view.correct(rec) is not None:  # a view's own rule
                rec["correct"] = view.correct(rec)
            rec["review_params"] = params or {}
            if item.columns is not None:  # the file's slice_by values, as review writes them
                rec["columns"] = item.columns
            records[pos] = rec
        bar.progress(min(1.0, (start + len(chunk)) / total), text=f"reviewed {start + len(chunk)}/{total}")
    bar.empty()
    return records  # type: ignore[return-value]


def run_card(adapter, methods: list[str], metrics: list[str], params: dict[str, dict] | None) -> dict:
    """The report's card of a review run now on the page: the model, the file read (if any),
    the methods with the parameters :func:`run_batch` runs them with, the metrics."""
    return review_views.report_card(adapter, st.session_state.get(REVIEW_SOURCE), methods,
                                    review_params(methods, params), metrics, review_metric_options(None))


def input_frame(records: list[dict]) -> pd.DataFrame:
    """One row per explained input: prediction, truth where known, how much the methods
    disagree (1 - mean pairwise Spearman) and the fewest deletions any method needs to flip."""
    rows = []
    for i, r in enumerate(records):
        if "error" in r:
            continue
        metrics = r.get("metrics") or {}
        rho = (metrics.get("agreement") or {}).get("spearman") or []
        pairs = [v for a, row in enumerate(rho) for b, v in enumerate(row) if a < b and v is not None]
        counts = [b.get("count") for b in ((metrics.get("flip") or {}).get("methods") or {}).values()
                  if b.get("count") is not None]
        truth = r.get("true_label", r.get("expected"))
        prediction = r.get("prediction") or {}
        pred = prediction.get("label")
        if prediction.get("output_kind") == "score" and prediction.get("value") is not None:
            pred = f"{pred} = {float(prediction['value']):.4g}"  # a score: its value, not its name
        rows.append({"#": i, "id": str(r.get("id")), "input": _short(r.get("input")), "predicted": pred,
                     "true label": truth, "correct": r.get("correct"),
                     "disagreement": 1 - sum(pairs) / len(pairs) if pairs else None,
                     "fewest flips": min(counts) if counts else None})
    return pd.DataFrame(rows)


def _short(value: Any, width: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _open(modality: str, query: dict) -> None:
    st.switch_page(str(PAGES / f"{modality}.py"), query_params=query)


def per_input(modality: str, adapter, records: list[dict]) -> None:
    """The per-input table (click a header to sort) and a picker that opens one input on its
    page with the review's methods and parameters."""
    frame = input_frame(records)
    if frame.empty:
        return
    st.subheader("Per input")
    st.dataframe(frame.drop(columns=["#"]), hide_index=True, width="stretch",
                 column_config={"disagreement": st.column_config.NumberColumn(format="%.2f"),
                                "correct": st.column_config.CheckboxColumn()})
    st.caption("Sort by a column (click its header) to start from the inputs the methods disagree on "
               "most, the easiest flips, or the model's errors.")
    view = get_view(modality)
    if not (PAGES / f"{modality}.py").is_file():
        return
    c1, c2 = st.columns([3, 1])
    pick = c1.selectbox("Open an input on its page", list(frame["#"]), key="rv.open",
                        format_func=lambda i: f"{records[i].get('id')}: {_short(records[i].get('input'), 60)}")
    query = view.link_params(records[pick])
    if query is None:
        c2.caption("Uploaded inputs cannot be opened by link.")
        return
    query.update(_params_query(adapter, records[pick]))
    if c2.button("Open", key="rv.open.go", icon=":material/open_in_new:",
                 help="the page shows this input with the review's methods and parameters"):
        _open(modality, query)


def _params_query(adapter, record: dict) -> dict:
    """The review's methods and the parameters each ran with (as resolved in the line, so an
    adaptive ``n_steps="auto"`` opens as auto) as the page's URL parameters; values at the
    page's defaults are left out, as the page's own links do."""
    # the methods picker is bound to the URL by its shown titles (its format_func)
    query: dict[str, Any] = {"methods": [get_method(m).title for m in record.get("attributions") or {}]}
    for m, block in (record.get("attributions") or {}).items():
        ran = block.get("params") or {}
        for spec in get_method(m).param_specs(adapter):
            if spec.name not in ran:
                continue
            v, key = ran[spec.name], param_key(m, spec.name)
            if getattr(spec, "auto", False) and (v == "auto") != (spec.default == "auto"):
                query[f"{key}.auto"] = "true" if v == "auto" else "false"  # the page's auto checkbox
            if v == "auto" or v == spec.default or (isinstance(v, (list, tuple)) and
                                                     list(v) == list(spec.default or [])):
                continue
            query[key] = [str(x) for x in v] if isinstance(v, (list, tuple)) else str(v)
    return query


def summary_frame(summary: dict) -> pd.DataFrame:
    rows = dict(summary.get("methods") or {})
    if summary.get("random"):
        rows["(random control)"] = summary["random"]
    return pd.DataFrame([{"method": name, **{title: vals.get(key) for key, title, _ in COLUMNS}}
                         for name, vals in rows.items()])


def verdict(summary: dict) -> None:
    """The dataset-level verdict: does each method beat the random control on these inputs?"""
    rows = verdict_rows(summary)
    if not rows:
        return
    st.markdown("**Does each method beat the random control on these inputs?** " + "; ".join(
        f"{render.md(r['method'])}: "
        f"{'**beats random**' if r['verdict'] == 'beats random' else 'does **not** beat random'}"
        for r in rows) + ".")
    num = st.column_config.NumberColumn
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={"AOPC - random": num(format="%.3f"), "95% CI low": num(format="%.3f"),
                                "95% CI high": num(format="%.3f"), "effect r": num(format="%.2f"),
                                "p": num(format="%.2g")})
    st.caption(render.md(verdict_caption(summary)) + ". The table below gives the per-input figures.")


def sliced_columns(records: list[dict]) -> list[str]:
    """The file columns the lines carry (``columns``: the page's "Slice the summary by")."""
    return list(dict.fromkeys(str(k) for r in records for k in (r.get("columns") or {})))


def show(records: list[dict], card: dict | None = None) -> None:
    """The summary table, its slices and global view, the failed inputs, and the downloads
    (with ``card``, :func:`~explainers.review.report.run_card`'s, the HTML report too)."""
    params = next((r.get("review_params") for r in records if r.get("review_params")), None)
    if params:
        st.caption("Parameters from the modality's page: " + "; ".join(
            f"{get_method(m).title} " + ", ".join(f"{k}={render.md(v)}" for k, v in vals.items())
            for m, vals in params.items()))
    ig = next((r["attributions"]["integrated_gradients"]["params"] for r in records
               if "integrated_gradients" in (r.get("attributions") or {})), None)
    if ig and ig.get("n_steps") == "auto":
        st.caption(f"Integrated Gradients: n_steps = auto (rtol {ig.get('rtol')}), the review's default "
                   "unless n_steps is set on the modality's page.")
    ran = sorted({r["precision"] for r in records if r.get("precision")})
    if ran:
        st.caption("Model passes: " + ", ".join(ran) + " (each line's `precision`).")
    summary = review_views.review_summary(records, sliced_columns(records))
    verdict(summary)
    pct = st.column_config.NumberColumn(format="percent")
    columns = {"flipped": pct, "beats random": pct,
               "del. AOPC": st.column_config.NumberColumn(format="%.3f"),
               "agreement": st.column_config.NumberColumn(format="%.2f"),
               "seconds": st.column_config.NumberColumn(format="%.3f")}
    st.dataframe(summary_frame(summary), hide_index=True, width="stretch", column_config=columns)
    outcomes = summary.get("outcomes") or {}
    if outcomes:  # reviews start from the errors: the same table over wrong, then correct
        st.caption(f"Accuracy {summary['accuracy']:.1%} on {summary['labelled']} labelled input(s).")
        tabs = st.tabs([f"{name.capitalize()} predictions ({outcomes[name]['inputs']})"
                        for name in ("wrong", "correct")])
        for tab, name in zip(tabs, ("wrong", "correct")):
            with tab:
                if outcomes[name]["inputs"]:
                    verdict(outcomes[name])
                    st.dataframe(summary_frame(outcomes[name]), hide_index=True, width="stretch",
                                 column_config=columns)
                else:
                    st.caption("none")
    tail, notes = summary_table(summary).splitlines()[-2:]
    st.caption(f"{tail}. {notes}.")
    failed = [r for r in records if "error" in r]
    if failed:
        with st.expander(f"{len(failed)} input(s) failed"):
            for r in failed:
                st.markdown(f"- **{render.md(r['id'])}**: {render.md(r['error'])}")
    review_views.slices(summary)
    review_views.global_view(summary.get("global"))
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download JSON lines", "\n".join(json.dumps(r, default=str) for r in records) + "\n",
                       file_name="review.jsonl", mime="application/jsonl", key="rv.dl.jsonl")
    c2.download_button("Download summary", summary_table(summary) + "\n", file_name="review_summary.txt",
                       mime="text/plain", key="rv.dl.summary")
    review_views.report_button(summary, card, records, c3)

