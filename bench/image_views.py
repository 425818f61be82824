"""Draw the gallery under several image-map displays, to choose (and show) the default.

    python -m bench.image_views [--out docs/screenshots]
    python -m bench.image_views --previews

One PNG per gallery image: rows are IG, GradientSHAP and Occlusion (default parameters),
columns the displays: the old default (signed, sigma 3, 99.5th percentile), signed / positive
/ absolute with sigma 8 and 2 % clipping, and a masked image. The README shows chelsea's.

``--previews``: what the dashboard's first pass (``dashboard.panels.preview_params``) costs
in fidelity, per gallery image and default method: Spearman of the preview's 16 x 16 patch
sums with the full settings', Pearson of the two maps as drawn (positive part, sigma 8),
the overlap of their top 20 % patches, IG's relative |delta| under both, and the seconds.
For a method that samples (GradientSHAP), the same figures for the full settings with
another seed (``seed`` + 1) against the full map: the method's own Monte-Carlo noise, the
yardstick its preview is read against.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: (title, sign, clip %, smoothing sigma, display)
VARIANTS = [("old default: signed, s3, p99.5", "all", 0.5, 3, "heat"),
            ("signed, s8, clip 2%", "all", 2, 8, "heat"),
            ("NEW DEFAULT: positive, s8, clip 2%", "positive", 2, 8, "heat"),
            ("|abs|, s8, clip 2%", "absolute", 2, 8, "heat"),
            ("masked top 20%, |abs| s8", "absolute", 2, 8, "masked")]


def grid(model, raw) -> Image.Image:
    from dashboard import render
    from explainers import explain
    r = explain(model, raw, methods=["integrated_gradients", "gradient_shap", "occlusion"])
    enc = model.encode(raw)
    rows = []
    for a in r.attributions.values():
        cells = []
        for _, sign, clip, sigma, display in VARIANTS:
            s = render.signed_part(render.smooth(a.scores, sigma), sign)
            cells.append(render.masked(enc.raw, s, 20) if display == "masked"
                         else render.overlay(enc.raw, s, render.robust_max(s, 100 - clip)))
        rows.append(np.concatenate(cells, 1))
    body = np.concatenate(rows, 0)
    img = Image.new("RGB", (body.shape[1], body.shape[0] + 20), "white")
    img.paste(Image.fromarray(body), (0, 20))
    d = ImageDraw.Draw(img)
    for i, (title, *_) in enumerate(VARIANTS):
        d.text((i * enc.raw.shape[1] + 4, 4), title, fill=(0, 0, 0))
    return img


def _row(model, enc, name: str, m: str, change: str, full, fast) -> str:
    """One line of :func:`previews`: ``fast`` against ``full``."""
    from scipy.stats import pearsonr, spearmanr

    from dashboard import render
    a, b = (model.group_scores(x.scores, enc) for x in (full, fast))
    k = max(1, len(a) // 5)
    top = len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k
    shown = [render.signed_part(render.smooth(x.scores, 8), "positive").ravel() for x in (full, fast)]
    rel = ""
    if full.convergence_delta is not None and fast.convergence_delta is not None:
        # completeness: sum(scores) = f(x) - f(b) + delta, so the gap is the sum less delta
        r = [abs(x.convergence_delta) / max(abs(float(np.sum(x.scores)) - x.convergence_delta), 1e-9)
             for x in (fast, full)]
        rel = f"{r[0]:.3f}/{r[1]:.3f}"
    return (f"{name:10s} {m:22s} {change:22s} {spearmanr(a, b)[0]:8.3f} {pearsonr(*shown)[0]:8.3f} "
            f"{top:6.2f} {rel:>14s} {fast.seconds:5.2f}/{full.seconds:5.2f}")


def previews(model, names) -> None:
    """Print the preview-against-full figures (see the module docstring)."""
    from cache.models import gallery_image
    from dashboard.panels import preview_params
    from explainers import get_method, run_method
    print(f"{'image':10s} {'method':22s} {'preview':22s} {'spearman':>8s} {'pearson':>8s} {'top20%':>6s} "
          f"{'rel|d| p/full':>14s} {'s p/full':>11s}")
    for name in names:
        enc = model.encode(gallery_image(name))
        target = model.predict(enc).index
        for m in ("integrated_gradients", "gradient_shap", "occlusion"):
            full_params = {s.name: s.default for s in get_method(m).param_specs(model)}
            cheap = preview_params(m, full_params)
            full = run_method(model, enc, m, full_params, target)
            if cheap is not None:
                change = ", ".join(f"{k}={v}" for k, v in cheap.items() if v != full_params[k])
                print(_row(model, enc, name, m, change, full, run_method(model, enc, m, cheap, target)))
            if "seed" in full_params:  # the method's own noise: the full settings, another seed
                again = run_method(model, enc, m, {**full_params, "seed": full_params["seed"] + 1}, target)
                print(_row(model, enc, name, m, "full, another seed", full, again))


def main() -> None:
    from cache.models import IMAGE_GALLERY, gallery_image
    from explainers import load_model
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="docs/screenshots")
    p.add_argument("--previews", action="store_true", help="the dashboard's previews against the full maps")
    args = p.parse_args()
    model = load_model("image")
    if args.previews:
        previews(model, IMAGE_GALLERY)
        return
    for name in IMAGE_GALLERY:
        path = Path(args.out) / f"image_views_{name}.png"
        grid(model, gallery_image(name)).save(path)
        print(path)


if __name__ == "__main__":
    main()
