"""Model pickers, input pickers and the live counterfactual editors of each modality.

Each editor returns the edited :class:`~dashboard.panels.Input` (or None when nothing is
edited); the prediction on the edit is one forward pass, shown at once. The ``apply_*``
callbacks load an edit found by the Compare section (a prediction flip) into the editor.
"""

from __future__ import annotations

import html
from typing import Sequence

import numpy as np
import streamlit as st

from explainers import ExplainerError

from . import models, render
from .panels import Input, prepare
from .state import BIND, digest


def _prediction_change(original: Input, edited: Input) -> None:
    p, q = original.prediction, edited.prediction
    before, after = p.probabilities[p.index], q.probabilities[p.index]
    flipped = q.index != p.index
    verdict = (f":red[**flipped to {render.md(q.label)}**]" if flipped
               else f"still **{render.md(q.label)}**")
    st.markdown(f"Prediction on the edit: {verdict} ({q.probabilities[q.index]:.1%}) · "
                f"P({render.md(p.label)}) {before:.1%} → {after:.1%} "
                f"(**{(after - before) * 100:+.1f}** pts)")


# == text =======================================================================================
def text_model():
    """Sidebar: the default sentiment model or any Hugging Face id / local folder."""
    with st.sidebar:
        st.subheader("Model")
        src = st.radio("Text model", ["default", "custom"], key="model_src", bind=BIND,
                       captions=[models.DEFAULT_TITLES["text"], "a Hugging Face id or a local folder"])
        spec = "text"
        if src == "custom":
            spec = st.text_input("Model id or folder", key="model", bind=BIND,
                                 placeholder="e.g. /models/my-bert-classifier").strip()
            st.caption("A sequence classifier loadable by transformers (no remote code). "
                       "Hub ids need the files in the local Hugging Face cache (offline).")
    if not spec:
        st.info("Type a Hugging Face model id or a local folder in the sidebar.")
        st.stop()
    adapter, err = models.get_model(spec, "text")
    return models.require_model(adapter, err)


def _use_sample() -> None:
    sample = st.session_state.get("sample")
    if sample:
        st.session_state["text"] = sample


def text_input(samples: Sequence[str]) -> str:
    c1, c2 = st.columns([3, 1])
    with c2:
        st.selectbox("Samples", [""] + list(samples), key="sample", on_change=_use_sample,
                     format_func=lambda s: s if s else "(pick a sample)")
    with c1:
        return st.text_area("Text to explain", value=samples[0], key="text", bind=BIND, height=80)


def _token_key(enc) -> str:
    return "cf.tok." + digest(enc.raw)


def _tokens_changed(adapter, enc) -> None:
    sel = sorted(st.session_state.get(_token_key(enc)) or [])
    if not sel:
        st.session_state["edit"] = ""
        return
    if st.session_state.get("cf.action", "delete") == "delete":
        st.session_state["edit"] = adapter.edit_tokens(enc, delete=sel)
    else:
        st.session_state["edit"] = adapter.edit_tokens(enc, mask=sel)


def _text_reset(enc) -> None:
    st.session_state["edit"] = ""
    st.session_state[_token_key(enc)] = []


def _text_start(text: str) -> None:
    st.session_state["edit"] = text


def apply_text(adapter, enc):
    """Callback for the Compare section: delete the flipping tokens."""
    def apply(indices: Sequence[int], _features: Sequence[str], _baseline: str | None = None) -> None:
        idx = sorted(int(i) for i in indices)
        st.session_state[_token_key(enc)] = idx
        st.session_state["cf.action"] = "delete"
        st.session_state["edit"] = adapter.edit_tokens(enc, delete=idx)
    return apply


def text_counterfactual(adapter, original: Input) -> Input | None:
    """Click tokens to delete or mask them, or type an edited text freely."""
    enc = original.enc
    shown = render.display_tokens(enc.feature_labels)
    c1, c2 = st.columns([4, 1])
    with c2:
        st.radio("Clicked tokens are", ["delete", "mask"], key="cf.action", on_change=_tokens_changed,
                 args=(adapter, enc), format_func=lambda a: "deleted" if a == "delete" else "replaced by [MASK]")
    with c1:
        st.pills("Click tokens to edit them", list(range(enc.n_features)), selection_mode="multi",
                 format_func=lambda i: shown[i][0] or enc.feature_labels[i], key=_token_key(enc),
                 on_change=_tokens_changed, args=(adapter, enc))
    edit = st.text_area("Edited text (clicks fill it in; you can also type freely)", key="edit", bind=BIND,
                        height=68, placeholder="No edit yet: click tokens above, or type a variant of the text.")
    b1, b2, _ = st.columns([1, 1, 4])
    b1.button("Copy original", on_click=_text_start, args=(enc.raw,), key="cf.start",
              icon=":material/content_copy:")
    b2.button("Reset", on_click=_text_reset, args=(enc,), key="cf.reset", icon=":material/restart_alt:")
    edit = (edit or "").strip()
    if not edit or edit == enc.raw:
        st.caption("Original and edited inputs are the same; edit to see before/after maps.")
        return None
    st.html(render.diff_html(enc.raw, edit))
    edited = prepare(adapter, edit, key=edit, name="edited", note="text edited")
    if edited is not None:
        _prediction_change(original, edited)
    return edited


def _class_names(text: str) -> tuple[str, ...] | None:
    """Comma-separated class names typed in the sidebar (None when empty)."""
    return tuple(s.strip() for s in text.split(",") if s.strip()) or None


# == image ======================================================================================
def image_model():
    """Sidebar: the default EfficientNet-Lite0, or a timm architecture with your checkpoint."""
    with st.sidebar:
        st.subheader("Model")
        src = st.radio("Image model", ["default", "custom"], key="model_src", bind=BIND,
                       captions=[models.DEFAULT_TITLES["image"], "a timm architecture + your checkpoint"])
        if src == "default":
            adapter, err = models.get_model("image", "image")
        else:
            arch = st.text_input("timm model name", key="model", bind=BIND, placeholder="e.g. resnet18").strip()
            ckpt = st.file_uploader("Checkpoint (.safetensors, or a state dict .pt/.pth)",
                                    type=["safetensors", "pt", "pth"], key="up.ckpt")
            names = st.text_input("Class names, comma-separated (optional; 1,000 = ImageNet)", key="up.names")
            st.caption("Pickled checkpoints are read with weights_only=True: anything but tensors is "
                       "refused. Without a checkpoint, timm's pretrained weights are needed offline.")
            if not arch:
                st.info("Type a timm model name in the sidebar.")
                st.stop()
            path = None
            if ckpt is not None:
                suffix = ".safetensors" if ckpt.name.endswith(".safetensors") else ".pt"
                path = models.save_upload(ckpt.getvalue(), suffix)
            labels = _class_names(names)
            adapter, err = models.get_model(arch, "image", checkpoint=path, labels=labels)
    return models.require_model(adapter, err)


def image_input():
    """Gallery image (name kept in the URL) or an uploaded PNG/JPEG. Returns (raw, key, id)."""
    from cache.models import IMAGE_GALLERY, gallery_image
    c1, c2 = st.columns([1, 2])
    with c1:
        src = st.radio("Image source", ["gallery", "upload"], key="src", bind=BIND, horizontal=True)
    with c2:
        if src == "gallery":
            name = st.selectbox("Sample image", list(IMAGE_GALLERY), key="img", bind=BIND)
            return gallery_image(name), ("gallery", name), name
        up = st.file_uploader("PNG or JPEG (max 20 MB)", type=["png", "jpg", "jpeg"], key="upload")
        if up is None:
            st.info("Upload an image, or switch to the gallery. (Uploads are not part of shared links.)")
            st.stop()
        data = up.getvalue()
        return data, ("upload", digest(data)), f"upload:{up.name}"


def _patch_box(adapter, label: str, labels: Sequence[str]) -> tuple[int, int, int, int]:
    n = adapter.size // adapter.patch
    idx = list(labels).index(label)
    r, c = divmod(idx, n)
    p = adapter.patch
    return c * p, r * p, (c + 1) * p, (r + 1) * p


def _image_reset() -> None:
    st.session_state["erase"] = False
    st.session_state["cf.patches"] = []


def apply_image(adapter, enc):
    """Callback for the Compare section: fill the flipping patches with the baseline."""
    def apply(indices: Sequence[int], _features: Sequence[str], baseline: str | None = None) -> None:
        st.session_state["cf.patches"] = [enc.feature_labels[int(i)] for i in indices]
        if baseline in adapter.baseline_kinds:
            st.session_state["fill"] = baseline
    return apply


def image_counterfactual(adapter, original: Input) -> Input | None:
    """Erase a rectangle (sliders) and/or patches with one of the adapter's fills."""
    enc, size = original.enc, adapter.size
    c1, c2, c3 = st.columns([1, 1, 1])
    with c1:
        erase = st.toggle("Erase a rectangle", key="erase", bind=BIND)
        fill = st.selectbox("Fill with", list(adapter.baseline_kinds), key="fill", bind=BIND,
                            help="the same fills the methods use as baselines")
        st.button("Reset", on_click=_image_reset, key="cf.reset", icon=":material/restart_alt:")
    with c2:
        xs = st.slider("x0 → x1 (pixels)", 0, size, (size * 5 // 16, size * 11 // 16), key="box.x",
                       bind=BIND, disabled=not erase)
        ys = st.slider("y0 → y1 (pixels)", 0, size, (size * 5 // 16, size * 11 // 16), key="box.y",
                       bind=BIND, disabled=not erase)
        patches = st.multiselect(f"Also fill {adapter.patch}x{adapter.patch} patches", enc.feature_labels,
                                 key="cf.patches", help="the Compare section's 'apply' fills these")
    box = (xs[0], ys[0], xs[1], ys[1]) if erase and xs[1] > xs[0] and ys[1] > ys[0] else None
    boxes = ([box] if box else []) + [_patch_box(adapter, p, enc.feature_labels) for p in patches]
    if not boxes:
        with c3:
            st.image(render.outline(enc.raw, (xs[0], ys[0], xs[1], ys[1]) if erase else None),
                     caption="model input (224 x 224)", width=200)
        st.caption("Switch on 'Erase a rectangle' (or pick patches) to see the prediction and every "
                   "map on the edited image.")
        return None
    try:
        filled = adapter.erase(enc, (0, 0, size, size), fill)  # the fill everywhere (uint8)
    except ExplainerError as e:
        st.error(render.md(e))
        return None
    mask = np.zeros(enc.raw.shape[:2], dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    arr = np.where(mask[..., None], filled, enc.raw).astype(np.uint8)
    note = (f"{fill} fill on x {box[0]}-{box[2]}, y {box[1]}-{box[3]}" if box else "") + \
           (f"{' + ' if box else ''}{len(patches)} patch(es) filled with {fill}" if patches else "")
    with c3:
        st.image(render.outline(arr, box), caption="edited input", width=200)
    edited = prepare(adapter, arr, key=("img", digest(arr)), name="edited", box=box, note=note)
    if edited is not None:
        _prediction_change(original, edited)
    return edited


# == tabular ====================================================================================
def tabular_model():
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
            labels = _class_names(names)
            adapter, err = models.get_model(models.save_upload(ts.getvalue(), ".pt"), "tabular",
                                            data=models.save_upload(csv.getvalue(), ".csv"),
                                            labels=labels, label_column=label_col)
    return models.require_model(adapter, err)


def tabular_input(adapter) -> int:
    n = len(adapter.data)
    c1, c2 = st.columns([1, 3])
    with c1:
        row = st.number_input(f"Row of the data (0-{n - 1})", 0, n - 1, 0, step=1, key="row", bind=BIND)
    with c2:
        truth = getattr(adapter, "true_labels", None)
        if truth is not None and row < len(truth):
            st.metric("True label", adapter.label(int(truth[row])), help="ground truth of this row")
        acc = getattr(adapter, "heldout_accuracy", None)
        if acc is not None:
            st.caption(f"model accuracy on held-out rows: {acc:.1%}")
    return int(row)


def _wf_key(row: int, feature: str) -> str:
    return f"wf.{row}.{feature}"


def _tabular_reset(row: int) -> None:
    for k in [k for k in st.session_state if isinstance(k, str) and k.startswith(f"wf.{row}.")]:
        del st.session_state[k]


def apply_tabular(adapter, enc, row: int):
    """Callback for the Compare section: set the flipping features to the baseline values."""
    def apply(indices: Sequence[int], _features: Sequence[str], baseline: str | None = None) -> None:
        kind = baseline if baseline in adapter.baseline_kinds else adapter.default_baselines[0]
        z = adapter.baseline(enc, kind).mean(0)
        raw = (z * adapter.std[0] + adapter.mean[0]).cpu().numpy()
        for i in indices:
            st.session_state[_wf_key(row, adapter.feature_names[int(i)])] = float(raw[int(i)])
    return apply


def tabular_counterfactual(adapter, original: Input, row: int) -> Input | None:
    """What-if number inputs for every feature (grouped in an expander), before/after."""
    values = original.enc.raw
    names = adapter.feature_names
    std = adapter.std[0].cpu().numpy()
    edited_values = {}
    with st.expander(f"What-if: edit any of the {len(names)} feature values", expanded=False):
        st.button("Reset", on_click=_tabular_reset, args=(row,), key="cf.reset", icon=":material/restart_alt:")
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
                     note=f"{len(changed)} feature(s) changed")
    if edited is not None:
        _prediction_change(original, edited)
    return edited
