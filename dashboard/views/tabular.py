"""Tabular view: sorted attribution bars per column (signed, or ranked by |attribution|);
what-if values for every feature. Two default models (a breast-cancer classifier and a
diabetes regression) and user models (a ``torch.export`` ``.pt2`` or TorchScript file plus
a CSV), whose output kind (softmax / sigmoid / score) can be chosen."""

from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from .. import models, render
from ..inputs import prepare
from ..state import BIND, digest, memo
from ..types import Input
from .base import (MAX_REVIEW_INPUTS, Apply, ModalityView, PickedInput, class_names, model_source,
                   prediction_change, register_view)


def _wf_key(row: int, feature: str) -> str:
    return f"wf.{row}.{feature}"


def _reset(row: int, values: dict[str, float]) -> None:
    """Every what-if value back to the row's own. Set, not deleted: the values are bound to
    the URL, and a widget whose state is dropped would read an edited value from it again."""
    for f, v in values.items():
        st.session_state[_wf_key(row, f)] = float(v)


def _pick_row() -> None:
    picked = st.session_state.get("tab.pick")
    if picked is not None:
        st.session_state["row"] = int(picked)


def data_frame(adapter) -> pd.DataFrame:
    """The reference rows with the model's output: the predicted label and its probability
    (classifiers) or the predicted score (score models), and the truth where the adapter
    knows it (correctness for classes, the error for scores)."""
    out = adapter.reference_outputs()
    if adapter.output_kind == "score":
        frame = pd.DataFrame({f"predicted {adapter.label(0)}": out[:, 0]})
        truth = getattr(adapter, "true_values", None)
        if truth is not None and len(truth) == len(frame):
            frame["true value"] = np.asarray(truth, dtype=float)
            frame["error"] = frame[f"predicted {adapter.label(0)}"] - frame["true value"]
        return pd.concat([frame, adapter.data.reset_index(drop=True)], axis=1)
    pred = out.argmax(1)
    frame = pd.DataFrame({"predicted": [adapter.label(int(i)) for i in pred],
                          "P(predicted)": out.max(1)})
    truth = getattr(adapter, "true_labels", None)
    if truth is not None and len(truth) == len(frame):
        frame["true label"] = [adapter.label(int(i)) for i in truth]
        frame["correct"] = pred == np.asarray(truth)
    return pd.concat([frame, adapter.data.reset_index(drop=True)], axis=1)


def percentile(adapter, feature: str, value: float) -> float:
    """Share of reference rows at or below ``value`` in ``feature``, in percent."""
    col = adapter.data[feature].to_numpy()
    return float(100.0 * np.mean(col <= value))


#: the default tabular models (``load_model`` names) and how the sidebar names them
#: (the URL holds the choice itself: ``tab.model=diabetes``)
DEFAULTS = {"breast cancer": ("tabular", "MLP classifier, malignant or benign (569 rows, 30 features)"),
            "diabetes": ("diabetes", "MLP regression: one score, disease progression after a year "
                                     "(442 rows, 10 features)")}
#: output kinds a user model can be read as
OUTPUTS = {"auto": "automatic", "softmax": "softmax (one class of several)",
           "sigmoid": "sigmoid (independent probabilities, multi-label)",
           "score": "score (raw value: regression, ranking)"}
READOUTS = {"signed": "bars for and against", "ranked": "by |attribution|"}


@register_view
class TabularView(ModalityView):
    """Horizontal bars (the top-N features by |score|), feature values in the labels."""

    modality = "tabular"
    auto_metrics = ("agreement", "faithfulness", "flip", "stability")  # the MLP is microseconds a call
    row = 0  # set by the input picker

    def model(self):
        """Sidebar: a default model (breast-cancer classifier or diabetes regression), or an
        uploaded CSV + ``torch.export`` / TorchScript model with its output kind."""
        with st.sidebar:
            src = model_source("Tabular model", "upload", "your CSV + model (.pt2 or TorchScript)",
                               self.modality)
            if src == "default":
                choice = st.selectbox("Default model", list(DEFAULTS), key="tab.model", bind=BIND,
                                      help="A classifier (two classes) or a regression (one score out)")
                spec, about = DEFAULTS[choice]
                st.caption(about)
                adapter, err = models.get_model(spec, "tabular")
            else:
                csv = st.file_uploader("Reference rows (CSV with a header row)", type=["csv"], key="up.csv")
                model_file = st.file_uploader(
                    "Model: torch.export program (.pt2) or TorchScript (.pt / .ts)",
                    type=["pt2", "pt", "ts", "pth"], key="up.model",
                    help="torch.export.save(torch.export.export(model, (example_rows,)), 'model.pt2'). "
                         "Loading runs no Python code: a .pt2 archive is checked before torch reads it "
                         "(pickles and code-carrying entries are refused), and TorchScript holds "
                         "TorchScript, not Python. The model's own graph runs whenever it predicts, "
                         "so upload models you would run yourself.")
                output = st.selectbox("Output", list(OUTPUTS), key="up.output", format_func=OUTPUTS.get,
                                      help="What the model's outputs are. Automatic: one output without "
                                           "class names is a score, several a softmax classifier.")
                label_col = st.text_input("Label column to drop (optional)", key="up.label").strip() or None
                names = st.text_input("Class or output names, comma-separated (optional)", key="up.names")
                if csv is None or model_file is None:
                    st.info("Upload both files to use your own model.")
                    st.stop()
                suffix = ".pt2" if model_file.name.lower().endswith(".pt2") else ".pt"
                adapter, err = models.get_model(models.save_upload(model_file.getvalue(), suffix, model_file.name),
                                                "tabular", data=models.save_upload(csv.getvalue(), ".csv", csv.name),
                                                labels=class_names(names), label_column=label_col,
                                                output=None if output == "auto" else output)
        adapter = models.require_model(adapter, err)
        n = len(adapter.data)
        if int(st.session_state.get("row", 0) or 0) > n - 1:  # a row of the previous model's data
            st.session_state["row"] = 0
        return adapter

    def sidebar_options(self) -> dict:
        top = int(st.slider("Features shown per panel", 5, 30, 15, key="top", bind=BIND))
        readout = st.radio("Read-out", list(READOUTS), key="tab.readout", bind=BIND, horizontal=True,
                           captions=list(READOUTS.values()),
                           help="Signed: bars left (against) and right (for the output). Ranked: "
                                "features by |attribution|, largest first, with the list as text.")
        return {"top_features": top, "readout": readout}

    def legend(self, settings) -> tuple[tuple[str, ...], str]:
        if settings.options.get("readout") == "ranked":
            return ("positive", "negative"), "bar length = |attribution|, colour = its sign"
        return ("positive", "negative"), ""

    def input_picker(self, adapter) -> PickedInput:
        n = len(adapter.data)
        c1, c2 = st.columns([1, 3])
        with c1:
            row = st.number_input(f"Row of the data (0-{n - 1})", 0, n - 1, 0, step=1, key="row", bind=BIND)
        with c2:
            truth = getattr(adapter, "true_labels", None)
            values = getattr(adapter, "true_values", None)
            if truth is not None and row < len(truth):
                st.metric("True label", render.md(adapter.label(int(truth[row]))), help="ground truth of this row")
            elif values is not None and row < len(values):
                st.metric(f"True {render.md(adapter.label(0))}", render.fmt_score(values[row]),
                          help="the measured value of this row")
            acc = getattr(adapter, "heldout_accuracy", None)
            r2 = getattr(adapter, "heldout_r2", None)
            if acc is not None:
                st.caption(f"model accuracy on held-out rows: {acc:.1%}")
            if r2 is not None:
                st.caption(f"model R² on held-out rows: {r2:.2f}")
        self._data_table(adapter)
        st.caption(f"Scores are in **{render.output_units(adapter.output_kind)}**: each is the column's "
                   "share of the change in the explained output from the baseline to this row, so for the "
                   "additive methods Σ (under each panel) is f(row) − f(baseline) in the same units. "
                   "Columns enter the methods standardised (z-scores of the reference data; the model "
                   "itself still sees the raw values), so Saliency and SmoothGrad, which are gradients, "
                   "read as output units per standard deviation of the column.")
        self.row = row = int(row)
        return PickedInput(row, ("row", row), row)

    @staticmethod
    def _data_table(adapter) -> None:
        """The reference rows with the model's prediction (and the truth, where known); a
        filter for the misclassified ones, and a picker that loads a row."""
        frame = memo("tabular.table", (id(adapter), adapter.name), lambda: data_frame(adapter))
        with st.expander(f"Browse the data ({len(frame)} rows)"):
            wrong_only = False
            if "correct" in frame:
                wrong = frame.index[~frame["correct"]]
                wrong_only = st.toggle(f"Misclassified only ({len(wrong)})", key="tab.wrong")
                if len(wrong):
                    st.selectbox("Open a misclassified row", [None] + list(wrong), key="tab.pick",
                                 format_func=lambda i: "(pick one)" if i is None else f"row {i}",
                                 on_change=_pick_row)
            shown = frame[~frame["correct"]] if wrong_only else frame
            if "error" in frame:
                st.caption("Sort by 'error' (click its header) to find the rows the model misses most.")
            st.dataframe(shown, width="stretch", height=260,
                         column_config={"P(predicted)": st.column_config.NumberColumn(format="%.3f"),
                                        "error": st.column_config.NumberColumn(format="%+.1f")})

    def _help(self, adapter, feature: str, value: float) -> str:
        """A what-if field's tooltip: what the column measures and where the value sits."""
        note = (getattr(adapter, "feature_help", None) or {}).get(feature, "")
        pct = percentile(adapter, feature, value)
        return (f"{note}. " if note else "") + f"This row: {render.fmt_value(value)}, the {pct:.0f}th " \
            "percentile of the reference data."

    def what_if(self, adapter, original: Input) -> Input | None:
        """What-if number inputs for every feature (grouped in an expander), before/after."""
        values = original.enc.raw
        row = self._row(original)
        names = adapter.feature_names
        std = adapter.std[0].cpu().numpy()
        edited_values = {}
        with st.expander(f"What-if: edit any of the {len(names)} feature values", expanded=False):
            st.button("Reset", on_click=_reset, args=(row, values), key="cf.reset", icon=":material/restart_alt:")
            cols = st.columns(3)
            for i, f in enumerate(names):
                step = float(f"{max(float(std[i]) / 10, 1e-6):.1g}")
                with cols[i % 3]:
                    # bound to the URL: only changed values appear there, so a link keeps the edit
                    edited_values[f] = st.number_input(f, value=float(values[f]), step=step, format="%.6g",
                                                       key=_wf_key(row, f), bind=BIND,
                                                       help=self._help(adapter, f, float(values[f])))
        changed = {f: (values[f], v) for f, v in edited_values.items()
                   if v is not None and abs(float(v) - float(values[f])) > 1e-5 * max(1e-3, abs(float(values[f])))}
        if not changed:
            st.caption("No feature changed yet: open 'What-if' and edit values; the prediction updates at once.")
            return None
        st.html("<div>Changed: " + ", ".join(
            f"<code>{html.escape(f)}</code> <del>{render.fmt_value(a)}</del> → <ins>{render.fmt_value(b)}</ins>"
            for f, (a, b) in changed.items()) + "</div>")
        full = {f: float(edited_values[f] if edited_values[f] is not None else values[f]) for f in names}
        edited = prepare(adapter, full, key=("row", digest(full)), name="edited",
                         note=f"{len(changed)} feature(s) changed",
                         edit={"row": row, "changed": {f: {"from": float(a), "to": float(b)}
                                                       for f, (a, b) in changed.items()}})
        if edited is not None:
            prediction_change(original, edited)
        return edited

    def apply_flip(self, adapter, original: Input) -> Apply:
        """Set the flipping features to the values the metric scored (its ``edited`` row), or
        to the baseline's values when a flip carries no edit."""
        enc, row = original.enc, self._row(original)

        def apply(indices: Sequence[int], _features: Sequence[str], baseline: str | None = None,
                  _perturbation: str | None = None, edited: Any = None) -> None:
            if isinstance(edited, dict):
                values = {f: float(edited[f]) for f in (adapter.feature_names[int(i)] for i in indices)}
            else:
                kind = baseline if baseline in adapter.baseline_kinds else adapter.default_baselines[0]
                raw = (adapter.baseline(enc, kind).mean(0) * adapter.std[0] + adapter.mean[0]).cpu().numpy()
                values = {adapter.feature_names[int(i)]: float(raw[int(i)]) for i in indices}
            for f, v in values.items():
                st.session_state[_wf_key(row, f)] = v
        return apply

    def _row(self, inp: Input) -> int:
        """The data row the input picker chose on this run (the what-if keys are scoped by it)."""
        return self.row

    def draw(self, adapter, inp, a, scale, settings) -> None:
        top = settings.options.get("top_features", 15)
        if settings.options.get("readout") == "ranked":
            st.altair_chart(render.ranked_chart(inp.enc.feature_labels, a.scores, inp.enc.raw, scale, top),
                            width="stretch")
            st.caption(render.md(render.ranked_text(inp.enc.feature_labels, a.scores, top)))
            return
        st.altair_chart(render.tabular_chart(inp.enc.feature_labels, a.scores, inp.enc.raw, scale, top),
                        width="stretch")

    def panel_png(self, adapter, inp, a, scale, settings, title) -> bytes:
        return render.bars_png(inp.enc.feature_labels, a.scores, inp.enc.raw, scale, title=title,
                               ranked=(settings.options or {}).get("readout") == "ranked")

    def review_inputs(self, adapter) -> list[tuple[Any, Any]]:
        c1, c2 = st.columns(2)
        start = c1.number_input("First row", 0, len(adapter.data) - 1, 0, key="rv.start")
        count = c2.number_input("Rows", 1, MAX_REVIEW_INPUTS, 20, key="rv.count")
        stop = min(len(adapter.data), int(start) + int(count))
        return [(i, i) for i in range(int(start), stop)]

    def describe_input(self, adapter, ident: Any, raw: Any) -> Any:
        return {"row": int(raw), "values": adapter.row(raw)}

    def true_label(self, adapter, ident: Any, raw: Any) -> str | None:
        # a score model's truth is a number, not a label to compare the prediction with
        truth = getattr(adapter, "true_labels", None)
        return None if truth is None or int(raw) >= len(truth) else adapter.label(int(truth[int(raw)]))

    def link_params(self, record: dict) -> dict | None:
        return {"row": str(record["input"]["row"])}
