"""Draw the gallery under several image-map displays, to choose (and show) the default.

    python -m bench.image_views [--out docs/screenshots]

One PNG per gallery image: rows are IG, GradientSHAP and Occlusion (default parameters),
columns the displays: the old default (signed, sigma 3, 99.5th percentile), signed / positive
/ absolute with sigma 8 and 2 % clipping, and a masked image. The README shows chelsea's.
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


def main() -> None:
    from cache.models import IMAGE_GALLERY, gallery_image
    from explainers import load_model
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="docs/screenshots")
    args = p.parse_args()
    model = load_model("image")
    for name in IMAGE_GALLERY:
        path = Path(args.out) / f"image_views_{name}.png"
        grid(model, gallery_image(name)).save(path)
        print(path)


if __name__ == "__main__":
    main()
