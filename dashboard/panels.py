"""The side-by-side panels shared by every modality page.

One column per selected method (five or more wrap into balanced rows). Each column has the
method's own parameter widgets (generated from its ``param_specs``), what its baselines
predict, a cost estimate (forward passes and seconds) checked against the sidebar cap, and a
progress bar fed by the engine's ``progress`` callback. Each map is drawn by the modality
view as soon as its method finishes, then once more on the chosen colour scale, for the
original input and (when the user edited it) the edited input below. A failing method
becomes a message in its own column; the others still render.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import streamlit as st

from cache.store import default_store
from explainers import (Attribution, ExplainerError, baseline_predictions, estimate_cost, get_method,
                        run_method)
from explainers import precision
from explainers.baselines import flagged_baselines
from explainers.engine import ESTIMATE_RESOLUTION, estimate_metric_seconds, estimate_seconds
from explainers.results import Prediction

from . import export, render
from .state import digest, memo
from .types import Caveat, Input, PanelRun
from .widgets import Settings, param_widgets, params_caption, target_picker


def store():
    return default_store()


# -- prediction strip ---------------------------------------------------------------------------
def strip_frame(adapter, prediction: Prediction, edited: Prediction | None) -> pd.DataFrame:
    """The values the strip draws, one row per output (and input): ``output``, ``value``
    (probability, or raw score), ``input`` ("original" / "edited"), ``index``. Softmax and
    sigmoid show every output's probability; a sigmoid's do not share 100 %."""
    rows = []
    for name, pred in (("original", prediction), ("edited", edited)):
        if pred is None:
            continue
        for i, v in enumerate(pred.outputs):
            rows.append({"output": adapter.label(i), "value": float(v), "input": name, "index": i})
    return pd.DataFrame(rows)



def prediction_strip(adapter, original: Input, edited: Input | None, caveat: Caveat | None = None) -> int:
    """The model's output and the target selector, by output kind:

    * softmax: predicted label, class-probability bars (top 10);
    * sigmoid: one probability bar per output (independent: no shared 100 %), a line at 0.5;
    * score: the value, the model's range on its data (a histogram with this row marked)
      and the edited value with its change.

    A single-output model has nothing to choose, so the target selector is left out. A
    ``caveat`` (text the model cannot read) is a warning right under the prediction; the
    input's other warnings are captions.

    Returns:
        The output index every panel explains (for both the original and the edited input,
        so their maps answer the same question).
    """
    p = original.prediction
    q = edited.prediction if edited is not None else None
    kind = getattr(adapter, "output_kind", "softmax")
    left, right = st.columns([1, 2])
    with left:
        head = st.container()
        target = p.index if adapter.single_output else target_picker(adapter, p)
    with head:
        if kind == "score":
            _score_metrics(adapter, p, q, target)
        else:
            _probability_metrics(adapter, p, q, kind)
    with right:
        if kind == "score":
            ref = adapter.reference_outputs()
            chart = render.score_chart(None if ref is None else ref[:, target], p.outputs[target],
                                       None if q is None else q.outputs[target], adapter.label(target))
            st.altair_chart(chart, width="stretch", height=render.SCORE_CHART_HEIGHT + 70 if ref is not None else 110)
            if ref is None:
                st.caption("No reference data: the model's range is not known.")
        else:
            bars = strip_frame(adapter, p, q)  # one value per output and input: what is drawn
            shown = {name: bars[bars["input"] == name].sort_values("index")["value"].tolist()
                     for name in ("original", "edited")}
            chart = render.probability_chart(adapter.labels, shown["original"], top=min(10, len(adapter.labels)),
                                             highlight=p.index, other=shown["edited"] or None, kind=kind)
            st.altair_chart(chart, width="stretch")
    if caveat is not None:
        st.warning(caveat.message, icon=":material/visibility_off:")
    for w in original.enc.warnings:
        if caveat is None or render.md(w) not in caveat.message:
            st.caption(f":material/info: {render.md(w)}")
    return target


def _probability_metrics(adapter, p: Prediction, q: Prediction | None, kind: str) -> None:
    what = "the most probable output (each output is its own probability)" if kind == "sigmoid" \
        else "the model's arg-max class on the original input"
    st.metric("Prediction", render.md(p.label), help=what)
    share = "independent per output (sigmoid)" if kind == "sigmoid" else "probability"
    st.caption(f"{share}: {p.value:.1%} · model {render.md(adapter.name)}")
    if kind == "sigmoid" and len(p.outputs) > 1:
        on = [adapter.label(i) for i, v in enumerate(p.outputs) if v >= 0.5]
        st.caption("at or above 0.5: " + (", ".join(render.md(x) for x in on) if on else "none"))
    if q is not None:
        change = render.signed((q.outputs[p.index] - p.value) * 100)
        moved = float(change) != 0
        st.metric("Edited input", render.md(q.label), delta=f"{change} pts for {render.md(p.label)}",
                  delta_color="normal" if moved else "off", delta_arrow="auto" if moved else "off")


def _score_metrics(adapter, p: Prediction, q: Prediction | None, target: int) -> None:
    label = adapter.label(target)
    value = p.outputs[target]
    st.metric(f"Predicted {render.md(label)}", render.fmt_score(value),
              help="the model's raw output (a score, not a probability)")
    ref = adapter.reference_outputs()
    where = ""
    if ref is not None and len(ref):
        col = ref[:, target]
        where = (f" · {100.0 * float((col <= value).mean()):.0f}th percentile of the data "
                 f"(range {render.fmt_score(col.min())} to {render.fmt_score(col.max())})")
    st.caption(f"score{where} · model {render.md(adapter.name)}")
    if q is not None:
        after = q.outputs[target]
        change = render.signed(after - value, ".4g")
        moved = float(change) != 0
        st.metric("Edited input", render.fmt_score(after), delta=change,
                  delta_color="normal" if moved else "off", delta_arrow="auto" if moved else "off")


# -- panels -------------------------------------------------------------------------------------
def _progress_callback(bar, label: str):
    def cb(_method: str, fraction: float) -> None:
        # Touching Streamlit here lets a widget change interrupt a long run at once.
        bar.progress(float(min(max(fraction, 0.0), 1.0)), text=f"{label}: {fraction:.0%}")
    return cb


def explain_panels(view, adapter, original: Input, edited: Input | None, methods: list[str], target: int,
                   settings: Settings) -> PanelRun:
    """Draw one column per method and run them; see the module docstring.

    Args:
        view: the modality's view (draws each map and sets the colour-scale rule).
        adapter: the loaded model adapter.
        original, edited: the inputs; ``edited`` is None when the user made no edit.
        methods: registered method names, one column each.
        target: the class every panel explains.
        settings: the sidebar settings.
    """
    run = PanelRun(list(methods), {}, target)
    if not methods:
        st.info("Pick at least one method above to see its attribution.")
        return run
    bars: dict[str, _Slots] = {}
    for row in grid(methods):
        for col, m in zip(st.columns(len(row), border=True), row):
            with col:
                bars[m] = _panel_header(adapter, original, edited, m, run, settings)

    if settings.live:
        st.session_state.pop("_stopped", None)
    elif not _applied(original, edited, run):
        _wait_for_apply(original, edited, run, bars)
        return run
    board = _Board(view, adapter, original, edited, run, settings)
    todo = [m for m in methods if m not in run.errors]
    with running(settings.status, f"{len(todo)} method(s)" if todo else None, "panels"):
        with precision.use(settings.precision, adapter.device):
            _run_methods(adapter, original, edited, methods, run, settings, bars, board)
    board.final()
    return run


class _Board:
    """The maps' slots, laid out before anything runs, so that each method's map appears as
    soon as it is computed (on its own colour scale) and all are redrawn once at the end on
    the scale the sidebar asks for (shared or per panel), with their downloads."""

    def __init__(self, view, adapter, original: Input, edited: Input | None, run: PanelRun,
                 settings: Settings) -> None:
        self.view, self.adapter, self.run, self.settings = view, adapter, run, settings
        self.note, self.legend = st.empty(), st.empty()
        self.inputs = [(original, run.original)] + ([(edited, run.edited)] if edited is not None else [])
        self.cells: dict[tuple[str, str], Any] = {}
        rows = grid(run.methods)
        for inp, _ in self.inputs:
            header = "Original input" if inp is original else \
                f"Edited input{(': ' + inp.note) if inp.note else ''}"
            st.markdown(f"**{render.md(header)}** — predicted *{render.md(render.prediction_summary(inp.prediction))}*"
                        f"; explaining *{render.md(adapter.label(run.target))}*")
            st.space("small")  # room for the maps' full-screen buttons, which sit above each map
            for row in rows:
                for col, m in zip(st.columns(len(row)), row):
                    with col:
                        if len(rows) > 1:  # maps no longer sit under their parameter headers
                            st.markdown(f"**{get_method(m).title}**")
                        self.cells[(inp.name, m)] = st.empty()

    def early(self, m: str, preview: str = "") -> None:
        """Draw ``m``'s maps at once, each on its own scale (no downloads yet); ``preview``:
        the cheaper settings they were computed with ("n_steps=8 (full: 50)"), said above
        the map while the full settings run."""
        for inp, attrs in self.inputs:
            a = attrs.get(m)
            if a is not None:
                shown = self.view.shown_scores(a, self.settings)
                with self.cells[(inp.name, m)].container():
                    if preview:
                        st.caption(preview_caption(preview, a))
                    self.view.draw(self.adapter, inp, a, self.view.robust_max(shown, self.settings), self.settings)
                    st.caption(stats_caption(a))

    def final(self) -> None:
        run, settings = self.run, self.settings
        scales = _scales(self.view, run, settings)
        with self.note.container():
            _scale_note(run, settings)
        signs, note = self.view.legend(settings)
        units = f"scores in {render.output_units(getattr(self.adapter, 'output_kind', 'softmax'))}"
        self.legend.html(render.legend_html(scales.get("_shared") if settings.shared_scale else None, signs,
                                            "; ".join(x for x in (note, units) if x)))
        for inp, attrs in self.inputs:
            for m in run.methods:
                with self.cells[(inp.name, m)].container():
                    _draw_cell(self.view, self.adapter, inp, m, attrs.get(m), run, scales.get(m, 1.0), settings)


#: a method whose estimate is above this many seconds first draws a preview (see below)
PREVIEW_SECONDS = 1.0
#: the preview's IG steps
PREVIEW_STEPS = 8
#: the preview's samples, for methods that average random draws (``averages_samples``)
PREVIEW_SAMPLES = 4


def preview_caption(settings: str, attr: Attribution) -> str:
    """What a preview says above its map: its cheaper ``settings`` and, where the method
    has one, that its δ (how far from complete it is) is under the map."""
    delta = " (its δ below)" if attr.convergence_delta is not None else ""
    return (f":material/hourglass_top: **Preview** with {render.md(settings)}{delta}: the full "
            "settings are running and will replace it.")


def preview_params(name: str, params: dict) -> dict | None:
    """Cheaper settings of method ``name`` for a first look, or None when there are none:
    fixed ``n_steps`` down to :data:`PREVIEW_STEPS` (IG; its δ says how far from complete
    it is), windows that do not overlap (Occlusion: ``stride`` = ``window``, a coarser grid
    of the same drops) and, for a method whose scores are a mean of random draws
    (GradientSHAP, SmoothGrad, Shapley sampling), :data:`PREVIEW_SAMPLES` of its samples.
    Everything else (baselines, seeds, the target) stays.

    The samples' preview is as close to the full map as the full map is to itself: on the
    gallery, GradientSHAP's 4-sample map ranks the patches like the 20-sample one at
    Spearman 0.44-0.56, and two 20-sample maps with different seeds agree at 0.19-0.56
    (``python -m bench.image_views --previews``; IG at 8 steps: 0.88-0.94). Regressions on
    samples (LIME, KernelSHAP) get no such preview: too few samples leave them unsolved."""
    p = dict(params)
    if isinstance(p.get("n_steps"), int):
        p["n_steps"] = min(p["n_steps"], PREVIEW_STEPS)
    if isinstance(p.get("stride"), int) and isinstance(p.get("window"), int):
        p["stride"] = max(p["stride"], p["window"])
    if isinstance(p.get("n_samples"), int) and get_method(name).averages_samples:
        p["n_samples"] = min(p["n_samples"], PREVIEW_SAMPLES)
    return None if p == params else p


def _stored(adapter, enc, m: str, params: dict, target: int) -> bool:
    """Whether the store already holds this run (then it needs no preview): a cap of 0
    forward passes lets ``run_method`` answer only from the store."""
    try:
        run_method(adapter, enc, m, params, target, store(), max_cost=0)
        return True
    except ExplainerError:
        return False


def _previews(adapter, original: Input, edited: Input | None, run: PanelRun) -> dict:
    """``{method: preview params}`` for the methods that would keep the maps waiting: an
    estimate above :data:`PREVIEW_SECONDS` and no stored result."""
    out = {}
    for m in run.methods:
        if m in run.errors or m not in run.costs:
            continue
        seconds = estimated(adapter, original.enc, m, run.params[m], _n_inputs(edited))
        cheap = preview_params(m, run.params[m])
        if (cheap is not None and seconds is not None and seconds > PREVIEW_SECONDS
                and not _stored(adapter, original.enc, m, run.params[m], run.target)):
            out[m] = cheap
    return out


def _run_methods(adapter, original: Input, edited: Input | None, methods: list[str], run: PanelRun,
                 settings: Settings, bars: dict, board: "_Board") -> None:
    """Every method's previews first (so all maps are there early), then the full settings:
    first of the methods that have no map yet, then each replacing its preview in place. A
    method that fails keeps no preview: Compare and the downloads only ever see full results."""
    target = run.target
    previews = _previews(adapter, original, edited, run)
    for m, cheap in previews.items():
        try:
            bars[m].bar.progress(0.0, text="preview")
            run.original[m] = run_method(adapter, original.enc, m, cheap, target, store(),
                                         _progress_callback(bars[m].bar, "preview"), settings.max_cost)
            if edited is not None:
                run.edited[m] = run_method(adapter, edited.enc, m, cheap, target, store(),
                                           _progress_callback(bars[m].bar, "preview, edited"), settings.max_cost)
            full = run.params[m]
            board.early(m, preview=", ".join(f"{k}={v} (full: {full[k]})" for k, v in cheap.items() if v != full[k]))
        except Exception:  # noqa: BLE001  (the full run below reports the error, if any)
            pass
        finally:
            bars[m].bar.progress(0.0, text="queued (full settings)")
    for m in [m for m in methods if m not in previews] + list(previews):
        if m in run.errors:
            continue
        bar = bars[m].bar
        try:
            if m not in previews:
                bar.progress(0.0, text="queued")
            run.original[m] = run_method(adapter, original.enc, m, run.params[m], target, store(),
                                         _progress_callback(bar, "original"), settings.max_cost)
            if edited is not None:
                run.edited[m] = run_method(adapter, edited.enc, m, run.params[m], target, store(),
                                           _progress_callback(bar, "edited"), settings.max_cost)
            # the estimate (and any slow warning) gives way to what the run took
            bars[m].eta.caption(took_caption([a for a in (run.original[m], run.edited.get(m)) if a is not None],
                                             bars[m].seconds))
            board.early(m)
        except ExplainerError as e:
            run.errors[m] = str(e)
            bars[m].eta.empty()
        except Exception as e:  # noqa: BLE001  (never a traceback in the browser)
            run.errors[m] = f"{get_method(m).title} failed ({type(e).__name__}); try other parameters."
            bars[m].eta.empty()
        finally:
            bar.empty()
            if m in run.errors:  # no preview stands in for a failed run
                run.original.pop(m, None)
                run.edited.pop(m, None)
    for results in (run.original, run.edited):  # in the panels' order again, for the exports
        ordered = {m: results[m] for m in methods if m in results}
        results.clear()
        results.update(ordered)


# -- running, stop and apply --------------------------------------------------------------------
def _pause() -> None:
    """Stop: live updates off, and nothing counts as applied, so the rerun computes nothing
    until "Apply changes" (the panels then say where their maps were that they stopped)."""
    st.session_state["live"] = False
    st.session_state["_stopped"] = True
    st.session_state.pop("_applied", None)


@contextlib.contextmanager
def running(slot, what: str | None, key: str):
    """While the block runs, say so at the top of the page with a Stop button (Streamlit's own
    indicator is hidden by the minimal toolbar). Stop interrupts the run and switches live
    updates off, so the rerun it causes computes nothing until "Apply changes". The page
    opens one around all of its work (``layout.modality_page``), so the line is there from
    the first moment of a rerun; the panels and the metrics then say what they run."""
    if slot is None or what is None:
        yield
        return
    with slot.container():
        c1, c2 = st.columns([6, 1])
        c1.info(f":material/hourglass_top: Running: {what}…")
        c2.button("Stop", key=f"run.stop.{key}", on_click=_pause, icon=":material/stop_circle:",
                  help="stop this run and pause live updates")
    try:
        yield
    finally:
        slot.empty()


def _signature(original: Input, edited: Input | None, run: PanelRun) -> str:
    return digest(original.enc.key, edited.enc.key if edited else None, run.methods, run.params, run.target)


def _applied(original: Input, edited: Input | None, run: PanelRun) -> bool:
    return st.session_state.get("_applied") == _signature(original, edited, run)


def _apply(signature: str) -> None:
    st.session_state["_applied"] = signature
    st.session_state.pop("_stopped", None)


def _wait_for_apply(original: Input, edited: Input | None, run: PanelRun, slots: dict[str, "_Slots"]) -> None:
    """Live updates are off: nothing runs until the user applies the changes made so far.
    Each panel says so where its map would be: "stopped" after Stop, else waiting."""
    stopped = bool(st.session_state.get("_stopped"))
    c1, c2 = st.columns([5, 1])
    c1.info(("Stopped, and live updates are paused" if stopped else "Live updates are paused")
            + ": change as many settings as you like, then apply them in one run (or switch "
              "'Live updates' back on in the sidebar).")
    c2.button("Apply changes", key="run.apply", type="primary", on_click=_apply,
              args=(_signature(original, edited, run),), icon=":material/play_arrow:")
    for m in run.methods:
        if m in run.errors:
            continue
        if stopped:
            slots[m].bar.warning("Stopped: this map was not computed. 'Apply changes' runs it.",
                             icon=":material/stop_circle:")
        else:
            slots[m].bar.caption(":material/pause_circle: Waiting for 'Apply changes'.")
        run.errors[m] = "stopped" if stopped else "not run yet (live updates paused)"


#: panels per row: up to four side by side; five or more wrap into balanced rows
PER_ROW = 4


def grid(methods: list[str]) -> list[list[str]]:
    """Methods in rows of at most :data:`PER_ROW`, balanced (7 -> 4 + 3, 9 -> 3 + 3 + 3)."""
    rows = -(-len(methods) // PER_ROW)
    per = -(-len(methods) // rows) if rows else 1
    return [methods[i:i + per] for i in range(0, len(methods), per)]


class _Slots(NamedTuple):
    """A panel header's live parts: the estimate (then what the run took), the progress bar,
    and the estimate's seconds (None when there is none)."""

    eta: Any
    bar: Any
    seconds: float | None


def _panel_header(adapter, original: Input, edited: Input | None, m: str, run: PanelRun,
                  settings: Settings) -> _Slots:
    """Title, parameter widgets, cost (forward passes and the estimated seconds, replaced by
    the time taken once the run is done) and an empty slot for the progress bar; fills
    ``run.params``/``costs``/``errors`` for ``m``."""
    st.markdown(f"**{get_method(m).title}**")
    with st.expander("Parameters", expanded=False):
        run.params[m] = param_widgets(adapter, m)
    st.caption(params_caption(run.params[m]))
    _baseline_line(adapter, original, run.params[m].get("baselines"))
    seconds = None
    eta = st.empty()
    try:
        cost = estimate_cost(adapter, original.enc, m, run.params[m])
        run.costs[m] = cost
        per = " per input (original and edited)" if edited is not None else ""
        if cost > settings.max_cost:
            eta.warning(f"Refused: needs {cost:,} forward passes{per}, over the cap of "
                        f"{settings.max_cost:,}. Lower its parameters or raise the cap in the sidebar.")
            run.errors[m] = "over the cost cap"
        else:
            seconds = estimated(adapter, original.enc, m, run.params[m], _n_inputs(edited))
            with eta.container():
                eta_text = "" if seconds is None else f", estimated {shown_seconds(seconds)}"
                st.caption(f"Estimated cost: {cost:,} forward passes{per}{eta_text} (cap {settings.max_cost:,})",
                           help="seconds from this machine's measured rate for this model: gradient and "
                                "forward rows calibrated once, then refreshed by every run")
                if seconds is not None and seconds > SLOW_SECONDS:
                    st.warning(f"This will take about {seconds:,.0f} s (measured on this machine for this "
                               "model). Lower its parameters, or wait: the bar below shows progress.")
    except ExplainerError as e:
        run.errors[m] = str(e)
    return _Slots(eta, st.empty(), seconds)


def _baseline_line(adapter, inp: Input, kinds) -> None:
    """What the panel's baselines themselves predict ("baseline pad -> negative 0.71"), with a
    warning when one is far from uniform: the map then explains the difference from that
    class, not from "nothing"."""
    if not kinds:
        return
    try:
        preds = memo("baselines", (id(adapter), adapter.name, inp.enc.key, tuple(kinds)),
                     lambda: baseline_predictions(adapter, inp.enc, list(kinds)))
    except ExplainerError:
        return
    def said(b) -> str:
        if np.isfinite(b.neutrality):
            return f"{render.md(b.prediction.label)} {b.prediction.value:.2f} (neutrality {b.neutrality:.2f})"
        return render.md(render.prediction_summary(b.prediction))  # a score or a sigmoid output
    parts = [f"{render.md(k)} → {said(b)}" for k, b in preds.items()]
    st.caption("Baseline: " + "; ".join(parts), help="the model's prediction on each baseline; "
               "neutrality 1 = uniform, 0 = all on one class")
    flagged = flagged_baselines(preds)
    if flagged:  # one short warning for all of them; each kind's full sentence is in the exports
        st.warning(render.md(flagged), icon=":material/balance:")


#: warn before a panel whose estimate is longer than this
SLOW_SECONDS = 5.0


def _n_inputs(edited: Input | None) -> int:
    """Inputs each method runs on: the original, and the edit when there is one."""
    return 1 if edited is None else 2


def shown_seconds(seconds: float) -> str:
    """Seconds as a panel shows them, to :data:`~explainers.engine.ESTIMATE_RESOLUTION`."""
    return f"under {ESTIMATE_RESOLUTION:g} s" if seconds < ESTIMATE_RESOLUTION else f"{seconds:,.1f} s"


def estimated(adapter, enc, method: str, params: dict, inputs: int) -> float | None:
    """The engine's estimate (:func:`explainers.engine.estimate_seconds`: this machine's
    measured rate for the model, refreshed by every run), or None when it cannot be made."""
    try:
        return estimate_seconds(adapter, enc, method, params, inputs)
    except Exception:  # noqa: BLE001  (an estimate is optional; the run itself reports errors)
        return None


def metric_eta(adapter, enc, rows: int) -> str:
    """", up to about x s" for a metric of at most ``rows`` re-predictions (this machine's
    measured metric rate for the model; repeated edits are predicted once, so often less),
    or "" when it cannot be estimated."""
    try:
        return f", up to about {shown_seconds(estimate_metric_seconds(adapter, enc, rows))}"
    except Exception:  # noqa: BLE001  (an estimate is optional)
        return ""


def took_caption(results: list[Attribution], estimate: float | None) -> str:
    """What a finished panel says in place of its estimate: the time taken (computed, or
    served by the store with the original computation's time), next to the estimate."""
    est = "" if estimate is None else f" (estimated {shown_seconds(estimate)})"
    if all(a.cache_hit for a in results):
        return (f"Took {shown_seconds(0.0)}: from the store (computed in "
                f"{shown_seconds(sum(a.seconds for a in results))} when first run)")
    return f"Took {shown_seconds(sum(a.seconds for a in results if not a.cache_hit))}{est}"


def _per_panel(_=None) -> None:
    st.session_state["scale"] = "per panel"


def _scale_note(run: PanelRun, settings: Settings) -> None:
    """Under a shared scale, say so when one method's magnitudes dwarf another's."""
    if not settings.shared_scale:
        return
    maxima = {m: float(np.max(np.abs(a.scores))) for m, a in run.original.items() if a.scores.size}
    maxima = {m: v for m, v in maxima.items() if v > 0}
    if len(maxima) < 2:
        return
    hi, lo = max(maxima, key=maxima.get), min(maxima, key=maxima.get)
    ratio = maxima[hi] / maxima[lo]
    if ratio > 20:
        c1, c2 = st.columns([4, 1])
        c1.info(f"Shared colour scale: {get_method(hi).title}'s largest score is {ratio:,.0f}x "
                f"{get_method(lo).title}'s, so the fainter maps may look empty. Their units differ "
                "(see Σ under each panel); switch to a per-panel scale to see each map's shape.")
        c2.button("Per-panel scale", on_click=_per_panel, key="scale.switch", icon=":material/tune:")


def _scales(view, run: PanelRun, settings: Settings) -> dict[str, float]:
    """Full-colour magnitude per method (shared by its before/after maps), or one for all."""
    per = {}
    for m in run.methods:
        maps = [view.shown_scores(a, settings) for a in (run.original.get(m), run.edited.get(m))
                if a is not None]
        if maps:
            per[m] = max(view.robust_max(s, settings) for s in maps)
    if settings.shared_scale and per:
        shared = max(per.values())
        return {**{m: shared for m in per}, "_shared": shared}
    return per


def _draw_cell(view, adapter, inp: Input, m: str, a: Attribution | None, run: PanelRun, scale: float,
               settings: Settings) -> None:
    """One method's map of one input, its numbers and its downloads (or its error)."""
    if m in run.errors:
        if inp.name == "original":
            st.error(f"{get_method(m).title}: {render.md(run.errors[m])}")
        return
    if a is None:
        return
    view.draw(adapter, inp, a, scale, settings)
    st.caption(stats_caption(a), help="seconds of the computation (of the original run when cached) · "
               "δ: the convergence delta · Σ: the sum of the scores, in "
               f"{render.output_units(getattr(adapter, 'output_kind', 'softmax'))}; for an additive method "
               "it is f(input) − f(baseline) up to δ · whether the store answered")
    for note in getattr(a, "notes", None) or []:
        st.caption(f":material/info: {render.md(note)}")
    for w in getattr(a, "warnings", None) or []:
        st.caption(f":material/warning: {render.md(w)}")
    _panel_downloads(view, adapter, inp, a, scale, settings)


def stats_caption(a: Attribution) -> str:
    delta = ("n/a" if a.convergence_delta is None
             else f"{float(a.convergence_delta):+.2e}")
    stats = getattr(a, "delta_stats", None) or {}
    spread = ""
    if len(stats.get("per_baseline") or []) > 1:  # one signed number would hide opposite errors
        spread = f" · mean |δ| {stats['mean_abs']:.1e}, max |δ| {stats['max_abs']:.1e} over the baselines"
    # a sum of Grad-CAM pixels or attention weights is no output difference: not shown
    total = f"{float(np.sum(a.scores)):+.3g}" if get_method(a.method).additive else "n/a (not additive)"
    src = "cache hit" if a.cache_hit else "computed"
    return f":material/timer: {a.seconds:.2f} s · δ = {delta} · Σ = {total} · {src}{spread}"


def _panel_downloads(view, adapter, inp: Input, a: Attribution, scale: float, settings: Settings) -> None:
    stem = f"{a.method}_{inp.name}"
    c1, c2 = st.columns(2)
    with c1:
        st.download_button("CSV", data=lambda: view.scores_csv(adapter, inp.enc, a), file_name=f"{stem}.csv",
                           mime="text/csv", key=f"dl.csv.{stem}", on_click="ignore", icon=":material/download:",
                           help="the scores of this panel")
    with c2:
        st.download_button("PNG", data=lambda: export.panel_png(adapter, inp, a, scale, settings),
                           file_name=f"{stem}.png", mime="image/png", key=f"dl.png.{stem}", on_click="ignore",
                           icon=":material/download:", help="this panel as an image")


def page_downloads(adapter, original: Input, edited: Input | None, run: PanelRun, metrics: dict | None,
                   input_id: Any) -> None:
    """The engine-schema JSON of this view (original and edited) and a share note."""
    if not run.ok:
        return
    st.subheader("Export and share")
    c1, c2, c3 = st.columns([1, 1, 2])
    c1.download_button(
        "Result JSON (original)", key="dl.json.original", on_click="ignore", icon=":material/download:",
        data=lambda: export.result_json(adapter, original, run.original, run.target, metrics,
                                        extra={"id": input_id}),
        file_name=f"explanation_{adapter.modality}.json", mime="application/json",
        help="the engine's JSON schema (as printed by `python -m explainers`), metrics included")
    if edited is not None and run.edited:
        c2.download_button(
            "Result JSON (edited)", key="dl.json.edited", on_click="ignore", icon=":material/download:",
            data=lambda: export.result_json(adapter, edited, run.edited, run.target,
                                            extra={"edit": {"description": edited.note, **edited.edit}}),
            file_name=f"explanation_{adapter.modality}_edited.json", mime="application/json")
    c3.caption("Share: the address bar holds this view's model, input, methods, parameters, target "
               "and edit (values at their defaults are left out), so the link reproduces it. "
               "Uploaded files are not part of links.")
