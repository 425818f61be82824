"""Tabular view: sorted attribution bars per column; what-if values for every feature."""

from __future__ import annotations

import html
from typing import Any, Sequence

import streamlit as st

from .. import models, render
from ..panels import Input, prepare
from ..review import MAX_INPUTS
from ..state import BIND, digest
from .base import Apply, ModalityView, PickedInput, class_names, prediction_change, register_view


def _wf_key(row: int, feature: str) -> str:
    return f"wf.{row}.{feature}"


def _reset(row: int, values: dict[str, float]) -> None:
    """Every what-if value back to the row's own. Set, not deleted: the values are bound to
    the URL, and a widget whose state is dropped would read an edited value from it again."""
    for f, v in values.items():
        st.session_state[_wf_key(row, f)] = float(v)


@register_view
class TabularView(ModalityView):
    """Horizontal bars (the top-N features by |score|), feature values in the labels."""

    modality = "tabular"
    auto_metrics = ("agreement", "faithfulness", "flip", "stability")  # the MLP is microseconds a call
    row = 0  # set by the input picker

    def model(self):
        """Sidebar: the default breast-cancer MLP, or an uploaded CSV + TorchScript model."""
        with st.sidebar:
            st.subheader("Model")
            src = st.radio("Tabular model", ["default", "upload"], key="model_src", bind=BIND,
                           captions=[models.DEFAULT_TITLES["tabular"], "your CSV + TorchScript model"])
            if src == "default":
                adapter, err = models.get_model("tabular", "tabular")
            else:
                csv = st.file_uploader("Reference rows (CSV with a header row)", type=["csv"], key="up.csv")
                ts = st.file_uploader("TorchScript model (.pt / .ts)", type=["pt", "ts", "pth"], key="up.model")
                label_col = st.text_input("Label column to drop (optional)", key="up.label").strip() or None
                names = st.text_input("Class names, comma-separated (optional)", key="up.names")
                if csv is None or ts is None:
                    st.info("Upload both files to use your own model.")
                    st.stop()
                adapter, err = models.get_model(models.save_upload(ts.getvalue(), ".pt"), "tabular",
                                                data=models.save_upload(csv.getvalue(), ".csv"),
                                                labels=class_names(names), label_column=label_col)
        return models.require_model(adapter, err)

    def sidebar_options(self) -> dict:
        return {"top_features": int(st.slider("Features shown per panel", 5, 30, 15, key="top", bind=BIND))}

    def input_picker(self, adapter) -> PickedInput:
        n = len(adapter.data)
        c1, c2 = st.columns([1, 3])
        with c1:
            row = st.number_input(f"Row of the data (0-{n - 1})", 0, n - 1, 0, step=1, key="row", bind=BIND)
        with c2:
            truth = getattr(adapter, "true_labels", None)
            if truth is not None and row < len(truth):
                st.metric("True label", render.md(adapter.label(int(truth[row]))), help="ground truth of this row")
            acc = getattr(adapter, "heldout_accuracy", None)
            if acc is not None:
                st.caption(f"model accuracy on held-out rows: {acc:.1%}")
        self.row = row = int(row)
        return PickedInput(row, ("row", row), row)

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
                                                       key=_wf_key(row, f), bind=BIND)
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
        """Set the flipping features to the baseline values."""
        enc, row = original.enc, self._row(original)

        def apply(indices: Sequence[int], _features: Sequence[str], baseline: str | None = None) -> None:
            kind = baseline if baseline in adapter.baseline_kinds else adapter.default_baselines[0]
            z = adapter.baseline(enc, kind).mean(0)
            raw = (z * adapter.std[0] + adapter.mean[0]).cpu().numpy()
            for i in indices:
                st.session_state[_wf_key(row, adapter.feature_names[int(i)])] = float(raw[int(i)])
        return apply

    def _row(self, inp: Input) -> int:
        """The data row the input picker chose on this run (the what-if keys are scoped by it)."""
        return self.row

    def draw(self, adapter, inp, a, scale, settings) -> None:
        st.altair_chart(render.tabular_chart(inp.enc.feature_labels, a.scores, inp.enc.raw, scale,
                                             settings.options.get("top_features", 15)), width="stretch")

    def panel_png(self, adapter, inp, a, scale, settings, title) -> bytes:
        return render.bars_png(inp.enc.feature_labels, a.scores, inp.enc.raw, scale, title=title)

    def review_inputs(self, adapter) -> list[tuple[Any, Any]]:
        c1, c2 = st.columns(2)
        start = c1.number_input("First row", 0, len(adapter.data) - 1, 0, key="rv.start")
        count = c2.number_input("Rows", 1, MAX_INPUTS, 20, key="rv.count")
        stop = min(len(adapter.data), int(start) + int(count))
        return [(i, i) for i in range(int(start), stop)]

    def describe_input(self, adapter, ident: Any, raw: Any) -> Any:
        return {"row": int(raw), "values": adapter.row(raw)}

    def true_label(self, adapter, ident: Any, raw: Any) -> str | None:
        truth = getattr(adapter, "true_labels", None)
        return None if truth is None or int(raw) >= len(truth) else adapter.label(int(truth[int(raw)]))

    def link_params(self, record: dict) -> dict | None:
        return {"row": str(record["input"]["row"])}
