"""Image view: heat maps blended over the picture; erase a rectangle or fill patches."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import streamlit as st

from cache.models import IMAGE_GALLERY, gallery_image
from explainers import ExplainerError, get_method
from explainers.drawing import IMAGE_CLIP_PERCENT, IMAGE_SIGN, IMAGE_SMOOTH_PX

from .. import models, render
from ..inputs import prepare
from ..state import BIND, digest
from ..types import Input
from .base import (Apply, ModalityView, PickedInput, class_names, model_source, prediction_change,
                   register_view)


def _patch_box(adapter, label: str, labels: Sequence[str]) -> tuple[int, int, int, int]:
    n = adapter.size // adapter.patch
    idx = list(labels).index(label)
    r, c = divmod(idx, n)
    p = adapter.patch
    return c * p, r * p, (c + 1) * p, (r + 1) * p


def _reset() -> None:
    st.session_state["erase"] = False
    st.session_state["cf.patches"] = []


#: what part of a map is drawn (Captum visualize_image_attr's sign)
SIGNS = {"all": "signed", "positive": "positive", "negative": "negative", "absolute": "|absolute|"}
DISPLAYS = {"heat_map": "heat map", "masked": "masked image"}
# the default view is the engine's, so notebooks and review reports draw the same
DEFAULT_SIGN, DEFAULT_DISPLAY, DEFAULT_CLIP, DEFAULT_SMOOTH = IMAGE_SIGN, "heat_map", IMAGE_CLIP_PERCENT, IMAGE_SMOOTH_PX


def _coarse(a) -> bool:
    """A layer map upsampled to the image (Grad-CAM): already smooth, drawn without the
    display smoothing, which would only blur its cells further."""
    return bool(getattr(get_method(a.method), "coarse_map", False))


def _with_bar(a) -> bool:
    """Maps drawn like the Grad-CAM walkthrough: blended over the image, with a colour bar."""
    return bool(getattr(get_method(a.method), "colour_bar", False))


def colour_bar(scale: float, sign: str, width: int = 448, unit: str = "") -> np.ndarray:
    """A horizontal colour bar (uint8 RGB) in the overlay's own colours and opacity ramp:
    0 to +``scale`` (or -``scale`` to 0, -``scale`` to +``scale`` for the signed view), with
    its end values, so a Grad-CAM blob can be read as a number."""
    from PIL import Image, ImageDraw
    lo = -1.0 if sign in ("all", "negative") else 0.0
    hi = 0.0 if sign == "negative" else 1.0
    pad, bar_h, text_h = 10, 14, 18
    values = np.linspace(lo, hi, width - 2 * pad, dtype=np.float32)
    grey = np.full((bar_h, values.size, 3), 200.0, np.float32)
    ramp = render.overlay(grey, np.broadcast_to(values * scale, (bar_h, values.size)).copy(), scale)
    img = Image.new("RGB", (width, bar_h + text_h + 4), "white")
    img.paste(Image.fromarray(ramp), (pad, 2))
    d = ImageDraw.Draw(img)
    font = render._font(12)
    ticks = [(0, lo), (values.size // 2, (lo + hi) / 2), (values.size - 1, hi)]
    for i, (x, v) in enumerate(ticks):
        label = f"{v * scale:+.3g}" if v else "0"
        if i == len(ticks) - 1 and unit:
            label += f" {unit}"
        w = font.getlength(label)
        left = min(max(pad + x - w / 2, 0), width - w - 1)
        d.line([pad + x, bar_h + 2, pad + x, bar_h + 5], fill=(90, 90, 90))
        d.text((left, bar_h + 5), label, fill=(60, 60, 60), font=font)
    return np.asarray(img)


@register_view
class ImageView(ModalityView):
    """Pixel maps over the image (per-panel scale, by default the positive part smoothed with
    σ = 8 px at the 98th percentile: see README, "Reading image maps"), a masked display,
    rectangle and patch erasing."""

    modality = "image"
    default_scale = "per panel"  # pixel maps differ in concentration (IG spiky, occlusion blocky)
    auto_metrics = ("agreement",)  # every other image metric costs ~0.1 s per forward pass

    def model(self):
        """Sidebar: the default EfficientNet-Lite0, or a timm architecture with your checkpoint."""
        with st.sidebar:
            src = model_source("Image model", "custom", "a timm architecture + your checkpoint", self.modality)
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
                    path = models.save_upload(ckpt.getvalue(), suffix, ckpt.name)
                adapter, err = models.get_model(arch, "image", checkpoint=path, labels=class_names(names))
        return models.require_model(adapter, err)

    def sidebar_options(self) -> dict:
        signs = list(SIGNS)
        sign = st.radio("Show", signs, index=signs.index(DEFAULT_SIGN), key="sign", bind=BIND,
                        format_func=SIGNS.get, horizontal=True,
                        help="Which part of each map is drawn (Captum's visualize_image_attr 'sign').")
        display = st.radio("Display", list(DISPLAYS), index=list(DISPLAYS).index(DEFAULT_DISPLAY), key="display",
                           bind=BIND, horizontal=True, format_func=DISPLAYS.get,
                           help="Heat map: colours blended over the image. Masked: only the most "
                                "important pixels kept, the rest dimmed.")
        keep = 20.0
        if display == "masked":
            keep = st.slider("Keep the top % of pixels", 1.0, 50.0, 20.0, step=1.0, key="keep", bind=BIND)
        clip = st.slider("Clip outliers (%)", 0.0, 10.0, DEFAULT_CLIP, step=0.5, key="clip", bind=BIND,
                         help="Full colour at this share of the largest |scores| (Captum's "
                              "outlier_perc, 2% by default), so a few hot pixels do not wash the map out.")
        smooth = st.slider("Smooth heat maps (σ, pixels)", 0.0, 16.0, DEFAULT_SMOOTH, step=0.5, key="smooth",
                           bind=BIND,
                           help="Display only: a Gaussian blur of each pixel map, so speckled maps "
                                "(IG, GradientSHAP) show which regions carry the attribution. "
                                "Downloads (CSV, JSON) keep the raw scores.")
        return {"sign": sign, "display": display, "keep": float(keep), "clip": float(clip),
                "smooth": float(smooth)}

    def input_picker(self, adapter) -> PickedInput:
        """Gallery image (name kept in the URL) or an uploaded PNG/JPEG."""
        c1, c2 = st.columns([1, 2])
        with c1:
            src = st.radio("Image source", ["gallery", "upload"], key="src", bind=BIND, horizontal=True)
        with c2:
            if src == "gallery":
                name = st.selectbox("Sample image", list(IMAGE_GALLERY), key="img", bind=BIND)
                return PickedInput(gallery_image(name), ("gallery", name), name)
            up = st.file_uploader("PNG or JPEG (max 20 MB)", type=["png", "jpg", "jpeg"], key="upload")
            if up is None:
                st.info("Upload an image, or switch to the gallery. (Uploads are not part of shared links.)")
                st.stop()
            data = up.getvalue()
            return PickedInput(data, ("upload", digest(data)), f"upload:{up.name}")

    def what_if(self, adapter, original: Input) -> Input | None:
        """Erase a rectangle (sliders) and/or patches with one of the adapter's fills."""
        enc, size = original.enc, adapter.size
        c1, c2, c3 = st.columns([1, 1, 1])
        with c1:
            erase = st.toggle("Erase a rectangle", key="erase", bind=BIND)
            fill = st.selectbox("Fill with", list(adapter.baseline_kinds), key="fill", bind=BIND,
                                help="the same fills the methods use as baselines")
            st.button("Reset", on_click=_reset, key="cf.reset", icon=":material/restart_alt:")
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
        edited = prepare(adapter, arr, key=("img", digest(arr)), name="edited", box=box, note=note,
                         edit={"fill": fill, "erased_box": list(box) if box else None,
                               "filled_patches": list(patches)})
        if edited is not None:
            prediction_change(original, edited)
        return edited

    def apply_flip(self, adapter, original: Input) -> Apply:
        """Fill the flipping patches with the baseline."""
        enc = original.enc

        def apply(indices: Sequence[int], _features: Sequence[str], baseline: str | None = None,
                  _perturbation: str | None = None, _edited: Any = None) -> None:
            st.session_state["cf.patches"] = [enc.feature_labels[int(i)] for i in indices]
            if baseline in adapter.baseline_kinds:
                st.session_state["fill"] = baseline
        return apply

    def shown_scores(self, a, settings) -> np.ndarray:
        """Smoothed for display, then the chosen sign's part."""
        opts = settings.options
        smooth = 0.0 if _coarse(a) else float(opts.get("smooth", 0.0))
        scores = render.smooth(a.scores, smooth) if smooth > 0 else a.scores
        return render.signed_part(scores, opts.get("sign", "all"))

    def robust_max(self, scores, settings) -> float:
        return render.robust_max(scores, 100.0 - float(settings.options.get("clip", DEFAULT_CLIP)))

    def legend(self, settings) -> tuple[tuple[str, ...], str]:
        opts = settings.options
        sign = opts.get("sign", "all")
        signs = ("positive", "negative") if sign == "all" else (sign,)
        clip = float(opts.get("clip", DEFAULT_CLIP))
        notes = [f"full colour at the {100 - clip:g}th percentile of |score| ({clip:g}% outliers clipped)"]
        if float(opts.get("smooth", 0)) > 0:
            notes.append(f"display smoothing σ = {float(opts['smooth']):g} px")
        if opts.get("display") == "masked":
            notes.append(f"masked: the top {float(opts.get('keep', 20)):g}% of pixels by |score| kept")
        return signs, "; ".join(notes)

    def _picture(self, inp, a, scale, settings) -> np.ndarray:
        shown = self.shown_scores(a, settings)
        if settings.options.get("display") == "masked":
            return render.masked(inp.enc.raw, shown, float(settings.options.get("keep", 20)), inp.box)
        return render.overlay(inp.enc.raw, shown, scale, False, inp.box)

    def draw(self, adapter, inp, a, scale, settings) -> None:
        st.image(self._picture(inp, a, scale, settings), width="stretch")
        if _with_bar(a) and settings.options.get("display") != "masked":
            st.image(colour_bar(scale, settings.options.get("sign", "all")), width="stretch")
            if _coarse(a):
                st.caption("Drawn as computed: no display smoothing (the layer map is already "
                           "upsampled); the bar gives the score at each colour.")

    def draw_disagreement(self, adapter, inp, disagreement, scale) -> None:
        n = adapter.size // adapter.patch
        grid = render.patch_grid(disagreement, n, adapter.size)
        st.image(render.overlay(inp.enc.raw, grid, scale, positive_only=True), width=260,
                 caption="disagreement per patch (darker red = more disagreement)")

    def unit(self, adapter) -> str:
        return f"{adapter.patch}x{adapter.patch} patches"

    def scores_csv(self, adapter, enc, a) -> bytes:
        """The H x W score matrix (row = y), one line per image row."""
        import io
        buf = io.StringIO()
        np.savetxt(buf, np.asarray(a.scores), delimiter=",", fmt="%.6g")
        return buf.getvalue().encode()

    def panel_png(self, adapter, inp, a, scale, settings, title) -> bytes:
        signs, note = self.legend(settings)
        picture = self._picture(inp, a, scale, settings)
        if _with_bar(a) and settings.options.get("display") != "masked":
            bar = colour_bar(scale, settings.options.get("sign", "all"), width=picture.shape[1])
            picture = np.concatenate([picture, bar], axis=0)
        if _coarse(a):
            note = "; ".join(p for p in note.split("; ") if not p.startswith("display smoothing"))
        return render.titled_image_png(picture, title, scale, signs, note)

    def review_inputs(self, adapter) -> list[tuple[Any, Any]]:
        names = st.multiselect("Sample images", IMAGE_GALLERY, default=list(IMAGE_GALLERY), key="rv.gallery")
        uploads = st.file_uploader("And/or upload PNG/JPEG files", type=["png", "jpg", "jpeg"],
                                   accept_multiple_files=True, key="rv.images") or []
        return [(n, gallery_image(n)) for n in names] + [(u.name, u.getvalue()) for u in uploads]

    def link_params(self, record: dict) -> dict | None:
        name = record.get("input")
        return {"img": name} if name in IMAGE_GALLERY else None
