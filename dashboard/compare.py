"""The Compare section (issue 4's UI): numbers behind "which map should I believe?".

Renders the ``metrics`` block of the engine (``explainers.metrics.compute``) for the
original input and the methods that ran in the panels:

* agreement matrix (Spearman / Kendall / top-k Jaccard / sign) and the features the methods
  disagree on most;
* faithfulness: deletion and insertion curves per method against the random control, and a
  table of AOPC, insertion AUC, comprehensiveness, sufficiency and beats_random;
* flips: deletions needed to change the prediction, with a button that loads the edit into
  the counterfactual editor;
* stability: IG convergence over n_steps (with the tolerance and the suggested n_steps),
  GradientSHAP seed intervals, baseline sensitivity;
* sanity (model randomization) and robustness (infidelity, max-sensitivity), on demand.

Results are kept per session, keyed by model, input, target, methods, parameters and the
options each metric depends on, so reruns caused by other widgets cost nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainers import ExplainerError, get_method, metrics, precision

from . import export, render
from .panels import metric_eta, running, store
from .types import Apply, Caveat, Input, PanelRun
from .state import digest, set_widget
from .widgets import DEFAULT_MAX_COST, precision_caption

#: above this many features the metrics that re-predict (faithfulness, flips, ...) wait for a click
AUTO_MAX_FEATURES = 100
STATS = {"spearman": "Spearman ρ", "kendall": "Kendall τ", "topk_jaccard": "top-k Jaccard",
         "sign_agreement": "sign agreement"}
#: the options each metric depends on (part of its session cache key)
DEPENDS = {"agreement": ("k",), "faithfulness": ("baseline", "perturbation"),
           "flip": ("baseline", "perturbation", "threshold"),
           "stability": ("tolerance", "ig_steps", "seeds"), "sanity": (), "robustness": ("baseline",)}
BUTTONS = {"faithfulness": "Run faithfulness", "flip": "Find flips", "stability": "Run stability",
           "sanity": "Run sanity checks", "robustness": "Run robustness"}
BUTTON_HELP = {"faithfulness": "deletion/insertion curves against a random control",
               "flip": "fewest deletions that change the prediction",
               "stability": "IG over n_steps, GradientSHAP over seeds, each method over every baseline",
               "sanity": "randomize the model layer by layer (a copy) and re-run every method",
               "robustness": "infidelity and max-sensitivity (re-runs each method on noisy inputs)"}


def metrics_engine():
    """``explainers.metrics`` if it is installed and complete, else None."""
    return metrics if hasattr(metrics, "compute") else None


def unique_labels(labels: Sequence[str]) -> list[str]:
    """Feature labels made unique for chart axes: a repeated token gets its position."""
    labels = [str(x) for x in labels]
    counts: dict[str, int] = {}
    for x in labels:
        counts[x] = counts.get(x, 0) + 1
    return [f"{x} (#{i + 1})" if counts[x] > 1 else x for i, x in enumerate(labels)]


PALETTE = ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]


def _colours(names: Sequence[str], grey: str | None = None) -> alt.Scale:
    """The same colour for a method in every chart; the random control in grey."""
    names = [n for n in names if n != grey]
    domain = list(names) + ([grey] if grey else [])
    return alt.Scale(domain=domain, range=[PALETTE[i % len(PALETTE)] for i in range(len(names))]
                     + (["#7f7f7f"] if grey else []))


def _title(m: str) -> str:
    try:
        return get_method(m).title
    except ExplainerError:
        return m


def _cache() -> OrderedDict:
    return st.session_state.setdefault("_metrics", OrderedDict())


def _remember(key: str, value) -> None:
    box = _cache()
    box[key] = value
    box.move_to_end(key)
    while len(box) > 64:
        box.popitem(last=False)


# == compute ===================================================================================
def _compute(engine, adapter, inp: Input, run: PanelRun, names: list[str], options: dict,
             base_key: str, status=None) -> tuple[dict, dict[str, str]]:
    """The metrics in ``names`` (from the session cache or the engine) and errors by name."""
    out, errors, todo = {}, {}, []
    keys = {n: digest(base_key, n, {o: options.get(o) for o in DEPENDS.get(n, ())}) for n in names}
    for n in names:
        if keys[n] in _cache():
            out[n] = _cache()[keys[n]]
        else:
            todo.append(n)
    if not todo:
        return out, errors
    expl = export.explanation(adapter, inp, {m: run.original[m] for m in run.ok}, run.target)
    bar = st.progress(0.0, text="computing metrics")

    def progress(metric: str, fraction: float) -> None:
        # Touching Streamlit lets a widget change interrupt the computation.
        bar.progress(float(min(max(fraction, 0.0), 1.0)), text=f"{metric}: {fraction:.0%}")

    def attempt(batch: list[str]) -> None:
        block = engine.compute(adapter, inp.enc, expl, batch, options,
                               params={m: run.params[m] for m in run.ok}, store=store(),
                               progress=progress)
        for n in batch:
            out[n] = block.get(n)
            _remember(keys[n], out[n])

    with running(status, "metrics (" + ", ".join(todo) + ")", "metrics"), \
            precision.use(st.session_state.get("precision"), adapter.device):
        try:  # one call, so faithfulness and flip share their re-predictions
            attempt(todo)
        except Exception:  # noqa: BLE001  (retried one by one below, to say which metric failed)
            for n in todo:
                try:
                    attempt([n])
                except ExplainerError as e:
                    errors[n] = str(e)
                except Exception as e:  # noqa: BLE001
                    errors[n] = f"{n} failed ({type(e).__name__})."
    bar.empty()
    return out, errors


def _costs(engine, adapter, inp: Input, run: PanelRun, names: list[str], options: dict) -> dict[str, int]:
    """Upper bounds of forward passes per metric; empty if the engine cannot estimate them."""
    if not names or not hasattr(engine, "metric_costs"):
        return {}
    try:
        return engine.metric_costs(adapter, inp.enc, names, {m: run.params[m] for m in run.ok}, options)
    except ExplainerError:
        return {}


# == section =================================================================================
def compare_section(view, adapter, inp: Input, run: PanelRun, apply: Apply | None = None,
                    input_id=None, status=None) -> dict:
    """Draw the Compare section; returns the metrics shown (for the review download).

    Args:
        view: the modality's view: which metrics run without a click (``auto_metrics``),
            what the features are called, how the per-feature disagreement is drawn.
        adapter: the loaded model adapter.
        inp: the original input (metrics are computed on it).
        run: what the panels computed.
        apply: loads a flip into the what-if editor (None: no "Apply" buttons).
        input_id: identifies the input in the review download.
        status: the page's "Running … Stop" placeholder.
    """
    st.header("Compare methods", anchor="compare")
    engine = metrics_engine()
    if engine is None:
        st.info("Compare: the metrics engine is not available in this installation "
                "(`explainers.metrics` has no `compute`), so agreement, faithfulness, flips, "
                "stability and sanity cannot be shown.")
        return {}
    if not run.ok:
        st.info("Compare: no method produced an attribution yet (see the panels above).")
        return {}
    n = inp.enc.n_features
    st.caption(f"Metrics on the original input, over {n} interpretable {view.unit(adapter)}, for the methods "
               f"that ran: {', '.join(_title(m) for m in run.ok)}. Explaining "
               f"{'class ' if getattr(adapter, 'output_kind', 'softmax') == 'softmax' else ''}"
               f"*{render.md(adapter.label(run.target))}*. "
               + precision_caption(st.session_state.get("precision"), adapter.device))

    verdict_slot = st.container()  # filled once the metrics are in, above the buttons and tabs
    button_row = st.container()
    tabs = st.tabs(["Agreement", "Faithfulness", "Flips", "Stability", "Sanity & robustness"])
    # Each metric's options sit at the top of its tab; the results are drawn below them.
    with tabs[0]:
        c1, c2, c3 = st.columns([3, 2, 2])
        stat = c1.radio("Statistic", list(STATS), format_func=STATS.get, horizontal=True, key="cmp.stat")
        k = (c2.slider("top-k size (k)", 1, n, max(1, min(n, round(0.1 * n) or 1)), key="cmp.k",
                       help=engine.OPTION_HELP.get("k", "")) if n > 1 else 1)
        shown = (c3.slider("Disagreements shown", 1, min(n, 50), min(n, 10), key="cmp.top",
                           help="the features the methods disagree on most, largest first")
                 if n > 1 else 1)
    kinds = list(adapter.baseline_kinds)
    with tabs[1]:
        c1, c2 = st.columns(2)
        perturbations = list(getattr(adapter, "edit_perturbations", ()) or ()) + ["baseline"]
        perturbation = c1.selectbox(
            "How features are removed (faithfulness, flips)", perturbations, key="cmp.perturb",
            help=engine.OPTION_HELP.get("perturbation", ""),
            format_func={"delete": "deleted from the input", "mask": "replaced by [MASK]",
                         "baseline": "replaced by the baseline"}.get)
        baseline = c2.selectbox(
            "Removal baseline (baseline removal, robustness)", kinds, key="cmp.baseline",
            index=kinds.index(adapter.default_baselines[0]) if adapter.default_baselines else 0,
            help=engine.OPTION_HELP.get("baseline", ""))
    threshold = _threshold_input(adapter, run.target, tabs[2])
    with tabs[3]:
        c1, c2, c3 = st.columns(3)
        tolerance = c1.number_input("IG tolerance (relative |δ|)", min_value=0.001, max_value=10.0, value=0.05,
                                    step=0.01, format="%.3f", key="cmp.tol",
                                    help=engine.OPTION_HELP.get("tolerance", ""))
        ig_steps = c2.text_input("IG n_steps tried", "8,16,32,64,128", key="cmp.steps",
                                 help=engine.OPTION_HELP.get("ig_steps", ""))
        seeds = c3.number_input("GradientSHAP seeds", 2, 100, 5, key="cmp.seeds",
                                help=engine.OPTION_HELP.get("seeds", ""))
    options = {"k": int(k), "baseline": baseline, "perturbation": perturbation, "tolerance": float(tolerance),
               "ig_steps": ig_steps, "seeds": int(seeds), "threshold": threshold}

    base_key = digest(adapter.name, id(adapter), inp.enc.key, run.target, run.ok,
                      {m: run.original[m].params for m in run.ok},
                      precision.resolve(st.session_state.get("precision"), adapter.device))
    auto = [m for m in view.auto_metrics if m in engine.METRICS]
    if n > AUTO_MAX_FEATURES and auto != ["agreement"]:  # hundreds of long re-predictions
        auto = [m for m in auto if m == "agreement"]
        st.caption(f"{n} {view.unit(adapter)}: over {AUTO_MAX_FEATURES}, only agreement runs by itself; "
                   "the other metrics wait for their buttons.")
    on_demand = [m for m in engine.METRICS if m not in auto and m in BUTTONS]
    # Already computed on-demand metrics stay visible while their inputs are unchanged.
    cached = [m for m in on_demand
              if digest(base_key, m, {o: options.get(o) for o in DEPENDS.get(m, ())}) in _cache()]
    clicked = []
    cap = int(st.session_state.get("cap", DEFAULT_MAX_COST))
    costs = _costs(engine, adapter, inp, run, on_demand, options)
    with button_row:
        cols = st.columns(len(on_demand) + 1) if on_demand else []
        for col, m in zip(cols, on_demand):
            cost = costs.get(m)
            over = cost is not None and cost > cap
            note = "" if cost is None else (f" (≤ {cost:,} forward passes{metric_eta(adapter, inp.enc, cost)}"
                                            f"{', over the cap' if over else ''})")
            if col.button(BUTTONS[m], key=f"cmp.run.{m}", disabled=m in cached or over,
                          help=BUTTON_HELP.get(m, "") + note):
                clicked.append(m)
        if on_demand:
            st.caption("The buttons start metrics that re-run the model hundreds of times (the upper "
                       "bound of forward passes is in each button's tooltip; those over the sidebar "
                       "cap are disabled); results are kept while the input, target and parameters "
                       "stay the same.")
        metrics, errors = _compute(engine, adapter, inp, run, auto + cached + clicked, options, base_key,
                                   status)
    with verdict_slot:
        _verdicts(run.ok, metrics, view.caveat(adapter, inp))

    sections = [
        (tabs[0], ["agreement"], lambda: _agreement(view, adapter, inp, metrics["agreement"], stat, shown)),
        (tabs[1], ["faithfulness"], lambda: _faithfulness(metrics["faithfulness"])),
        (tabs[2], ["flip"], lambda: _flips(metrics["flip"], apply, metrics.get("faithfulness"), baseline)),
        (tabs[3], ["stability"], lambda: _stability(metrics["stability"], run)),
        (tabs[4], ["sanity", "robustness"], lambda: _sanity_robustness(metrics)),
    ]
    for tab, names, draw in sections:
        with tab:
            for name in names:
                if name in errors:
                    st.error(f"{name}: {render.md(errors[name])}")
            present = [x for x in names if metrics.get(x)]
            if not present:
                missing = [BUTTONS.get(x, x) for x in names if x not in errors]
                if missing:
                    st.info("Not computed yet: press " + " / ".join(f"'{m}'" for m in missing)
                            + " above the tabs.")
                continue
            try:
                draw()
            except Exception as e:  # noqa: BLE001  (a malformed block must not break the page)
                st.warning(f"Could not draw {', '.join(present)} ({type(e).__name__}).")

    if metrics:
        st.download_button(
            "Download review (metrics JSON)", key="dl.review", on_click="ignore", icon=":material/download:",
            data=lambda: export.review_json(adapter, inp, run.target, run.ok,
                                            {m: run.original[m].params for m in run.ok}, metrics, input_id,
                                            precision.resolve(st.session_state.get("precision"), adapter.device)),
            file_name=f"review_{adapter.modality}.json", mime="application/json")
    return metrics


def _threshold_input(adapter, target: int, tab) -> float | None:
    """Score and sigmoid models: the threshold a flip must cross, at the top of the Flips tab
    (default: the median of the model's scores on its data, or 0.5 for a sigmoid). None for
    a softmax classifier, whose flip is a change of class."""
    kind = getattr(adapter, "output_kind", "softmax")
    if kind == "softmax" or hasattr(adapter, "flip_rule"):  # the adapter's own flip (generation)
        return None
    if kind == "sigmoid":
        default, note = 0.5, "0.5"
    else:
        ref = adapter.reference_outputs()
        if ref is None:
            default, note = None, "the baseline's score"
        else:
            default, note = float(np.median(ref[:, target])), "the median of the model's scores on its data"
    with tab:
        value = st.number_input(f"Flip threshold for {render.md(adapter.label(target))}", value=default,
                                format="%.4g", key=f"cmp.threshold.{target}",
                                help=f"a flip is the fewest removals that move the output across this value "
                                     f"(default: {note})")
    # the default itself is left to the engine, which then reports where it comes from
    return None if value is None or (default is not None and value == default) else float(value)


# == verdicts ==================================================================================
#: what one step of a flip is called, by the removal that was scored
STEP = {"delete": "deletion", "mask": "masked word", "baseline": "feature set to the baseline"}


def p_text(f: dict) -> str:
    """A method's permutation-test p-value with its resolution and the random orders it used."""
    out = f"p = {f['p_value']:.2g}"
    if isinstance(f.get("p_resolution"), (int, float)):
        out += f" (resolution {f['p_resolution']:.2g}"
        out += f", {f['orders_used']} random orders)" if f.get("orders_used") is not None else ")"
    return out


def verdict(method: str, metrics: dict) -> list[str]:
    """One short clause per metric computed for ``method`` on this input, from the numbers
    the tabs below show (nothing is computed here)."""
    parts = []
    faith = metrics.get("faithfulness") or {}
    f, r = (faith.get("methods") or {}).get(method), faith.get("random") or {}
    if f and f.get("deletion_aopc") is not None and r.get("deletion_aopc") is not None:
        beats = {True: "beats", False: "does **not** beat"}.get(f.get("beats_random"), "has no verdict against")
        p = f.get("p_value")
        parts.append(f"{beats} the random control (deletion AOPC {f['deletion_aopc']:.3f} vs "
                     f"{r['deletion_aopc']:.3f}" + (f", {p_text(f)}" if isinstance(p, (int, float)) else "") + ")")
    flips = metrics.get("flip") or {}
    fl, fr = (flips.get("methods") or {}).get(method), flips.get("random") or {}
    if fl is not None:
        rc = fr.get("count")
        ctrl = f"random: {rc}" if rc is not None else "random: none"
        step = STEP.get(flips.get("perturbation"), "removal")
        parts.append(f"flips the prediction with {fl['count']} {step}(s) ({ctrl})" if fl.get("count") is not None
                     else f"no flip in its order ({ctrl})")
    agree = metrics.get("agreement") or {}
    names, rho = agree.get("methods") or [], agree.get("spearman") or []
    if method in names and len(names) > 1 and rho:
        i = names.index(method)
        others = [rho[i][j] for j in range(len(names)) if j != i and rho[i][j] is not None]
        if others:
            parts.append(f"mean Spearman ρ {float(np.mean(others)):+.2f} with the other maps")
    san = ((metrics.get("sanity") or {}).get("methods") or {}).get(method)
    if san is not None:
        parts.append("**fails** the randomization check" if san.get("independent_of_model")
                     else "passes the randomization check")
    return parts


def _verdicts(methods: Sequence[str], metrics: dict, caveat: Caveat | None = None) -> None:
    """One line per method; an input the model cannot read (``caveat``) is said above the
    lines and in each of them, so no line reads as a plain verdict on the words."""
    qualifier = f" *(on placeholders: {render.md(caveat.short)})*" if caveat else ""
    lines = [f"- **{render.md(_title(m))}**{qualifier}: " + "; ".join(parts) + "."
             for m in methods if (parts := verdict(m, metrics))]
    if not lines:
        return
    if caveat is not None:
        st.warning(caveat.message, icon=":material/visibility_off:")
    st.markdown("**On this input**\n" + "\n".join(lines))


# == renderers ===============================================================================
def _matrix_chart(methods: Sequence[str], matrix, title: str, domain=(-1, 1), labels=None,
                  legend: bool = True, step: int = 64) -> alt.Chart:
    names = labels or [_title(m) for m in methods]
    rows = []
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            v = matrix[i][j] if i < len(matrix) and j < len(matrix[i]) else None
            rows.append({"row": a, "col": b, "value": None if v is None else float(v),
                         "text": "n/a" if v is None else f"{float(v):.2f}"})
    df = pd.DataFrame(rows)
    rng = ["#1f77b4", "#f7f7f7", "#d62728"] if domain[0] < 0 else ["#f7f7f7", "#d62728"]
    dom = [domain[0], 0, domain[1]] if domain[0] < 0 else list(domain)
    df["dark"] = [v is not None and abs(v) > 0.6 for v in df["value"]]
    base = alt.Chart(df).encode(
        x=alt.X("col:N", sort=names, title=None, axis=alt.Axis(labelAngle=-30, labelOverlap=False, labelLimit=160)),
        y=alt.Y("row:N", sort=names, title=None, axis=alt.Axis(labelLimit=160)))
    rect = base.mark_rect().encode(
        color=alt.Color("value:Q", scale=alt.Scale(domain=dom, range=rng), title=None,
                        legend=alt.Legend() if legend else None),
        tooltip=["row", "col", alt.Tooltip("value:Q", format=".3f")])
    text = base.mark_text(fontSize=13).encode(
        text="text:N", color=alt.condition(alt.datum.dark, alt.value("white"), alt.value("black")))
    return (rect + text).properties(width=alt.Step(step), height=alt.Step(44), title=title)


def _agreement(view, adapter, inp: Input, a: dict, stat: str, shown: int = 10) -> None:
    methods = a.get("methods", [])
    # with many methods the matrix needs the full width; the disagreements go below it
    c1, c2 = st.columns([1, 1]) if len(methods) <= 4 else (st.container(), st.container())
    with c1:
        matrix = a.get(stat) or []
        domain = (-1, 1) if stat in ("spearman", "kendall") else (0, 1)
        label = STATS[stat] + (f" (k={a.get('k')})" if stat == "topk_jaccard" else "")
        if len(methods) < 2:
            st.info("Agreement needs at least two methods.")
        st.altair_chart(_matrix_chart(methods, matrix, label, domain, step=64 if len(methods) <= 4 else 48),
                        width="content")
        st.caption("1 = the two methods rank (or sign) the features the same way; Spearman/Kendall "
                   "near 0 = unrelated rankings; top-k Jaccard = overlap of their k most important features.")
    with c2:
        dis = np.asarray([0.0 if v is None else v for v in a.get("disagreement", [])], dtype=float)
        labels = a.get("feature_labels") or inp.enc.feature_labels
        st.markdown("**Where the methods disagree most**")
        if dis.size == 0:
            st.caption("no per-feature disagreement")
            return
        top = np.argsort(-dis)[: min(shown, dis.size)]
        names = unique_labels(labels)
        df = pd.DataFrame({"feature": [names[i] for i in top], "disagreement": dis[top]})
        st.altair_chart(alt.Chart(df).mark_bar(color="#ff7f0e").encode(
            x=alt.X("disagreement:Q"), y=alt.Y("feature:N", sort=list(df["feature"]), title=None,
                                                 axis=alt.Axis(labelLimit=200, labelOverlap=False)),
            tooltip=["feature", alt.Tooltip("disagreement:Q", format=".3f")],
        ).properties(height=alt.Step(20)), width="stretch")
        view.draw_disagreement(adapter, inp, dis, float(dis.max()) or 1.0)
        st.caption("Disagreement per feature: how differently the methods rank it. Features here "
                   "deserve a second look before trusting any single map.")


def _curves_frame(f: dict) -> pd.DataFrame:
    fractions = f.get("fractions") or []
    rows = []
    blocks = [(_title(m), b) for m, b in (f.get("methods") or {}).items()]
    if f.get("random"):
        blocks.append(("random (control)", f["random"]))
    for name, b in blocks:
        for curve in ("deletion", "insertion"):
            for x, y in zip(fractions, b.get(curve) or []):
                rows.append({"method": name, "curve": curve, "fraction": x, "probability": y})
    return pd.DataFrame(rows)


def _measure(f: dict) -> str:
    """What the curves follow: the target's "probability", or its raw "score"."""
    return f.get("measure") or "probability"


def _faithfulness(f: dict) -> None:
    df = _curves_frame(f)
    names = list(dict.fromkeys(df["method"])) if not df.empty else []
    colours = _colours(names, grey="random (control)")
    how = f.get("perturbation_note") or f"features replaced by the {f.get('baseline')} baseline"
    measure = _measure(f)
    st.caption(f"Removal: {render.md(how)}. Features go in each method's order (most important first). "
               f"Deletion: the target {measure} should fall fast (high AOPC); insertion: rise fast "
               "(high AUC). The grey dashed line is the random control."
               + (" Scores are in the model's own units, so AOPC and AUC are too." if measure == "score" else ""))
    c1, c2 = st.columns(2)
    for col, curve, xt in ((c1, "deletion", "fraction of features removed"),
                           (c2, "insertion", "fraction of features inserted")):
        sub = df[df["curve"] == curve]
        chart = alt.Chart(sub).mark_line(point=len(f.get("fractions") or []) <= 30).encode(
            x=alt.X("fraction:Q", title=xt, axis=alt.Axis(format="%")),
            y=alt.Y("probability:Q", title=f"target {measure}",
                    scale=alt.Scale(domain=[0, 1]) if measure == "probability" else alt.Scale(zero=False)),
            color=alt.Color("method:N", scale=colours, legend=alt.Legend(orient="bottom", title=None)),
            strokeDash=alt.condition(alt.datum.method == "random (control)", alt.value([5, 4]), alt.value([1, 0])),
            tooltip=["method", alt.Tooltip("fraction:Q", format=".0%"), alt.Tooltip("probability:Q", format=".3f")],
        ).properties(title=f"{curve} curve")
        col.altair_chart(chart, width="stretch", height=400)
    rows = []
    for m, b in (f.get("methods") or {}).items():
        rows.append({"method": _title(m), "deletion AOPC ↑": b.get("deletion_aopc"),
                     "insertion AUC ↑": b.get("insertion_auc"), "comprehensiveness ↑": b.get("comprehensiveness"),
                     "sufficiency ↓": b.get("sufficiency"),
                     "p-value": b.get("p_value"), "orders used": b.get("orders_used"),
                     "effect size": b.get("effect_size"),
                     "beats random": {True: "yes", False: "no"}.get(b.get("beats_random"), "—")})
    r = f.get("random") or {}
    if r:
        std = r.get("deletion_aopc_std")
        rows.append({"method": "random (control)", "deletion AOPC ↑": r.get("deletion_aopc"),
                     "insertion AUC ↑": r.get("insertion_auc"), "comprehensiveness ↑": r.get("comprehensiveness"),
                     "sufficiency ↓": r.get("sufficiency"), "p-value": None, "orders used": r.get("orders"),
                     "effect size": None,
                     "beats random": f"± {std:.3f} (std)" if isinstance(std, (int, float)) else "—"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                                ("deletion AOPC ↑", "insertion AUC ↑", "comprehensiveness ↑", "sufficiency ↓",
                                 "p-value", "effect size")})
    test = f.get("test") or "deletion AOPC against the random orders"
    st.caption(f"'beats random': {render.md(test)}. 'orders used': the random orders a method's p-value "
               "counts (the control's row: all it drew). Effect size = (AOPC - random mean) / random std. "
               "Comprehensiveness and sufficiency follow ERASER (DeYoung et al. 2020) at its 1/5/10/20/50 % "
               "bins. A method that does not beat random is no better than guessing on this input.")


def _flips(fl: dict, apply: Apply | None, faith: dict | None, baseline: str | None) -> None:
    original = fl.get("original_label")
    best = fl.get("best")
    how = fl.get("perturbation_note") or "features replaced by the baseline"
    goal = (f"until the prediction leaves *{render.md(original)}*" if fl.get("threshold") is None else
            f"until *{render.md(fl.get('target_label'))}* ({render.fmt_score(fl.get('original_value'))}) crosses "
            f"the threshold {render.fmt_score(fl['threshold'])} ({render.md(fl.get('threshold_source') or '')})")
    st.caption(f"Remove features in each method's order (most important first; {render.md(how)}) "
               f"{goal}. Fewer removals = the method "
               "found the decisive features. 'Apply' loads exactly the edit that was scored into the "
               "editor above.")
    kind = (faith or {}).get("baseline") or baseline
    rows = list((fl.get("methods") or {}).items()) + [("random", fl.get("random") or {})]
    for m, b in rows:
        c1, c2, c3 = st.columns([2, 5, 1.4])
        count = b.get("count")
        name = "random order (control)" if m == "random" else _title(m)
        star = " ★ fewest" if m == best else ""
        if count is None:
            c1.markdown(f"**{render.md(name)}**{star}")
            c2.markdown(render.md(b.get("reason") or "no flip, even with every feature removed"))
            continue
        feats = b.get("features") or []
        shown = ", ".join(render.md(x) for x in feats[:12]) + (" …" if len(feats) > 12 else "")
        c1.markdown(f"**{render.md(name)}**{star}")
        step = STEP.get(fl.get("perturbation"), "removal")
        value = f" ({render.fmt_score(b['new_value'])})" if b.get("new_value") is not None else ""
        c2.markdown(f"**{count}** {step}(s) → *{render.md(b.get('new_label'))}*{value}: {shown}")
        if b.get("edited") is not None:
            c2.caption("scored edit: " + render.md(_short_text(b["edited"])))
        if apply is not None and b.get("indices"):
            c3.button("Apply", key=f"cmp.apply.{m}", on_click=apply,
                      args=(list(b.get("indices")), list(feats), kind, fl.get("perturbation"), b.get("edited")),
                      icon=":material/edit:", help="load this edit into the counterfactual editor")


def _short_text(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _use_steps(n: int) -> None:
    set_widget("ig.n_steps", int(n))


def _stability(s: dict, run: PanelRun) -> None:
    ig = s.get("ig_convergence")
    if ig:
        st.markdown("**Integrated Gradients convergence**")
        df = pd.DataFrame({"n_steps": ig.get("n_steps", []), "sum of scores": ig.get("sum", []),
                           "|delta|": [None if d is None else abs(d) for d in ig.get("delta", [])],
                           "relative |delta|": [None if d is None else abs(d)
                                                for d in ig.get("relative_delta", ig.get("delta", []))]})
        tol = ig.get("tolerance")
        c1, c2 = st.columns(2)
        x = alt.X("n_steps:Q", scale=alt.Scale(type="log", base=2), title="n_steps (log scale)")
        c1.altair_chart(alt.Chart(df).mark_line(point=True).encode(
            x=x, y=alt.Y("sum of scores:Q"), tooltip=list(df.columns)).properties(
            title="sum of attributions vs n_steps"), width="stretch", height=300)
        line = alt.Chart(df).mark_line(point=True, color="#d62728").encode(
            x=x, y=alt.Y("relative |delta|:Q", scale=alt.Scale(type="symlog"), title="relative |δ|"),
            tooltip=list(df.columns))
        layers = [line]
        auto = ig.get("auto")
        if auto and auto.get("points"):
            # the adaptive run: its levels, and where it stopped
            da = pd.DataFrame({"n_steps": auto["points"], "relative |delta|": auto["relative_delta"]})
            layers.append(alt.Chart(da).mark_line(point=True, color="#ff7f0e", strokeDash=[2, 2]).encode(
                x=x, y="relative |delta|:Q", tooltip=list(da.columns)))
            layers.append(alt.Chart(da.tail(1)).mark_point(size=160, shape="diamond", filled=True,
                                                          color="#ff7f0e").encode(
                x=x, y="relative |delta|:Q", tooltip=list(da.columns)))
        if isinstance(tol, (int, float)):
            layers.append(alt.Chart(pd.DataFrame({"tol": [tol]})).mark_rule(strokeDash=[4, 4]).encode(
                y=alt.Y("tol:Q", title="relative |δ|")))
        c2.altair_chart(alt.layer(*layers).properties(title="relative |convergence delta| (dashed: tolerance)"),
                        width="stretch", height=300)
        if auto and auto.get("points"):
            state = "stopped" if auto.get("converged") else "reached its cap"
            st.caption(f"Orange: this panel's n_steps = auto, {state} at **{auto['n_steps_used']}** points "
                       f"(diamond; levels {', '.join(map(str, auto['points']))}; it stops at "
                       f"|δ| ≤ {auto.get('rtol')} × |f(x) − f(b)|). Red: fixed n_steps for comparison.")
        sug = ig.get("suggested_n_steps")
        current = run.params.get("integrated_gradients", {}).get("n_steps")
        if current == "auto":
            current = None  # adaptive: no fixed step count to replace
        if sug:
            msg = f"Suggested n_steps: **{sug}** (smallest tried with relative |δ| < {tol})."
            if current is not None and int(current) != int(sug):
                c1, c2 = st.columns([3, 1])
                c1.markdown(msg + f" The panel uses {current}.")
                c2.button(f"Use n_steps = {sug}", key="cmp.use_steps", on_click=_use_steps, args=(sug,))
            else:
                st.markdown(msg)
        else:
            st.warning(f"No n_steps tried reaches the tolerance {tol}: IG has not converged on this input; "
                       "raise n_steps or try another baseline.")
    gs = s.get("gradient_shap")
    if gs:
        st.markdown("**GradientSHAP across seeds** (mean and 95 % interval per feature)")
        labels = gs.get("feature_labels") or []
        mean = np.asarray(gs.get("mean", []), dtype=float)
        low, high = np.asarray(gs.get("low", []), dtype=float), np.asarray(gs.get("high", []), dtype=float)
        top = np.argsort(-np.abs(mean))[: min(15, mean.size)]
        ns = set(gs.get("not_significant") or [])
        names = unique_labels(labels)
        df = pd.DataFrame({"feature": [names[i] for i in top], "mean": mean[top], "low": low[top],
                           "high": high[top], "significant": ["no" if int(i) in ns else "yes" for i in top]})
        base = alt.Chart(df).encode(y=alt.Y("feature:N", sort=list(df["feature"]), title=None,
                                            axis=alt.Axis(labelLimit=200, labelOverlap=False)))
        chart = (base.mark_rule(strokeWidth=2).encode(x=alt.X("low:Q", title="attribution"), x2="high:Q",
                                                      color=alt.Color("significant:N", scale=alt.Scale(
                                                          domain=["yes", "no"], range=["#1f77b4", "#bbbbbb"])))
                 + base.mark_point(filled=True, color="black").encode(x="mean:Q",
                                                                      tooltip=["feature", "mean", "low", "high"]))
        zero = alt.Chart(pd.DataFrame({"x": [0]})).mark_rule(color="#999").encode(x="x:Q")
        st.altair_chart((chart + zero).properties(height=alt.Step(20)), width="stretch")
        ns_labels = [str(labels[i]) for i in sorted(ns) if i < len(labels)]
        st.caption(f"{len(ns_labels)} of {len(labels)} features have an interval containing 0 over seeds "
                   f"{gs.get('seeds')} (sign not significant)"
                   + (": " + ", ".join(render.md(x) for x in ns_labels[:30]) + (" …" if len(ns_labels) > 30 else "")
                      if ns_labels else "."))
    bs = s.get("baseline_sensitivity") or {}
    if bs:
        st.markdown("**Baseline sensitivity** (Spearman between the maps under each baseline)")
        cols = st.columns(min(3, len(bs)))
        for i, (m, b) in enumerate(bs.items()):
            with cols[i % len(cols)]:
                st.altair_chart(_matrix_chart(b.get("baselines", []), b.get("spearman", []), _title(m),
                                              labels=b.get("baselines", []), legend=False), width="content")
        st.caption("Low values: the map depends on the baseline you pick, so report which one you used.")


def _sanity_robustness(metrics: dict) -> None:
    san = metrics.get("sanity")
    if san:
        st.markdown("**Sanity check: cascading model randomization** (Adebayo et al. 2018)")
        stages = san.get("stages", [])
        rows = []
        for m, b in (san.get("methods") or {}).items():
            for i, stage in enumerate(stages):
                v = (b.get("spearman_abs") or [None] * len(stages))[i]
                rows.append({"method": _title(m), "stage": i + 1, "layers randomized": stage,
                             "Spearman |scores|": v})
        if rows:
            df = pd.DataFrame(rows)
            st.altair_chart(alt.Chart(df).mark_line(point=True).encode(
                x=alt.X("stage:O", title="randomization stage (top layers first)", axis=alt.Axis(labelAngle=0)),
                y=alt.Y("Spearman |scores|:Q", scale=alt.Scale(domain=[-1, 1])),
                color=alt.Color("method:N", scale=_colours(list(dict.fromkeys(df["method"]))),
                                legend=alt.Legend(orient="bottom", title=None)),
                tooltip=list(df.columns)), width="stretch", height=360)
        for m, b in (san.get("methods") or {}).items():
            if b.get("independent_of_model"):
                st.error(f"{render.md(_title(m))}: the map barely changes when the model is randomized: it "
                         "reflects the input more than the model. Do not trust it for this model.")
                if b.get("caveat"):
                    st.info(render.md(b["caveat"]))
            else:
                st.success(f"{render.md(_title(m))}: passes (the map changes when the model is randomized).")
        st.caption(f"Flag threshold: Spearman of |scores| above {san.get('threshold')} after the last stage.")
    rob = metrics.get("robustness")
    if rob:
        st.markdown("**Robustness** (Yeh et al. 2019; lower is better)")
        st.dataframe(pd.DataFrame([{"method": _title(m), "infidelity ↓": b.get("infidelity"),
                                    "max-sensitivity ↓": b.get("sensitivity_max")} for m, b in rob.items()]),
                     hide_index=True, width="stretch")
        note = next((b.get("perturbation_note") for b in rob.values() if b.get("perturbation_note")), None)
        if note:
            st.caption("Perturbations: " + render.md(note) + ".")
